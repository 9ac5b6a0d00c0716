//! The storage the L1 cache lives in: Envoy's proxy-wasm shared data in production (one map per
//! Envoy process, shared by all worker threads, compare-and-swap on writes), an in-memory map in
//! tests. Shared data never frees a key once written, so callers must use a bounded key space.
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read (another worker wrote it).
    CasMismatch,
    /// The host refused the operation.
    Host,
}

pub trait SharedStore {
    /// The value and its CAS token; `(None, None)` for a key never written.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes `value`; with `cas`, only if the value is unchanged since the read that returned it.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

/// A single-threaded stand-in with the same CAS semantics as Envoy's shared data.
#[derive(Default)]
pub struct MemoryStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    reads: std::cell::Cell<u64>,
    writes: std::cell::Cell<u64>,
    failing: std::cell::Cell<bool>,
}

impl MemoryStore {
    /// Total bytes of keys and values, as Envoy would hold them.
    pub fn bytes(&self) -> usize {
        self.map.borrow().iter().map(|(k, (v, _))| k.len() + v.len()).sum()
    }

    pub fn key_count(&self) -> usize {
        self.map.borrow().len()
    }

    /// Reads so far: each is a host call in Envoy, so tests pin how many a flow makes.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    /// Makes every read fail like a host error (tests of the fail-open paths).
    pub fn fail_reads(&self, failing: bool) {
        self.failing.set(failing);
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.reads.set(self.reads.get() + 1);
        if self.failing.get() {
            return Err(StoreError::Host);
        }
        Ok(match self.map.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.writes.set(self.writes.get() + 1);
        let mut map = self.map.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(actual)) = (cas, current) {
            if expected != actual {
                return Err(StoreError::CasMismatch);
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}
