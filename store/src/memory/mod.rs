//! An in-memory backend: for unit tests of the callers, and as the reference the contract tests
//! compare the real backends with. It keeps nothing across restarts.
mod entries;
mod rollups;

use crate::Rollup;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    rollups: tokio::sync::Mutex<Vec<Rollup>>,
    entries: Mutex<HashMap<(String, String), entries::MemoryEntry>>,
}
