//! L1: a set-associative cache laid out over a `SharedStore`.
//!
//! Why set-associative: Envoy's shared data is one process-wide map shared by every worker, with
//! compare-and-swap writes, but it never frees a key. Storing each cache key as a shared-data key
//! would leak memory without bound. Instead the cache owns a fixed set of slot keys
//! (`sets × ways ≤ max_entries`), a request's key picks a set by hash, and the set's small
//! metadata record (hash, size, timestamps per way) decides hits and LRU eviction. Evicted slots
//! are overwritten with an empty value, so Envoy holds at most `max_bytes` of entries plus the
//! fixed per-slot overhead.
//!
//! Concurrency: metadata is written with CAS (retried a few times on contention); slot bodies
//! are written before their metadata, and every read checks the full key stored in the slot, so
//! a lost race is a miss, never a wrong answer.
use super::entry::Entry;
use super::store::{SharedStore, StoreError};
use crate::config::CacheConfig;
use sha2::{Digest, Sha256};

const MAX_WAYS: u32 = 4;
const META_VERSION: u8 = 1;
const WAY_META_LEN: usize = 8 + 4 + 8 + 8;
const CAS_ATTEMPTS: usize = 4;
/// Hits refresh their LRU timestamp at most this often, so hot keys do not turn every hit into
/// a contended metadata write.
const TOUCH_INTERVAL_MS: u64 = 1000;

/// The shape of the cache derived from configuration. Entries survive a configuration change
/// that keeps the same shape (TTL changes included); a new shape starts empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub sets: u32,
    pub ways: u32,
    /// Bytes all ways of one set may hold together (`max_bytes / sets`).
    pub set_budget_bytes: u64,
    /// Largest storable entry: `min(max_entry_bytes, set budget)`.
    pub max_entry_bytes: u64,
    pub ttl_ms: u64,
}

impl Layout {
    pub fn from_config(config: &CacheConfig) -> Layout {
        let max_entries = config.max_entries.max(1);
        let ways = max_entries.min(MAX_WAYS);
        let sets = (max_entries / ways).max(1);
        let set_budget_bytes = config.max_bytes / u64::from(sets);
        Layout {
            sets,
            ways,
            set_budget_bytes,
            max_entry_bytes: config.max_entry_bytes.min(set_budget_bytes),
            ttl_ms: config.ttl_seconds.saturating_mul(1000),
        }
    }

    /// Names the shared-data keys of this shape; a different shape never reads stale metadata.
    pub fn namespace(&self) -> String {
        format!("aurelis.l1.{}x{}.{}", self.sets, self.ways, self.set_budget_bytes)
    }

    pub fn capacity(&self) -> u64 {
        u64::from(self.sets) * u64::from(self.ways)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct WayMeta {
    hash: u64,
    /// Encoded entry size; 0 marks an empty way.
    size: u32,
    stored_at_ms: u64,
    last_access_ms: u64,
}

fn decode_meta(bytes: Option<&[u8]>, ways: u32) -> Vec<WayMeta> {
    let mut metas = vec![WayMeta::default(); ways as usize];
    let Some(bytes) = bytes else { return metas };
    let Some((&version, rest)) = bytes.split_first() else { return metas };
    if version != META_VERSION {
        return metas;
    }
    for (meta, chunk) in metas.iter_mut().zip(rest.chunks_exact(WAY_META_LEN)) {
        let u64_at = |at: usize| chunk.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        let size = chunk.get(8..12).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes);
        *meta = WayMeta { hash: u64_at(0), size, stored_at_ms: u64_at(12), last_access_ms: u64_at(20) };
    }
    metas
}

fn encode_meta(metas: &[WayMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + metas.len() * WAY_META_LEN);
    out.push(META_VERSION);
    for m in metas {
        out.extend_from_slice(&m.hash.to_le_bytes());
        out.extend_from_slice(&m.size.to_le_bytes());
        out.extend_from_slice(&m.stored_at_ms.to_le_bytes());
        out.extend_from_slice(&m.last_access_ms.to_le_bytes());
    }
    out
}

fn key_hash(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    // 0 marks "no hash" in metadata; remap the one key in 2^64 that hashes to it.
    u64::from_le_bytes(first).max(1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh entry and its age in seconds.
    Hit {
        entry: Entry,
        age_seconds: u64,
    },
    Miss,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored; `evicted` live entries made room for it.
    Stored {
        evicted: u32,
    },
    TooLarge,
    /// Other workers kept changing the set; the entry was not stored (a later fill will be).
    Contended,
    StoreFailed,
}

/// Live entries and bytes, for gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occupancy {
    pub entries: u64,
    pub bytes: u64,
}

pub struct L1Cache<'a, S: SharedStore> {
    store: &'a S,
    layout: &'a Layout,
    namespace: String,
}

impl<'a, S: SharedStore> L1Cache<'a, S> {
    pub fn new(store: &'a S, layout: &'a Layout) -> Self {
        Self { store, layout, namespace: layout.namespace() }
    }

    fn meta_key(&self, set: u64) -> String {
        format!("{}.m{}", self.namespace, set)
    }

    fn slot_key(&self, set: u64, way: usize) -> String {
        format!("{}.s{}.{}", self.namespace, set, way)
    }

    fn set_of(&self, hash: u64) -> u64 {
        hash % u64::from(self.layout.sets.max(1))
    }

    fn is_fresh(&self, meta: &WayMeta, now_ms: u64) -> bool {
        now_ms.saturating_sub(meta.stored_at_ms) < self.layout.ttl_ms
    }

    pub fn lookup(&self, key: &str, now_ms: u64) -> Lookup {
        let hash = key_hash(key);
        let set = self.set_of(hash);
        let Ok((meta_bytes, cas)) = self.store.get(&self.meta_key(set)) else { return Lookup::Miss };
        let mut metas = decode_meta(meta_bytes.as_deref(), self.layout.ways);
        let Some(way) = metas.iter().position(|m| m.size > 0 && m.hash == hash) else { return Lookup::Miss };
        let Some(meta) = metas.get(way).copied() else { return Lookup::Miss };
        if !self.is_fresh(&meta, now_ms) {
            return Lookup::Expired;
        }
        let Ok((Some(bytes), _)) = self.store.get(&self.slot_key(set, way)) else { return Lookup::Miss };
        let Some(entry) = Entry::decode(&bytes) else { return Lookup::Miss };
        if entry.key != key {
            return Lookup::Miss;
        }
        if now_ms.saturating_sub(meta.last_access_ms) >= TOUCH_INTERVAL_MS {
            if let Some(m) = metas.get_mut(way) {
                m.last_access_ms = now_ms;
            }
            // Best effort: losing this race only makes LRU slightly less exact.
            let _ = self.store.set(&self.meta_key(set), &encode_meta(&metas), cas);
        }
        let age_seconds = now_ms.saturating_sub(entry.stored_at_ms) / 1000;
        Lookup::Hit { entry, age_seconds }
    }

    pub fn insert(&self, entry: &Entry, now_ms: u64) -> Insert {
        self.insert_fresh_since(entry, now_ms, now_ms)
    }

    /// Like `insert`, but the L1 TTL counts from `fresh_since_ms` (never later than now): an
    /// entry promoted from L2 must not outlive the TTL it was first stored under.
    pub fn insert_fresh_since(&self, entry: &Entry, now_ms: u64, fresh_since_ms: u64) -> Insert {
        let fresh_since_ms = fresh_since_ms.min(now_ms);
        let encoded = entry.encode();
        let size = encoded.len() as u64;
        if size > self.layout.max_entry_bytes || size > u64::from(u32::MAX) {
            return Insert::TooLarge;
        }
        let hash = key_hash(&entry.key);
        let set = self.set_of(hash);
        for _ in 0..CAS_ATTEMPTS {
            let Ok((meta_bytes, cas)) = self.store.get(&self.meta_key(set)) else { return Insert::StoreFailed };
            let mut metas = decode_meta(meta_bytes.as_deref(), self.layout.ways);
            let (way, mut freed) = self.choose_victims(&mut metas, hash, size, now_ms);
            let Some(target) = metas.get_mut(way) else { return Insert::StoreFailed };
            *target = WayMeta { hash, size: size as u32, stored_at_ms: fresh_since_ms, last_access_ms: now_ms };
            if self.store.set(&self.slot_key(set, way), &encoded, None).is_err() {
                return Insert::StoreFailed;
            }
            match self.store.set(&self.meta_key(set), &encode_meta(&metas), cas) {
                Ok(()) => {
                    let evicted = freed.len() as u32;
                    for w in freed.drain(..) {
                        let _ = self.store.set(&self.slot_key(set, w), b"", None);
                    }
                    return Insert::Stored { evicted };
                }
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => return Insert::StoreFailed,
            }
        }
        Insert::Contended
    }

    /// Picks the way for a new entry and frees further ways until the set fits its byte budget.
    /// Returns the chosen way and the ways whose live entries were evicted.
    fn choose_victims(&self, metas: &mut [WayMeta], hash: u64, size: u64, now_ms: u64) -> (usize, Vec<usize>) {
        let mut evicted = Vec::new();
        // Same key (refresh), else an empty or expired way, else the least recently used.
        let way = metas
            .iter()
            .position(|m| m.size > 0 && m.hash == hash)
            .or_else(|| metas.iter().position(|m| m.size == 0))
            .or_else(|| metas.iter().position(|m| !self.is_fresh(m, now_ms)))
            .unwrap_or_else(|| lru_way(metas));
        if let Some(m) = metas.get_mut(way) {
            if m.size > 0 && m.hash != hash && self.is_fresh(m, now_ms) {
                evicted.push(way);
            }
            *m = WayMeta::default();
        }
        loop {
            let used: u64 = metas.iter().map(|m| u64::from(m.size)).sum();
            if used + size <= self.layout.set_budget_bytes {
                break;
            }
            let victim = metas
                .iter()
                .enumerate()
                .filter(|(i, m)| *i != way && m.size > 0)
                .min_by_key(|(_, m)| m.last_access_ms)
                .map(|(i, _)| i);
            match victim.and_then(|v| metas.get_mut(v).map(|m| (v, m))) {
                Some((v, m)) => {
                    *m = WayMeta::default();
                    evicted.push(v);
                }
                None => break,
            }
        }
        (way, evicted)
    }

    fn flight_key(&self, set: u64) -> String {
        format!("{}.f{}", self.namespace, set)
    }

    /// Claims the fill of `key` for this caller across every Envoy worker: `true` if it should
    /// go upstream (it leads), `false` if another worker's unexpired claim is already filling it.
    /// Claims live in one small record per set (at most `MAX_FLIGHTS_PER_SET`), so the key space
    /// stays bounded; when a set's record is full, the caller leads without a claim.
    pub fn claim_flight(&self, key: &str, now_ms: u64, deadline_ms: u64) -> bool {
        let hash = key_hash(key);
        let record = self.flight_key(self.set_of(hash));
        for _ in 0..CAS_ATTEMPTS {
            let Ok((bytes, cas)) = self.store.get(&record) else { return true };
            let mut flights: Vec<(u64, u64)> =
                decode_flights(bytes.as_deref()).into_iter().filter(|(_, deadline)| *deadline > now_ms).collect();
            if flights.iter().any(|(h, _)| *h == hash) {
                return false;
            }
            if flights.len() >= MAX_FLIGHTS_PER_SET {
                return true;
            }
            flights.push((hash, deadline_ms));
            match self.store.set(&record, &encode_flights(&flights), cas) {
                Ok(()) => return true,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => return true,
            }
        }
        true
    }

    /// Whether some worker still claims the fill of `key`.
    pub fn flight_pending(&self, key: &str, now_ms: u64) -> bool {
        let hash = key_hash(key);
        let Ok((bytes, _)) = self.store.get(&self.flight_key(self.set_of(hash))) else { return false };
        decode_flights(bytes.as_deref()).iter().any(|(h, deadline)| *h == hash && *deadline > now_ms)
    }

    /// Drops the claim on `key` (its leader finished, stored or not).
    pub fn release_flight(&self, key: &str) {
        let hash = key_hash(key);
        let record = self.flight_key(self.set_of(hash));
        for _ in 0..CAS_ATTEMPTS {
            let Ok((bytes, cas)) = self.store.get(&record) else { return };
            let flights = decode_flights(bytes.as_deref());
            if !flights.iter().any(|(h, _)| *h == hash) {
                return;
            }
            let rest: Vec<(u64, u64)> = flights.into_iter().filter(|(h, _)| *h != hash).collect();
            match self.store.set(&record, &encode_flights(&rest), cas) {
                Err(StoreError::CasMismatch) => continue,
                _ => return,
            }
        }
    }

    /// Walks every set's metadata: O(sets) shared-data reads, so call it from a timer, not per request.
    pub fn occupancy(&self, now_ms: u64) -> Occupancy {
        let mut occ = Occupancy::default();
        for set in 0..u64::from(self.layout.sets) {
            let Ok((bytes, _)) = self.store.get(&self.meta_key(set)) else { continue };
            for m in decode_meta(bytes.as_deref(), self.layout.ways) {
                if m.size > 0 && self.is_fresh(&m, now_ms) {
                    occ.entries += 1;
                    occ.bytes += u64::from(m.size);
                }
            }
        }
        occ
    }

    /// Empties every slot of this layout (used when the shape changes, to give the memory back).
    pub fn clear(&self) {
        for set in 0..u64::from(self.layout.sets) {
            let (Ok((Some(_), _)), meta_key) = (self.store.get(&self.meta_key(set)), self.meta_key(set)) else {
                continue;
            };
            let _ = self.store.set(&meta_key, b"", None);
            for way in 0..self.layout.ways as usize {
                let _ = self.store.set(&self.slot_key(set, way), b"", None);
            }
        }
    }
}

/// Claimed fills per set, across workers (see `claim_flight`).
const MAX_FLIGHTS_PER_SET: usize = 16;

fn decode_flights(bytes: Option<&[u8]>) -> Vec<(u64, u64)> {
    let word = |c: &[u8], at: usize| c.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
    bytes.map_or_else(Vec::new, |b| b.chunks_exact(16).map(|c| (word(c, 0), word(c, 8))).collect())
}

fn encode_flights(flights: &[(u64, u64)]) -> Vec<u8> {
    flights.iter().flat_map(|(h, d)| h.to_le_bytes().into_iter().chain(d.to_le_bytes())).collect()
}

/// The least recently used way (empty ways count as oldest).
fn lru_way(metas: &[WayMeta]) -> usize {
    metas
        .iter()
        .enumerate()
        .min_by_key(|(_, m)| if m.size == 0 { 0 } else { m.last_access_ms.max(1) })
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::MemoryStore;
    use crate::gate::BodyFormat;

    fn config(max_entries: u32, max_bytes: u64) -> CacheConfig {
        CacheConfig { max_entries, max_bytes, max_entry_bytes: max_bytes, ttl_seconds: 10, ..CacheConfig::default() }
    }

    fn entry(key: &str, body_len: usize, now: u64) -> Entry {
        Entry {
            key: key.into(),
            stored_at_ms: now,
            status: 200,
            content_type: "application/json".into(),
            format: BodyFormat::Json,
            prompt_tokens: 1,
            completion_tokens: 2,
            body: vec![b'x'; body_len],
        }
    }

    #[test]
    fn stores_and_hits_until_ttl() {
        let store = MemoryStore::default();
        let layout = Layout::from_config(&config(100, 1 << 20));
        let l1 = L1Cache::new(&store, &layout);
        assert_eq!(l1.lookup("k1", 0), Lookup::Miss);
        assert_eq!(l1.insert(&entry("k1", 10, 1_000), 1_000), Insert::Stored { evicted: 0 });
        match l1.lookup("k1", 4_500) {
            Lookup::Hit { entry, age_seconds } => {
                assert_eq!(entry.body.len(), 10);
                assert_eq!(age_seconds, 3);
            }
            other => panic!("expected hit, got {other:?}"),
        }
        assert_eq!(l1.lookup("k1", 11_000), Lookup::Expired);
    }

    #[test]
    fn the_ttl_can_count_from_an_earlier_moment() {
        let store = MemoryStore::default();
        let layout = Layout::from_config(&config(100, 1 << 20)); // 10 s TTL
        let l1 = L1Cache::new(&store, &layout);
        assert_eq!(l1.insert_fresh_since(&entry("k1", 10, 0), 5_000, 2_000), Insert::Stored { evicted: 0 });
        assert!(matches!(l1.lookup("k1", 11_000), Lookup::Hit { .. }));
        assert_eq!(l1.lookup("k1", 12_000), Lookup::Expired, "10 s from 2 s, not from 5 s");
        // A moment in the future is clamped to now: never longer than a plain insert.
        assert_eq!(l1.insert_fresh_since(&entry("k2", 10, 0), 5_000, 9_000), Insert::Stored { evicted: 0 });
        assert_eq!(l1.lookup("k2", 15_000), Lookup::Expired);
    }

    #[test]
    fn ten_times_capacity_stays_within_bounds() {
        let store = MemoryStore::default();
        let max_bytes = 64 * 1024;
        let layout = Layout::from_config(&config(64, max_bytes));
        let l1 = L1Cache::new(&store, &layout);
        for i in 0..640u64 {
            let _ = l1.insert(&entry(&format!("key-{i}"), 500, i), i);
        }
        let occ = l1.occupancy(700);
        assert!(occ.entries <= 64, "{occ:?}");
        assert!(occ.bytes <= max_bytes, "{occ:?}");
        // Keys are bounded by the layout, not by how many entries passed through.
        assert!(store.key_count() <= 64 + 16, "{} keys", store.key_count());
        let overhead_per_key = 64;
        assert!(store.bytes() as u64 <= max_bytes + (store.key_count() as u64) * (overhead_per_key + 1 + 4 * 28));
    }

    #[test]
    fn lru_keeps_recently_used_entry() {
        let store = MemoryStore::default();
        let layout = Layout::from_config(&config(4, 1 << 20)); // one set of four ways
        let l1 = L1Cache::new(&store, &layout);
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            l1.insert(&entry(k, 10, i as u64 * 2_000), i as u64 * 2_000);
        }
        assert!(matches!(l1.lookup("a", 7_000), Lookup::Hit { .. })); // touch a
        assert_eq!(l1.insert(&entry("e", 10, 8_000), 8_000), Insert::Stored { evicted: 1 });
        assert!(matches!(l1.lookup("a", 8_500), Lookup::Hit { .. }));
        assert_eq!(l1.lookup("b", 8_500), Lookup::Miss);
    }

    #[test]
    fn byte_budget_evicts_and_refuses_oversized() {
        let store = MemoryStore::default();
        let layout = Layout::from_config(&config(4, 1000));
        let l1 = L1Cache::new(&store, &layout);
        assert_eq!(l1.insert(&entry("big", 2000, 0), 0), Insert::TooLarge);
        l1.insert(&entry("a", 400, 0), 0);
        l1.insert(&entry("b", 400, 1), 1);
        assert!(matches!(l1.insert(&entry("c", 400, 2), 2), Insert::Stored { evicted: 1 }));
        assert!(l1.occupancy(3).bytes <= 1000);
    }

    #[test]
    fn one_claim_per_key_until_released_or_expired() {
        let store = MemoryStore::default();
        let layout = Layout::from_config(&config(8, 1 << 20));
        let l1 = L1Cache::new(&store, &layout);
        assert!(l1.claim_flight("k", 0, 1_000), "first caller leads");
        assert!(!l1.claim_flight("k", 10, 1_010), "second caller waits");
        assert!(l1.flight_pending("k", 10));
        assert!(l1.claim_flight("other", 10, 1_010), "other keys are independent");
        l1.release_flight("k");
        assert!(!l1.flight_pending("k", 20));
        assert!(l1.claim_flight("k", 20, 1_020));
        assert!(l1.claim_flight("k", 2_000, 3_000), "an expired claim does not block");
    }

    #[test]
    fn clear_frees_values() {
        let store = MemoryStore::default();
        let layout = Layout::from_config(&config(8, 1 << 20));
        let l1 = L1Cache::new(&store, &layout);
        l1.insert(&entry("a", 1000, 0), 0);
        l1.clear();
        assert_eq!(l1.lookup("a", 1), Lookup::Miss);
        assert!(store.bytes() < 1000);
    }
}
