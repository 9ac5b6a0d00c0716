//! A fake host for driving the flow natively (the flow's tests and the core benchmark):
//! `Fake` records the effects the flow asks for; several `Worker`s over one `MemoryStore`
//! stand for Envoy's workers sharing proxy-wasm shared data. Built for tests and with the
//! `testing` feature only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use super::stats::StatSink;
use super::{Action, Facts, Host, LogLevel, Request, Worker};
use crate::cache::MemoryStore;
use crate::config::FilterConfig;
use crate::http::{Callout, Headers, Reply};
use serde_json::json;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    SetRequestHeader(String, Option<String>),
    SetResponseHeader(String, String),
    Reply(Reply),
    ReplyTo(u32, Reply),
    Resume,
    ResumeStream(u32),
    Dispatch(Callout),
    DispatchFromWorker(Callout),
    Call(crate::warm::WorkerCall, Callout),
    Wake,
    Facts(Facts),
}

/// The signing key every fake Envoy's workers share (as a fleet's Envoys do).
pub const TEST_SIGNING_KEY: &str = "test-signing-key-of-at-least-32-bytes";

/// No API token, and `TEST_SIGNING_KEY`.
pub fn test_l2_secrets() -> crate::cache::L2Secrets {
    let signing_key = crate::cache::sealed::SigningKey::from_env_value(Some(TEST_SIGNING_KEY)).expect("test key");
    crate::cache::L2Secrets { authorization: None, signing_key, refresh: None }
}

/// One Envoy process: the shared store and the clock.
pub struct Envoy {
    pub store: MemoryStore,
    pub now: u64,
}

impl Default for Envoy {
    fn default() -> Self {
        Envoy::new()
    }
}

impl Envoy {
    pub fn new() -> Envoy {
        Envoy { store: MemoryStore::default(), now: 1_700_000_000_000 }
    }

    /// A worker configured with `config` (JSON, merged over the defaults). Clients are anonymous
    /// (scoped by address) unless `config` has its own `auth`.
    pub fn worker(&self, mut config: serde_json::Value) -> Worker {
        if let Some(object) = config.as_object_mut() {
            object.entry("auth").or_insert_with(|| json!({ "anonymous": {} }));
        }
        let config = FilterConfig::from_json(config.to_string().as_bytes()).expect("test config");
        let worker = Worker::new(config, test_l2_secrets());
        worker.on_configure(&mut self.host());
        worker
    }

    pub fn host(&self) -> Fake<'_> {
        Fake {
            store: &self.store,
            now: self.now,
            request_headers: Headers::default(),
            request_body: Vec::new(),
            response_headers: Headers::default(),
            response_body: Vec::new(),
            callout: (None, None),
            callout_level: None,
            callout_origin: None,
            dispatch_ok: true,
            effects: Vec::new(),
            stats: HashMap::new(),
            calls: std::cell::Cell::new(0),
            metadata: Vec::new(),
            client: "127.0.0.1".into(),
        }
    }
}

pub struct Fake<'a> {
    store: &'a MemoryStore,
    pub now: u64,
    pub request_headers: Headers,
    pub request_body: Vec<u8>,
    pub response_headers: Headers,
    pub response_body: Vec<u8>,
    pub callout: (Option<u16>, Option<Vec<u8>>),
    /// The callout answer's `x-aurelis-cache-level` (the cache service's level).
    pub callout_level: Option<String>,
    /// The callout answer's `x-aurelis-origin` (an entry Redis got from L3).
    pub callout_origin: Option<String>,
    pub dispatch_ok: bool,
    pub effects: Vec<Effect>,
    pub stats: HashMap<String, u64>,
    /// Host calls made (reads, effects and store calls alike), as Envoy would count them.
    pub calls: std::cell::Cell<u64>,
    /// Dynamic metadata strings by dotted path (`namespace.key.claim`).
    pub metadata: Vec<(String, String)>,
    pub client: String,
}

impl StatSink for Fake<'_> {
    fn counter_add(&mut self, name: &str, by: u64) {
        *self.stats.entry(name.to_string()).or_insert(0) += by;
    }
    fn gauge_set(&mut self, name: &str, value: u64) {
        self.stats.insert(name.to_string(), value);
    }
    fn histogram_record(&mut self, name: &str, _value: u64) {
        *self.stats.entry(name.to_string()).or_insert(0) += 1;
    }
}

impl Host for Fake<'_> {
    type Store = MemoryStore;
    fn store(&self) -> &MemoryStore {
        self.store
    }
    /// Not counted: a real host reads its clock at most once per callback.
    fn now_ms(&mut self) -> u64 {
        self.now
    }
    fn request_headers(&mut self) -> Headers {
        self.calls.set(self.calls.get() + 1);
        self.request_headers.clone()
    }
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.calls.set(self.calls.get() + 1);
        self.request_body.get(..size).map(<[u8]>::to_vec)
    }
    fn response_headers(&mut self) -> Headers {
        self.calls.set(self.calls.get() + 1);
        self.response_headers.clone()
    }
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.calls.set(self.calls.get() + 1);
        self.response_body.get(..size).map(<[u8]>::to_vec)
    }
    fn metadata_string(&mut self, path: &[&str]) -> Option<String> {
        self.calls.set(self.calls.get() + 1);
        let joined = path.join(".");
        self.metadata.iter().find(|(k, _)| *k == joined).map(|(_, v)| v.clone())
    }
    fn client_address(&mut self) -> Option<String> {
        self.calls.set(self.calls.get() + 1);
        Some(self.client.clone())
    }
    fn callout_status(&mut self) -> Option<u16> {
        self.calls.set(self.calls.get() + 1);
        self.callout.0
    }
    fn callout_body(&mut self, size: usize) -> Option<Vec<u8>> {
        self.calls.set(self.calls.get() + 1);
        self.callout.1.as_ref().and_then(|b| b.get(..size)).map(<[u8]>::to_vec)
    }
    fn callout_header(&mut self, name: &str) -> Option<String> {
        self.calls.set(self.calls.get() + 1);
        match name {
            crate::http::HEADER_LEVEL => self.callout_level.clone(),
            crate::cache::l2::HEADER_ORIGIN => self.callout_origin.clone(),
            _ => None,
        }
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::SetRequestHeader(name.into(), value.map(Into::into)));
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::SetResponseHeader(name.into(), value.into()));
    }
    fn send_reply(&mut self, reply: &Reply) -> bool {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::Reply(reply.clone()));
        true
    }
    fn resume(&mut self) {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::Resume);
    }
    fn dispatch(&mut self, callout: &Callout) -> bool {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::Dispatch(callout.clone()));
        self.dispatch_ok
    }
    fn send_reply_to(&mut self, stream: u32, reply: &Reply) -> bool {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::ReplyTo(stream, reply.clone()));
        true
    }
    fn resume_stream(&mut self, stream: u32) {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::ResumeStream(stream));
    }
    fn wake_worker(&mut self) {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::Wake);
    }
    fn dispatch_from_worker(&mut self, callout: &Callout) -> bool {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::DispatchFromWorker(callout.clone()));
        true
    }
    fn dispatch_call(&mut self, call: crate::warm::WorkerCall, callout: &Callout) -> bool {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::Call(call, callout.clone()));
        self.dispatch_ok
    }
    fn log(&mut self, _level: LogLevel, _message: &str) {
        self.calls.set(self.calls.get() + 1);
    }
    fn publish_facts(&mut self, facts: &Facts) {
        self.calls.set(self.calls.get() + 1);
        self.effects.push(Effect::Facts(facts.clone()));
    }
}

impl Fake<'_> {
    /// The local reply this stream sent, if any.
    pub fn reply(&self) -> Option<&Reply> {
        self.effects.iter().find_map(|e| if let Effect::Reply(r) = e { Some(r) } else { None })
    }

    pub fn replies_to(&self) -> Vec<(u32, &Reply)> {
        self.effects.iter().filter_map(|e| if let Effect::ReplyTo(s, r) = e { Some((*s, r)) } else { None }).collect()
    }

    pub fn resumed_streams(&self) -> Vec<u32> {
        self.effects.iter().filter_map(|e| if let Effect::ResumeStream(s) = e { Some(*s) } else { None }).collect()
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.effects.iter().rev().find_map(|e| match e {
            Effect::SetResponseHeader(n, v) if n == name => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn dispatched(&self) -> Vec<&Callout> {
        self.effects.iter().filter_map(|e| if let Effect::Dispatch(c) = e { Some(c) } else { None }).collect()
    }

    /// The facts this stream published (asserting it did so exactly once).
    pub fn facts(&self) -> Facts {
        let published: Vec<&Facts> =
            self.effects.iter().filter_map(|e| if let Effect::Facts(f) = e { Some(f) } else { None }).collect();
        assert_eq!(published.len(), 1, "one set of facts per request: {published:?}");
        published[0].clone()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
    }
}

pub fn header(reply: &Reply, name: &str) -> Option<String> {
    reply.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
}

/// A deterministic chat completion request body.
pub fn chat(prompt: &str) -> Vec<u8> {
    json!({ "model": "gpt-4o-mini", "temperature": 0, "messages": [{ "role": "user", "content": prompt }] })
        .to_string()
        .into_bytes()
}

/// The upstream's answer: an OpenAI chat completion with usage.
pub fn completion(text: &str) -> Vec<u8> {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    })
    .to_string()
    .into_bytes()
}

pub fn post_headers(body: &[u8], extra: &[(&str, &str)]) -> Headers {
    post_headers_at("/v1/chat/completions", body, extra)
}

/// A POST to `path`; `extra` headers replace defaults of the same name.
pub fn post_headers_at(path: &str, body: &[u8], extra: &[(&str, &str)]) -> Headers {
    let mut h = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), path.to_string()),
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), body.len().to_string()),
    ];
    h.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Headers::from(h)
}

/// A whole exchange of a POST to `path` with `extra` headers: the host (effects), whether it
/// went upstream, and the local reply's status when it did not.
pub fn exchange_at<'a>(
    envoy: &'a Envoy,
    w: &Worker,
    stream: u32,
    path: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> (Fake<'a>, bool) {
    let mut host = envoy.host();
    let mut req = Request::new(stream);
    host.request_headers = post_headers_at(path, body, extra);
    host.request_body = body.to_vec();
    let mut action = req.on_request_headers(w, &mut host, false);
    if action == Action::Pause && host.reply().is_none() {
        action = req.on_request_body(w, &mut host, body.len(), true);
    }
    let upstream = finish(w, &mut host, &mut req, action);
    (host, upstream)
}

/// Ends a request whose body callback returned `action`: a request going upstream gets the
/// upstream's answer; a local reply passes back through the filter's response callbacks.
/// Returns whether it went upstream.
fn finish(w: &Worker, host: &mut Fake<'_>, req: &mut Request, action: Action) -> bool {
    let upstream = action == Action::Continue;
    if upstream {
        answer(w, host, req, 200, &completion("hello"));
    } else {
        req.on_response_headers(w, host, false);
        req.on_stream_end(w, host);
    }
    upstream
}

/// Sends the request head and its whole body; returns the body callback's action.
pub fn send(w: &Worker, host: &mut Fake<'_>, req: &mut Request, body: &[u8], extra: &[(&str, &str)]) -> Action {
    host.request_headers = post_headers(body, extra);
    host.request_body = body.to_vec();
    let head = if w.config.hold_request_headers { Action::Pause } else { Action::Continue };
    assert_eq!(req.on_request_headers(w, host, false), head, "the headers wait for the body, if allowed to");
    req.on_request_body(w, host, body.len(), true)
}

/// A request on a fresh stream, sent up to the end of its body: its host (the effects so far),
/// the request, and the body callback's action.
pub fn start<'a>(
    envoy: &'a Envoy,
    w: &Worker,
    stream: u32,
    body: &[u8],
    extra: &[(&str, &str)],
) -> (Fake<'a>, Request, Action) {
    let mut host = envoy.host();
    let mut req = Request::new(stream);
    let action = send(w, &mut host, &mut req, body, extra);
    (host, req, action)
}

/// The upstream answers `status` with `body` (JSON), in one chunk.
pub fn answer(w: &Worker, host: &mut Fake<'_>, req: &mut Request, status: u16, body: &[u8]) {
    host.response_headers = Headers::from(vec![
        (":status".into(), status.to_string()),
        ("content-type".into(), "application/json".into()),
        ("content-length".into(), body.len().to_string()),
    ]);
    host.response_body = body.to_vec();
    req.on_response_headers(w, host, false);
    req.on_response_body(w, host, body.len(), true);
    req.on_stream_end(w, host);
}

/// A whole exchange on a fresh stream: returns the host (effects) and whether it went upstream.
pub fn exchange<'a>(envoy: &'a Envoy, w: &Worker, stream: u32, body: &[u8]) -> (Fake<'a>, bool) {
    let mut host = envoy.host();
    let mut req = Request::new(stream);
    let action = send(w, &mut host, &mut req, body, &[]);
    let upstream = finish(w, &mut host, &mut req, action);
    (host, upstream)
}

/// Flushes a worker's stats into a fresh fake host and returns it.
pub fn flushed<'a>(envoy: &'a Envoy, w: &Worker) -> Fake<'a> {
    let mut host = envoy.host();
    w.on_tick(&mut host);
    host
}
