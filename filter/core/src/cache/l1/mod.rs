//! L1: a set-associative cache laid out over a `SharedStore`.
//!
//! Why set-associative: Envoy's shared data is one process-wide map shared by every worker, with
//! compare-and-swap writes, but it never frees a key. Storing each cache key as a shared-data key
//! would leak memory without bound. Instead the cache owns a fixed set of slot keys
//! (`sets × ways ≤ max_entries`), a request's key picks a set by hash, and the set's small
//! metadata record (hash, size, timestamps and hit count per way) decides hits and eviction
//! (`cache.eviction`: least recently used, or least frequently used). Evicted slots
//! are overwritten with an empty value, so Envoy holds at most `max_bytes` of entries plus the
//! fixed per-slot overhead.
//!
//! Concurrency: metadata is written with CAS (retried a few times on contention); slot bodies
//! are written before their metadata, and every read checks the full key stored in the slot, so
//! a lost race is a miss, never a wrong answer.
//!
//! Reads: a worker remembers which way it last found each key in (`WayHints`); a hit on a
//! hinted key reads the slot alone, which carries its own freshness.
//!
//! Use is recorded without a write per hit: a worker writes an entry's last use and the hits
//! it served since (`Hint::pending_hits`) at most once per `TOUCH_INTERVAL_MS`. LFU counts are
//! therefore exact up to lost CAS races and a worker's unflushed last second, which is
//! plenty to tell a hot key from a one-off one.
mod hints;
mod layout;
mod meta;
#[cfg(test)]
mod tests;

pub use hints::WayHints;
pub use layout::{KeyNames, Layout};

use super::entry::Entry;
use super::store::{SharedStore, StoreError};
use crate::config::EvictionPolicy;
use crate::key::CacheKey;
use hints::Hint;
use meta::{decode_meta, decode_slot, encode_meta, encode_slot, Slot, WayMeta};

const CAS_ATTEMPTS: usize = 4;
/// Hits refresh their LRU timestamp at most this often, so hot keys do not turn every hit into
/// a contended metadata write.
const TOUCH_INTERVAL_MS: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh entry and its age in seconds.
    Hit {
        entry: Entry,
        age_seconds: u64,
        /// The moment its L1 TTL counts from.
        fresh_since_ms: u64,
        /// The moment this Envoy put it into L1 (purge rules are checked against it).
        inserted_ms: u64,
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
    /// Other workers kept changing the set; not stored (a later fill will be).
    Contended,
    StoreFailed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    pub entries: u64,
    pub bytes: u64,
}

/// A view of L1 for one call: the store, the layout's key names and this worker's hints.
pub struct L1Cache<'a, S: SharedStore> {
    store: &'a S,
    layout: &'a Layout,
    names: &'a KeyNames,
    hints: &'a WayHints,
}

impl<'a, S: SharedStore> L1Cache<'a, S> {
    pub fn new(store: &'a S, layout: &'a Layout, names: &'a KeyNames, hints: &'a WayHints) -> Self {
        L1Cache { store, layout, names, hints }
    }

    fn is_fresh(&self, fresh_since_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(fresh_since_ms) < self.layout.ttl_ms
    }

    pub fn lookup(&self, key: &CacheKey, now_ms: u64) -> Lookup {
        let set = self.layout.set_of(key.hash);
        if let Some(hint) = self.hints.get(key.hash) {
            if let Some(found) = self.read_hinted(key, set, hint, now_ms) {
                return found;
            }
            self.hints.forget(key.hash);
        }
        let Ok((meta_bytes, cas)) = self.store.get(&self.names.meta(set)) else { return Lookup::Miss };
        let mut metas = decode_meta(meta_bytes.as_deref(), self.layout.ways);
        let Some(way) = metas.iter().position(|m| m.is_live() && m.hash == key.hash) else { return Lookup::Miss };
        let Some(meta) = metas.get(way).copied() else { return Lookup::Miss };
        if !self.is_fresh(meta.fresh_since_ms, now_ms) {
            return Lookup::Expired;
        }
        let Some(slot) = self.read_slot(key, set, way) else { return Lookup::Miss };
        let mut hint = Hint { way, touched_ms: meta.last_access_ms, pending_hits: 1 };
        if now_ms.saturating_sub(meta.last_access_ms) >= TOUCH_INTERVAL_MS {
            if let Some(m) = metas.get_mut(way) {
                m.last_access_ms = now_ms;
                m.hits = m.hits.saturating_add(1);
            }
            // Best effort: losing this race only makes LRU and LFU slightly less exact.
            let _ = self.store.set(&self.names.meta(set), &encode_meta(&metas), cas);
            hint = Hint { way, touched_ms: now_ms, pending_hits: 0 };
        }
        self.hints.set(key.hash, hint);
        hit(slot, now_ms)
    }

    /// The hinted slot, if it still holds `key`: `None` sends the caller to the metadata.
    fn read_hinted(&self, key: &CacheKey, set: u64, hint: Hint, now_ms: u64) -> Option<Lookup> {
        let slot = self.read_slot(key, set, hint.way)?;
        if !self.is_fresh(slot.fresh_since_ms, now_ms) {
            return Some(Lookup::Expired);
        }
        self.record_use(key, set, hint, now_ms);
        Some(hit(slot, now_ms))
    }

    /// Records a use of `key` without reading its entry (a worker served its own copy). Needs
    /// the key's way hint.
    pub fn touch_if_due(&self, key: &CacheKey, now_ms: u64) {
        let Some(hint) = self.hints.get(key.hash) else { return };
        self.record_use(key, self.layout.set_of(key.hash), hint, now_ms);
    }

    /// One more hit on a hinted key: written with the hits pending since the last touch at
    /// most once per `TOUCH_INTERVAL_MS` per worker and key, else kept in the hint.
    fn record_use(&self, key: &CacheKey, set: u64, hint: Hint, now_ms: u64) {
        let pending_hits = hint.pending_hits.saturating_add(1);
        if now_ms.saturating_sub(hint.touched_ms) >= TOUCH_INTERVAL_MS {
            self.touch(key, set, hint.way, now_ms, pending_hits);
        } else {
            self.hints.set(key.hash, Hint { pending_hits, ..hint });
        }
    }

    fn read_slot(&self, key: &CacheKey, set: u64, way: usize) -> Option<Slot> {
        let (bytes, _) = self.store.get(&self.names.slot(set, way)).ok()?;
        let slot = decode_slot(&bytes?)?;
        (slot.entry.key == key.text).then_some(slot)
    }

    /// Writes a use and `hits` more hits into the metadata (LRU time, LFU count).
    fn touch(&self, key: &CacheKey, set: u64, way: usize, now_ms: u64, hits: u32) {
        self.hints.set(key.hash, Hint { way, touched_ms: now_ms, pending_hits: 0 });
        let Ok((meta_bytes, cas)) = self.store.get(&self.names.meta(set)) else { return };
        let mut metas = decode_meta(meta_bytes.as_deref(), self.layout.ways);
        if let Some(m) = metas.get_mut(way).filter(|m| m.hash == key.hash) {
            m.last_access_ms = now_ms;
            m.hits = m.hits.saturating_add(hits);
            let _ = self.store.set(&self.names.meta(set), &encode_meta(&metas), cas);
        }
    }

    /// Drops `key`'s entry if it was put into L1 at or before `inserted_by_ms` (a purged entry:
    /// a fresher one another worker stored meanwhile stays). Best effort: a lost race leaves
    /// it for the next lookup, which drops it again.
    pub fn remove(&self, key: &CacheKey, inserted_by_ms: u64) {
        self.hints.forget(key.hash);
        let set = self.layout.set_of(key.hash);
        let Ok((meta_bytes, cas)) = self.store.get(&self.names.meta(set)) else { return };
        let mut metas = decode_meta(meta_bytes.as_deref(), self.layout.ways);
        let Some(way) = metas.iter().position(|m| m.is_live() && m.hash == key.hash) else { return };
        match self.read_slot(key, set, way) {
            Some(slot) if slot.inserted_ms <= inserted_by_ms => {}
            _ => return,
        }
        if let Some(m) = metas.get_mut(way) {
            *m = WayMeta::default();
        }
        if self.store.set(&self.names.meta(set), &encode_meta(&metas), cas).is_ok() {
            let _ = self.store.set(&self.names.slot(set, way), b"", None);
        }
    }

    pub fn insert(&self, key: &CacheKey, entry: &Entry, now_ms: u64) -> Insert {
        self.insert_fresh_since(key, entry, now_ms, now_ms)
    }

    /// Like `insert`, but the L1 TTL counts from `fresh_since_ms` (never later than now): an
    /// entry promoted from L2 must not outlive the TTL it was first stored under.
    pub fn insert_fresh_since(&self, key: &CacheKey, entry: &Entry, now_ms: u64, fresh_since_ms: u64) -> Insert {
        let fresh_since_ms = fresh_since_ms.min(now_ms);
        let slot = encode_slot(fresh_since_ms, now_ms, entry);
        let size = slot.len() as u64;
        if size > self.layout.max_entry_bytes || size > u64::from(u32::MAX) {
            return Insert::TooLarge;
        }
        let set = self.layout.set_of(key.hash);
        for _ in 0..CAS_ATTEMPTS {
            let Ok((meta_bytes, cas)) = self.store.get(&self.names.meta(set)) else { return Insert::StoreFailed };
            let mut metas = decode_meta(meta_bytes.as_deref(), self.layout.ways);
            let room = self.make_room(&mut metas, key.hash, size, now_ms);
            let Some(target) = metas.get_mut(room.way) else { return Insert::StoreFailed };
            // A refreshed entry keeps its count: it is the same request, as popular as before.
            let hits = room.kept_hits.saturating_add(1);
            *target = WayMeta { hash: key.hash, size: size as u32, fresh_since_ms, last_access_ms: now_ms, hits };
            if self.store.set(&self.names.slot(set, room.way), &slot, None).is_err() {
                return Insert::StoreFailed;
            }
            match self.store.set(&self.names.meta(set), &encode_meta(&metas), cas) {
                Ok(()) => {
                    // Only the other freed ways are blanked: the target now holds the new entry.
                    for way in room.freed_other_ways {
                        let _ = self.store.set(&self.names.slot(set, way), b"", None);
                    }
                    self.hints.set(key.hash, Hint { way: room.way, touched_ms: now_ms, pending_hits: 0 });
                    return Insert::Stored { evicted: room.evicted };
                }
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => return Insert::StoreFailed,
            }
        }
        Insert::Contended
    }

    /// Picks the way for a new entry and frees further ways until the set fits its byte budget.
    fn make_room(&self, metas: &mut [WayMeta], hash: u64, size: u64, now_ms: u64) -> Room {
        let mut evicted = 0;
        let policy = self.layout.eviction;
        // Same key (refresh), else an empty or expired way, else the policy's victim.
        let same = metas.iter().position(|m| m.is_live() && m.hash == hash);
        let way = same
            .or_else(|| metas.iter().position(|m| !m.is_live()))
            .or_else(|| metas.iter().position(|m| !self.is_fresh(m.fresh_since_ms, now_ms)))
            .or_else(|| victim(metas, policy, None))
            .unwrap_or(0);
        let mut kept_hits = 0;
        if let Some(m) = metas.get_mut(way) {
            if same.is_some() {
                kept_hits = m.hits;
            } else if m.is_live() && self.is_fresh(m.fresh_since_ms, now_ms) {
                evicted += 1;
            }
            *m = WayMeta::default();
        }
        let mut freed_other_ways = Vec::new();
        loop {
            let used: u64 = metas.iter().map(|m| u64::from(m.size)).sum();
            if used + size <= self.layout.set_budget_bytes {
                break;
            }
            let other = victim(metas, policy, Some(way));
            match other.and_then(|v| metas.get_mut(v).map(|m| (v, m))) {
                Some((v, m)) => {
                    *m = WayMeta::default();
                    evicted += 1;
                    freed_other_ways.push(v);
                }
                None => break,
            }
        }
        Room { way, evicted, freed_other_ways, kept_hits }
    }

    /// Walks every set's metadata: O(sets) shared-data reads, so call it from a timer, not per request.
    pub fn occupancy(&self, now_ms: u64) -> Occupancy {
        let mut occ = Occupancy::default();
        for set in 0..u64::from(self.layout.sets) {
            let Ok((bytes, _)) = self.store.get(&self.names.meta(set)) else { continue };
            for m in decode_meta(bytes.as_deref(), self.layout.ways) {
                if m.is_live() && self.is_fresh(m.fresh_since_ms, now_ms) {
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
            let meta_key = self.names.meta(set);
            let Ok((Some(_), _)) = self.store.get(&meta_key) else { continue };
            let _ = self.store.set(&meta_key, b"", None);
            for way in 0..self.layout.ways as usize {
                let _ = self.store.set(&self.names.slot(set, way), b"", None);
            }
        }
    }
}

/// Where an insert goes: the target way, how many live entries it evicted, and the other ways
/// it emptied to fit the set's byte budget (their slots are blanked after the metadata lands).
struct Room {
    way: usize,
    evicted: u32,
    freed_other_ways: Vec<usize>,
    /// The hit count of the same key's previous entry (a refresh), else 0.
    kept_hits: u32,
}

fn hit(slot: Slot, now_ms: u64) -> Lookup {
    let age_seconds = now_ms.saturating_sub(slot.entry.stored_at_ms) / 1000;
    Lookup::Hit { entry: slot.entry, age_seconds, fresh_since_ms: slot.fresh_since_ms, inserted_ms: slot.inserted_ms }
}

/// The live way `policy` evicts first, other than `except`: the least recently used, or the
/// least frequently used with ties going to the least recently used.
fn victim(metas: &[WayMeta], policy: EvictionPolicy, except: Option<usize>) -> Option<usize> {
    let live = metas.iter().enumerate().filter(|(i, m)| Some(*i) != except && m.is_live());
    match policy {
        EvictionPolicy::Lru => live.min_by_key(|(_, m)| m.last_access_ms),
        EvictionPolicy::Lfu => live.min_by_key(|(_, m)| (m.hits, m.last_access_ms)),
    }
    .map(|(i, _)| i)
}
