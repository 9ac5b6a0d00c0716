//! The process-wide store (L1 slots, coalescing claims, the limit table): process memory shared
//! by every Envoy worker thread, with the same semantics as the proxy-wasm shared data the Wasm
//! host uses — a value and a CAS token per key, writes with a token only if it is current — so
//! the core works unchanged and exactly across workers.
//!
//! Sharded by key hash: each shard is a mutex over a map, held only for one get or set (a copy
//! of one value), so workers rarely meet. Like Envoy's shared data it never frees a key: the
//! core only uses bounded key spaces (slots by set and way, one claim per slot, a capped limit
//! table), so memory is bounded by the configuration, not by request data.
use aurelis_core::cache::{SharedStore, StoreError};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, OnceLock};

const SHARDS: usize = 64;

type Map = HashMap<String, (Vec<u8>, u32)>;
type Shard = Mutex<Map>;

pub struct ProcessStore {
    shards: Vec<Shard>,
    hasher: RandomState,
}

impl Default for ProcessStore {
    fn default() -> Self {
        ProcessStore { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), hasher: RandomState::new() }
    }
}

impl ProcessStore {
    /// The one store of this Envoy process.
    pub fn global() -> &'static ProcessStore {
        static STORE: OnceLock<ProcessStore> = OnceLock::new();
        STORE.get_or_init(ProcessStore::default)
    }

    fn shard(&self, key: &str) -> Result<std::sync::MutexGuard<'_, Map>, StoreError> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A poisoned shard (a panic while holding it) is still consistent: every write below
        // is a single insert, so the data is never half-written. Keep serving it.
        let shard = self.shards.get(index).ok_or(StoreError::Host)?;
        Ok(shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl SharedStore for ProcessStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(match self.shard(key)?.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut shard = self.shard(key)?;
        let current = shard.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(actual)) = (cas, current) {
            if expected != actual {
                return Err(StoreError::CasMismatch);
            }
        }
        // Tokens start at 1 and never repeat for a key until they wrap (Envoy's shared data
        // does the same), so a stale token cannot match.
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        match shard.get_mut(key) {
            Some(slot) => {
                slot.0.clear();
                slot.0.extend_from_slice(value);
                slot.1 = next;
            }
            None => {
                shard.insert(key.to_string(), (value.to_vec(), next));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn cas_semantics_match_shared_data() {
        let store = ProcessStore::default();
        assert_eq!(store.get("k").ok(), Some((None, None)));
        assert!(store.set("k", b"a", None).is_ok());
        let (value, cas) = store.get("k").unwrap_or_default();
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        assert!(store.set("k", b"b", cas).is_ok());
        assert_eq!(store.set("k", b"c", cas), Err(StoreError::CasMismatch), "stale token");
        assert!(store.set("k", b"d", None).is_ok(), "no token: unconditional");
        assert_eq!(store.get("k").unwrap_or_default().0.as_deref(), Some(&b"d"[..]));
    }

    #[test]
    fn concurrent_increments_are_exact() {
        let store = Arc::new(ProcessStore::default());
        assert!(store.set("n", &0u64.to_le_bytes(), None).is_ok());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        loop {
                            let (value, cas) = store.get("n").unwrap_or_default();
                            let n = value.and_then(|v| v.try_into().ok()).map_or(0, u64::from_le_bytes);
                            if store.set("n", &(n + 1).to_le_bytes(), cas).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        let (value, _) = store.get("n").unwrap_or_default();
        assert_eq!(value.and_then(|v| v.try_into().ok()).map(u64::from_le_bytes), Some(4000));
    }

    /// The native host runs the core's L1 over this store: the configured eviction policy
    /// decides which entry makes room, with hits counted by workers on several threads.
    #[test]
    fn l1_over_the_process_store_evicts_by_policy() {
        use aurelis_core::cache::{Entry, Insert, KeyNames, L1Cache, Layout, Lookup, WayHints};
        use aurelis_core::config::{CacheConfig, EvictionPolicy};
        use aurelis_core::gate::BodyFormat;
        use aurelis_core::key::CacheKey;

        let survivors = |eviction: EvictionPolicy| -> Vec<&'static str> {
            let store = Arc::new(ProcessStore::default());
            let config = CacheConfig { max_entries: 4, ttl_seconds: 3600, eviction, ..CacheConfig::default() };
            let layout = Arc::new(Layout::from_config(&config));
            let entry = |key: &str| Entry {
                key: key.into(),
                stored_at_ms: 0,
                status: 200,
                content_type: "application/json".into(),
                format: BodyFormat::Json,
                prompt_tokens: 1,
                completion_tokens: 1,
                body: b"{}".to_vec(),
            };
            let names = KeyNames::new(&layout);
            let hints = WayHints::new(4);
            let l1 = L1Cache::new(&*store, &layout, &names, &hints);
            for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
                assert!(matches!(
                    l1.insert(&CacheKey::new((*key).into()), &entry(key), i as u64),
                    Insert::Stored { .. }
                ));
            }
            // Two other workers use `a` a lot, early; `b` is used once, last.
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (store, layout) = (Arc::clone(&store), Arc::clone(&layout));
                    std::thread::spawn(move || {
                        let (names, hints) = (KeyNames::new(&layout), WayHints::new(4));
                        let l1 = L1Cache::new(&*store, &layout, &names, &hints);
                        (1..=5u64)
                            .all(|t| matches!(l1.lookup(&CacheKey::new("a".into()), t * 1_000), Lookup::Hit { .. }))
                    })
                })
                .collect();
            for worker in workers {
                assert_eq!(worker.join().ok(), Some(true));
            }
            for (key, t) in [("c", 6_000), ("d", 7_000), ("b", 8_000)] {
                assert!(matches!(l1.lookup(&CacheKey::new(key.into()), t), Lookup::Hit { .. }));
            }
            assert!(matches!(l1.insert(&CacheKey::new("e".into()), &entry("e"), 9_000), Insert::Stored { evicted: 1 }));
            let fresh = WayHints::new(4);
            let reader = L1Cache::new(&*store, &layout, &names, &fresh);
            ["a", "b", "c", "d", "e"]
                .into_iter()
                .filter(|key| matches!(reader.lookup(&CacheKey::new((*key).into()), 9_001), Lookup::Hit { .. }))
                .collect()
        };
        assert_eq!(survivors(EvictionPolicy::Lru), ["b", "c", "d", "e"], "LRU: a was used longest ago");
        assert_eq!(survivors(EvictionPolicy::Lfu), ["a", "b", "d", "e"], "LFU: c was used least (ties: LRU)");
    }
}
