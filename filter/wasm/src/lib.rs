//! Aurelis proxy-wasm HTTP filter: the thin layer between Envoy and `aurelis_core::flow`.
//!
//! `root` parses configuration and turns the worker's callbacks (timer, queue, store answers)
//! into worker events; `stream` turns each HTTP stream's callbacks into request events; `host`
//! carries out what the flow asks through the Result-returning host calls.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod facts;
mod host;
mod root;
mod stream;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(proxy_wasm::types::LogLevel::Critical, &format!("aurelis: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|id| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(root::AurelisRoot::new(id)) });
}}
