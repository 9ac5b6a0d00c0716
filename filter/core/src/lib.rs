//! Host-free core of the Aurelis filter.
//!
//! Everything the filter decides lives here as plain Rust that compiles and is tested natively:
//! the configuration schema (shared with the control plane), the canonical cache key, the
//! cacheability gate, the cache levels, coalescing, rate limits, and the request flow that ties
//! them together (`flow`). Hosts (the proxy-wasm crate `aurelis-filter`, a native module) only
//! translate between Envoy and `flow`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod auth;
pub mod cache;
pub mod coalescing;
pub mod completion;
pub mod config;
pub mod flow;
pub mod gate;
pub mod http;
pub mod key;
pub mod limits;
pub mod refresh;
pub mod replay;
pub mod routing;
pub mod warm;
