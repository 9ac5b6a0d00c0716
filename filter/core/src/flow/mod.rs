//! The whole request flow as a host-free state machine: events in, effects out.
//!
//! A host (the proxy-wasm filter, a native Envoy module, the tests' fake) turns its callbacks
//! into events on a `Request` (one per HTTP stream) or on the `Worker` (one per Envoy worker:
//! timer ticks, wake-ups, L2 store answers), and carries out the effects the flow asks of it
//! through the `Host` trait: pause or continue, local replies, header changes, callouts to L2,
//! stats, and reads and writes of the process-wide store. Every decision is made here, so the
//! same flow runs on every host and is tested natively (`tests`).
//!
//! Where things are: `access` (identity, allowed models, refusals), `request` (state, header
//! and body events), `lookup` (key, L1, coalescing,
//! L2), `response` (the copy of the answer, the store, the release), `admission` (rate
//! limits), `reply` (the hit and 429 replies), `worker` (per-worker state and events),
//! `stats` (in-memory tallies flushed on the tick), `memo` (byte-identical repeats),
//! `workers` (facts all workers share), `facts` (what each request was, published at its end
//! for the access log).
mod access;
mod admission;
pub mod facts;
mod host;
mod hot;
mod lookup;
mod memo;
mod refresh;
mod reply;
mod request;
mod response;
mod scopes;
pub mod stats;
mod worker;
pub mod workers;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use admission::identity;
pub use facts::{FactValue, Facts};
pub use host::{Host, LogLevel};
pub use reply::HitContext;
pub use request::{Action, Request};
pub use worker::Worker;
