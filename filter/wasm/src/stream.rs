//! One HTTP stream: each proxy-wasm callback becomes one `Request` event, with a fresh
//! `ProxyHost` (so the clock is read at most once per callback). No decisions here.
use crate::root::Shared;
use aurelis_core::flow::{Action, Request};
use proxy_wasm::traits::{Context, HttpContext};
use std::rc::Rc;

pub struct AurelisStream {
    shared: Rc<Shared>,
    request: Request,
}

impl AurelisStream {
    pub fn new(context_id: u32, shared: Rc<Shared>) -> Self {
        AurelisStream { shared, request: Request::new(context_id) }
    }
}

fn action(action: Action) -> proxy_wasm::types::Action {
    match action {
        Action::Continue => proxy_wasm::types::Action::Continue,
        Action::Pause => proxy_wasm::types::Action::Pause,
    }
}

impl Context for AurelisStream {
    /// The answer to this stream's L2 lookup.
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let shared = &self.shared;
        self.request.on_l2_answer(&shared.worker, &mut shared.host(), body_size);
    }
}

impl HttpContext for AurelisStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        let shared = &self.shared;
        action(self.request.on_request_headers(&shared.worker, &mut shared.host(), end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        let shared = &self.shared;
        action(self.request.on_request_body(&shared.worker, &mut shared.host(), body_size, end_of_stream))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        let shared = &self.shared;
        action(self.request.on_response_headers(&shared.worker, &mut shared.host(), end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        let shared = &self.shared;
        action(self.request.on_response_body(&shared.worker, &mut shared.host(), body_size, end_of_stream))
    }

    fn on_log(&mut self) {
        let shared = &self.shared;
        self.request.on_stream_end(&shared.worker, &mut shared.host());
    }
}
