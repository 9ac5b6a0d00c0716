//! Persistent storage shared by the control plane (telemetry history) and the cache service
//! (the L3 level). One trait per kind of data, one contract test suite per trait, run against
//! every backend: an embedded file database (the default: `make run` needs no setup) and
//! PostgreSQL (for replicas and fleets).
//!
//! Backends live in their own modules; callers hold an `Arc<dyn RollupStore>` or
//! `Arc<dyn EntryStore>` (from `open`) and never know which one they talk to.
mod entry;
mod error;
mod hits;
mod ints;
pub mod memory;
mod open;
pub mod postgres;
mod rollup;
pub mod settings;
pub mod sqlite;

pub use entry::{EntryStore, HotQuery, NewEntry, PurgeScope, StoredEntry};
pub use error::StoreError;
pub use open::{open, Stores};
pub use rollup::{Rollup, RollupStore};
pub use settings::{PostgresSettings, SettingsError, StoreSettings};
