//! Host-free core of the Aurelis filter.
//!
//! Everything the filter decides lives here as plain Rust that compiles and is tested natively:
//! the configuration schema (shared with the control plane), the canonical cache key, the
//! cacheability gate and the L1 cache logic. The wasm crate (`aurelis-filter`) only moves bytes
//! between Envoy and these functions.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod cache;
pub mod completion;
pub mod config;
pub mod gate;
pub mod key;
pub mod limits;
pub mod routing;
