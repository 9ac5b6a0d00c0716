//! Where this worker last saw each key in L1, so a repeated hit reads its slot directly instead
//! of the set's metadata first: one shared-data read per hit instead of two (each read is a
//! host call and a copy into the VM). A hint is only a guess — the slot's own key and freshness
//! are checked on every read — so a stale hint costs one extra read, never a wrong answer.
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The map's keys are already well-spread hashes: use them as they are.
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Bounded by L1's capacity (every hint names a slot); cleared when full, which is rare and
/// only costs the metadata read again.
#[derive(Debug, Default)]
pub struct WayHints {
    ways: RefCell<HashMap<u64, Hint, BuildHasherDefault<KeyIsHash>>>,
    capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    pub way: usize,
    /// The last LRU touch this worker wrote for the entry.
    pub touched_ms: u64,
    /// Hits this worker served since that touch, added to the entry's count by the next one.
    pub pending_hits: u32,
}

impl WayHints {
    pub fn new(capacity: u64) -> WayHints {
        WayHints { ways: RefCell::default(), capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1) }
    }

    pub fn get(&self, hash: u64) -> Option<Hint> {
        self.ways.borrow().get(&hash).copied()
    }

    pub fn set(&self, hash: u64, hint: Hint) {
        let mut ways = self.ways.borrow_mut();
        if ways.len() >= self.capacity && !ways.contains_key(&hash) {
            ways.clear();
        }
        ways.insert(hash, hint);
    }

    pub fn forget(&self, hash: u64) {
        self.ways.borrow_mut().remove(&hash);
    }
}
