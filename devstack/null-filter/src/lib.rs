//! The null proxy-wasm filter of `make bench`: it pauses the request headers until the body has
//! arrived, then lets the request continue. It makes no other host call, so a stack running it
//! in front of Envoy's own answer measures what V8 and the proxy-wasm ABI cost by themselves.
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(NullFilter) });
}}

struct NullFilter;

impl Context for NullFilter {}

impl HttpContext for NullFilter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}
