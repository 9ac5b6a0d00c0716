//! Aurelis proxy-wasm HTTP filter: the thin layer between Envoy and `aurelis-core`.
//!
//! `root` parses configuration and runs the per-worker timer; `http` handles one request;
//! `host` wraps the Result-returning host calls (the SDK's trait helpers unwrap host errors,
//! and a panic would kill this worker's Wasm VM); `metrics` defines the Envoy stats.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod host;
mod http;
mod l2;
mod limit;
mod metrics;
mod root;
mod worker;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(proxy_wasm::types::LogLevel::Critical, &format!("aurelis: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(root::AurelisRoot::default()) });
}}
