//! What the flow asks of its host (Envoy through proxy-wasm today, a native module next): data
//! it reads on demand, and the effects it has. A host implements this by translation only —
//! every decision is made by the flow. The tests implement it with a recording fake.
use super::facts::Facts;
use super::stats::StatSink;
use crate::cache::SharedStore;
use crate::coalescing::StreamId;
use crate::http::{Callout, Headers, Reply};
use crate::warm::WorkerCall;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The host as one request's callbacks and the worker's timer see it. Calls about "this
/// stream" act on the stream whose callback is running; `*_stream` calls act on another one
/// (a coalesced waiter) and are made only from worker events (`on_tick`, `on_wake`).
pub trait Host: StatSink {
    type Store: SharedStore;

    /// The process-wide store of L1 slots, flight claims and the limit table.
    fn store(&self) -> &Self::Store;
    /// Wall-clock milliseconds; a host reads its clock at most once per callback.
    fn now_ms(&mut self) -> u64;

    fn request_headers(&mut self) -> Headers;
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>>;
    fn response_headers(&mut self) -> Headers;
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// A string in the request's dynamic metadata, written by an Envoy filter ahead of this one
    /// (clients cannot set it): `path` is the namespace, then keys into its struct.
    fn metadata_string(&mut self, path: &[&str]) -> Option<String>;
    /// The downstream address without its port.
    fn client_address(&mut self) -> Option<String>;
    /// The `:status` of the callout answer being delivered (`None`: reset or timeout).
    fn callout_status(&mut self) -> Option<u16>;
    fn callout_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// A header of the callout answer being delivered (`name` in lower case).
    fn callout_header(&mut self, name: &str) -> Option<String>;

    /// Sets (or with `None` removes) a request header of this stream; Envoy then re-matches
    /// the route.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    fn set_response_header(&mut self, name: &str, value: &str);
    /// Answers this stream locally; `false` if the host refused.
    fn send_reply(&mut self, reply: &Reply) -> bool;
    /// Lets this stream (paused in a callback that has returned) go on upstream.
    fn resume(&mut self);
    /// Starts a callout whose answer arrives as this stream's `on_l2_answer`; `false` if it
    /// could not be sent.
    fn dispatch(&mut self, callout: &Callout) -> bool;

    fn send_reply_to(&mut self, stream: StreamId, reply: &Reply) -> bool;
    fn resume_stream(&mut self, stream: StreamId);
    /// Asks for `on_wake` on this worker soon, outside any stream's callback.
    fn wake_worker(&mut self);
    /// A callout owned by the worker (its answer arrives as `Worker::on_store_answer`).
    fn dispatch_from_worker(&mut self, callout: &Callout) -> bool;
    /// A callout owned by the worker whose answer the host hands back, with `call`, as
    /// `Worker::on_call_answer` (warming, hit reports); `false` if it could not be sent.
    fn dispatch_call(&mut self, call: WorkerCall, callout: &Callout) -> bool;

    fn log(&mut self, level: LogLevel, message: &str);

    /// Publishes this stream's facts for Envoy's access log (once, at the request's end, always
    /// from this stream's own callback). One call per request: a host that can write them in
    /// one crossing does.
    fn publish_facts(&mut self, facts: &Facts);
}
