//! The flow driven natively with a fake host (`flow::testing`): every scenario the end-to-end
//! suite proves in a real Envoy (caching, coalescing, L2, rate limits) has a test here that
//! runs in milliseconds.
mod access;
mod caching;
mod coalescing;
mod facts;
mod l2;
mod limits;
mod purge;
mod refresh;
mod replay;

pub use super::testing::*;
pub use super::{Action, Request, Worker};
pub use serde_json::json;
