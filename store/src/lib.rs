//! Persistent storage shared by the control plane (telemetry history) and the cache service
//! (the L3 level). One trait per kind of data, one contract test suite per trait, run against
//! every backend: an embedded file database (the default: `make run` needs no setup) and
//! PostgreSQL (for replicas and fleets).
//!
//! Backends live in their own modules; callers hold an `Arc<dyn RollupStore>` and never know
//! which one they talk to.
mod error;
pub mod memory;
mod rollup;

pub use error::StoreError;
pub use rollup::{Rollup, RollupStore};
