//! The L1 response cache: entries and their encoding, the storage trait, and the bounded
//! set-associative layout that keeps Envoy's never-freed shared-data keys finite.
pub mod entry;
pub mod l1;
pub mod l2;
pub mod purge;
pub mod sealed;
pub mod store;

pub use entry::Entry;
pub use l1::{Insert, KeyNames, L1Cache, Layout, Lookup, Occupancy, WayHints};
pub use l2::{L2Answer, L2Secrets, PendingStore};
pub use purge::{PurgeRule, Purges};
pub use store::{MemoryStore, SharedStore, StoreError};
