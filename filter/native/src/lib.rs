//! Aurelis as an Envoy dynamic module: the same core flow as the proxy-wasm filter
//! (`filter/wasm`), loaded natively by stock Envoy 1.40 (`envoy.filters.http.dynamic_modules`).
//!
//! `abi` is the C boundary (the only `unsafe` code) and exports the hooks; `factory` is one
//! filter configuration; `stream` turns a stream's hooks into `Request` events; `thread` keeps
//! one core `Worker` per worker thread and drives its timer; `host` carries out the flow's
//! effects; `store` is the process-wide store that replaces proxy-wasm shared data; `metrics`
//! maps the flow's stat names onto Envoy's module metrics.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]

pub mod abi;
mod factory;
mod host;
mod metrics;
mod panics;
mod secrets;
mod store;
mod stream;
mod thread;
