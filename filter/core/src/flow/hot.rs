//! Each worker's own copies of the entries it served last ("hot copies"), so a repeated hit
//! reads nothing from the shared store. Every host call that returns data costs a round trip
//! into the VM's allocator; skipping the slot read is the largest single saving on a hit.
//!
//! Why this is safe: an entry never changes under its key — a key names one request, and its
//! stored answer stays valid until its TTL, wherever it is evicted or replaced. A copy is kept
//! with the moment its TTL counts from and expires with it. The cost is memory: at most
//! `MAX_ENTRIES` copies and `MAX_BYTES` per worker, emptied when full (the hot keys come back
//! at once). A purged entry's copy is dropped with it (`remove`).
use crate::cache::Entry;
use crate::key::CacheKey;
use std::collections::HashMap;
use std::rc::Rc;

const MAX_ENTRIES: usize = 128;
const MAX_BYTES: usize = 1024 * 1024;

pub struct HotCopy {
    pub key: String,
    pub fresh_since_ms: u64,
    /// When this Envoy put the entry into L1 (for purge rules).
    pub inserted_ms: u64,
    pub entry: Entry,
}

#[derive(Default)]
pub struct HotCopies {
    copies: HashMap<u64, Rc<HotCopy>>,
    bytes: usize,
}

impl HotCopies {
    /// The copy of `key` if it is still fresh under `ttl_ms`.
    pub fn get(&self, key: &CacheKey, now_ms: u64, ttl_ms: u64) -> Option<Rc<HotCopy>> {
        let copy = self.copies.get(&key.hash)?;
        let fresh = now_ms.saturating_sub(copy.fresh_since_ms) < ttl_ms;
        (fresh && copy.key == key.text).then(|| Rc::clone(copy))
    }

    pub fn put(&mut self, key: &CacheKey, fresh_since_ms: u64, inserted_ms: u64, entry: &Entry) {
        let size = entry.body.len() + key.text.len();
        if size > MAX_BYTES / 8 {
            return;
        }
        if self.copies.len() >= MAX_ENTRIES || self.bytes + size > MAX_BYTES {
            self.clear();
        }
        let copy = HotCopy { key: key.text.clone(), fresh_since_ms, inserted_ms, entry: entry.clone() };
        if let Some(old) = self.copies.insert(key.hash, Rc::new(copy)) {
            self.bytes = self.bytes.saturating_sub(old.entry.body.len() + old.key.len());
        }
        self.bytes += size;
    }

    /// Forgets `key`'s copy (a purged entry).
    pub fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.copies.remove(&key.hash) {
            self.bytes = self.bytes.saturating_sub(old.entry.body.len() + old.key.len());
        }
    }

    pub fn clear(&mut self) {
        self.copies.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::BodyFormat;

    fn entry(body_len: usize) -> Entry {
        Entry {
            key: "k".into(),
            stored_at_ms: 0,
            status: 200,
            content_type: "application/json".into(),
            format: BodyFormat::Json,
            prompt_tokens: 1,
            completion_tokens: 1,
            body: vec![b'x'; body_len],
        }
    }

    #[test]
    fn copies_expire_with_their_ttl_and_stay_bounded() {
        let mut hot = HotCopies::default();
        let key = CacheKey::new("k".into());
        hot.put(&key, 1_000, 1_000, &entry(10));
        assert!(hot.get(&key, 5_000, 10_000).is_some());
        assert!(hot.get(&key, 11_000, 10_000).is_none(), "expired with the entry's TTL");
        for i in 0..1000 {
            hot.put(&CacheKey::new(format!("k{i}")), 0, 0, &entry(5_000));
            assert!(hot.copies.len() <= MAX_ENTRIES && hot.bytes <= MAX_BYTES);
        }
        hot.put(&CacheKey::new("huge".into()), 0, 0, &entry(MAX_BYTES));
        assert!(hot.get(&CacheKey::new("huge".into()), 0, 10).is_none(), "too large to copy");
    }
}
