//! One HTTP stream: each hook becomes one `Request` event with a fresh `NativeHost` (so the
//! clock is read at most once per callback). No decisions here.
use crate::abi::{CalloutAnswer, Filter};
use crate::factory::Factory;
use crate::host::NativeHost;
use crate::thread::{self, WorkerState};
use aurelis_core::coalescing::StreamId;
use aurelis_core::flow::{Action, Request};
use std::rc::Rc;
use std::sync::Arc;

pub struct Stream {
    id: StreamId,
    state: Rc<WorkerState>,
    request: Request,
}

impl Stream {
    pub fn new(factory: &Arc<Factory>, filter: Filter) -> Stream {
        let (id, state) = thread::attach(factory, filter);
        Stream { id, state, request: Request::new(id) }
    }

    pub fn on_request_headers(&mut self, filter: Filter, end_of_stream: bool) -> Action {
        let mut host = NativeHost::for_stream(filter, &self.state.factory);
        self.request.on_request_headers(&self.state.worker, &mut host, end_of_stream)
    }

    pub fn on_request_body(&mut self, filter: Filter, end_of_stream: bool) -> Action {
        let mut host = NativeHost::for_stream(filter, &self.state.factory);
        let size = filter.request_body_size();
        self.request.on_request_body(&self.state.worker, &mut host, size, end_of_stream)
    }

    pub fn on_response_headers(&mut self, filter: Filter, end_of_stream: bool) -> Action {
        let mut host = NativeHost::for_stream(filter, &self.state.factory);
        self.request.on_response_headers(&self.state.worker, &mut host, end_of_stream)
    }

    pub fn on_response_body(&mut self, filter: Filter, end_of_stream: bool) -> Action {
        let mut host = NativeHost::for_stream(filter, &self.state.factory);
        let size = filter.response_chunk_size();
        self.request.on_response_body(&self.state.worker, &mut host, size, end_of_stream)
    }

    pub fn on_stream_complete(&mut self, filter: Filter) {
        let mut host = NativeHost::for_stream(filter, &self.state.factory);
        self.request.on_stream_end(&self.state.worker, &mut host);
    }

    /// The answer to this stream's L2 lookup; a panic while handling it resumes the stream.
    pub fn on_callout_done(&mut self, filter: Filter, answer: &CalloutAnswer) {
        let mut host = NativeHost::for_answer(filter, &self.state.factory, answer);
        self.request.on_l2_answer(&self.state.worker, &mut host, answer.body.len());
    }

    /// After a caught panic in a request-side callback: `Continue` lets the request go on
    /// upstream rather than hang (fail open). With client authentication configured the
    /// filter is the gate, so the request is refused with a 503 instead (`Pause`: answered).
    pub fn after_panic(&self, filter: Filter) -> Action {
        if !self.state.factory.config.auth.authenticates_clients() {
            return Action::Continue;
        }
        let body = br#"{"error":{"message":"The gateway failed to check this request.","type":"server_error","code":"filter_failed"}}"#;
        filter.send_response(503, &[("content-type", "application/json")], body);
        Action::Pause
    }

    pub fn destroy(self) {
        thread::detach(self.id);
    }
}
