use super::*;
use crate::cache::store::MemoryStore;
use crate::config::{CacheConfig, EvictionPolicy};
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

fn k(text: &str) -> CacheKey {
    CacheKey::new(text.to_string())
}

/// One worker's view of L1 over a store.
struct World {
    store: MemoryStore,
    layout: Layout,
    names: KeyNames,
    hints: WayHints,
}

impl World {
    fn new(max_entries: u32, max_bytes: u64) -> World {
        World::with(config(max_entries, max_bytes))
    }

    /// One set of `ways` ways, a long TTL, and `eviction`.
    fn policy(eviction: EvictionPolicy, ways: u32) -> World {
        World::with(CacheConfig { eviction, ttl_seconds: 3600, ..config(ways, 1 << 20) })
    }

    fn with(config: CacheConfig) -> World {
        let layout = Layout::from_config(&config);
        let names = KeyNames::new(&layout);
        let hints = WayHints::new(layout.capacity());
        World { store: MemoryStore::default(), layout, names, hints }
    }

    fn l1(&self) -> L1Cache<'_, MemoryStore> {
        L1Cache::new(&self.store, &self.layout, &self.names, &self.hints)
    }

    /// Another worker: same store, hints of its own.
    fn other_worker<'a>(&'a self, hints: &'a WayHints) -> L1Cache<'a, MemoryStore> {
        L1Cache::new(&self.store, &self.layout, &self.names, hints)
    }

    fn insert(&self, key: &str, body_len: usize, now: u64) -> Insert {
        self.l1().insert(&k(key), &entry(key, body_len, now), now)
    }
}

#[test]
fn stores_and_hits_until_ttl() {
    let w = World::new(100, 1 << 20);
    assert_eq!(w.l1().lookup(&k("k1"), 0), Lookup::Miss);
    assert_eq!(w.insert("k1", 10, 1_000), Insert::Stored { evicted: 0 });
    match w.l1().lookup(&k("k1"), 4_500) {
        Lookup::Hit { entry, age_seconds, .. } => {
            assert_eq!(entry.body.len(), 10);
            assert_eq!(age_seconds, 3);
        }
        other => panic!("expected hit, got {other:?}"),
    }
    assert_eq!(w.l1().lookup(&k("k1"), 11_000), Lookup::Expired);
}

#[test]
fn a_hinted_hit_reads_one_slot_and_others_read_the_metadata() {
    let w = World::new(100, 1 << 20);
    w.insert("k1", 10, 0);
    let reads = w.store.reads();
    assert!(matches!(w.l1().lookup(&k("k1"), 10), Lookup::Hit { .. }));
    assert_eq!(w.store.reads() - reads, 1, "the inserting worker knows the way");
    let other_hints = WayHints::new(100);
    let reads = w.store.reads();
    assert!(matches!(w.other_worker(&other_hints).lookup(&k("k1"), 20), Lookup::Hit { .. }));
    assert_eq!(w.store.reads() - reads, 2, "metadata, then slot");
    let reads = w.store.reads();
    assert!(matches!(w.other_worker(&other_hints).lookup(&k("k1"), 30), Lookup::Hit { .. }));
    assert_eq!(w.store.reads() - reads, 1, "then it has a hint too");
}

#[test]
fn a_stale_hint_is_a_miss_never_a_wrong_answer() {
    let w = World::new(4, 1 << 20); // one set of four ways
    let other_hints = WayHints::new(4);
    let other = w.other_worker(&other_hints);
    w.insert("a", 10, 0);
    assert!(matches!(other.lookup(&k("a"), 1), Lookup::Hit { .. }));
    // The first worker fills the set; `a` is evicted and its way reused.
    for (i, key) in ["b", "c", "d", "e"].iter().enumerate() {
        w.insert(key, 10, 2_000 + i as u64 * 2_000);
    }
    assert_eq!(other.lookup(&k("a"), 9_000), Lookup::Miss);
    assert!(matches!(other.lookup(&k("e"), 9_000), Lookup::Hit { entry, .. } if entry.key == "e"));
}

#[test]
fn the_ttl_can_count_from_an_earlier_moment() {
    let w = World::new(100, 1 << 20); // 10 s TTL
    let l1 = w.l1();
    assert_eq!(l1.insert_fresh_since(&k("k1"), &entry("k1", 10, 0), 5_000, 2_000), Insert::Stored { evicted: 0 });
    assert!(matches!(l1.lookup(&k("k1"), 11_000), Lookup::Hit { .. }));
    assert_eq!(l1.lookup(&k("k1"), 12_000), Lookup::Expired, "10 s from 2 s, not from 5 s");
    // A moment in the future is clamped to now: never longer than a plain insert.
    assert_eq!(l1.insert_fresh_since(&k("k2"), &entry("k2", 10, 0), 5_000, 9_000), Insert::Stored { evicted: 0 });
    assert_eq!(l1.lookup(&k("k2"), 15_000), Lookup::Expired);
    let other_hints = WayHints::new(100);
    assert_eq!(w.other_worker(&other_hints).lookup(&k("k1"), 12_000), Lookup::Expired, "also via the metadata");
}

#[test]
fn ten_times_capacity_stays_within_bounds() {
    let max_bytes = 64 * 1024;
    let w = World::new(64, max_bytes);
    for i in 0..640u64 {
        let _ = w.insert(&format!("key-{i}"), 500, i);
    }
    let occ = w.l1().occupancy(700);
    assert!(occ.entries <= 64, "{occ:?}");
    assert!(occ.bytes <= max_bytes, "{occ:?}");
    // Keys are bounded by the layout, not by how many entries passed through.
    assert!(w.store.key_count() <= 64 + 16, "{} keys", w.store.key_count());
    let overhead_per_key = 64;
    assert!(w.store.bytes() as u64 <= max_bytes + (w.store.key_count() as u64) * (overhead_per_key + 1 + 4 * 28));
}

/// The bug this fixes: with every way of a set holding a fresh entry, an insert blanked the
/// slot it had just written, so every new key went upstream twice before it could hit.
#[test]
fn a_full_set_of_fresh_entries_takes_a_new_one_and_serves_it() {
    let w = World::new(4, 1 << 20); // one set of four ways
    for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
        assert_eq!(w.insert(key, 10, i as u64), Insert::Stored { evicted: 0 });
    }
    assert_eq!(w.insert("e", 10, 10), Insert::Stored { evicted: 1 });
    assert!(matches!(w.l1().lookup(&k("e"), 11), Lookup::Hit { entry, .. } if entry.key == "e"));
    let other_hints = WayHints::new(4);
    assert!(
        matches!(w.other_worker(&other_hints).lookup(&k("e"), 12), Lookup::Hit { entry, .. } if entry.key == "e"),
        "another worker (no hint) finds it through the metadata"
    );
    assert_eq!(w.l1().lookup(&k("a"), 13), Lookup::Miss, "the least recently used one made room");
}

#[test]
fn lru_keeps_recently_used_entry() {
    let w = World::new(4, 1 << 20); // one set of four ways
    for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
        w.insert(key, 10, i as u64 * 2_000);
    }
    assert!(matches!(w.l1().lookup(&k("a"), 7_000), Lookup::Hit { .. })); // touch a
    assert_eq!(w.insert("e", 10, 8_000), Insert::Stored { evicted: 1 });
    assert!(matches!(w.l1().lookup(&k("a"), 8_500), Lookup::Hit { .. }));
    assert_eq!(w.l1().lookup(&k("b"), 8_500), Lookup::Miss);
}

#[test]
fn byte_budget_evicts_and_refuses_oversized() {
    let w = World::new(4, 1000);
    assert_eq!(w.insert("big", 2000, 0), Insert::TooLarge);
    w.insert("a", 400, 0);
    w.insert("b", 400, 1);
    assert!(matches!(w.insert("c", 400, 2), Insert::Stored { evicted: 1 }));
    assert!(w.l1().occupancy(3).bytes <= 1000);
    assert!(matches!(w.l1().lookup(&k("c"), 3), Lookup::Hit { .. }));
}

#[test]
fn clear_frees_values() {
    let w = World::new(8, 1 << 20);
    w.insert("a", 1000, 0);
    w.l1().clear();
    let fresh_hints = WayHints::new(8);
    assert_eq!(w.other_worker(&fresh_hints).lookup(&k("a"), 1), Lookup::Miss);
    assert_eq!(w.l1().lookup(&k("a"), 1), Lookup::Miss, "a hint to a blanked slot is a miss");
    assert!(w.store.bytes() < 1000);
}

impl World {
    fn hit(&self, key: &str, now: u64) {
        assert!(matches!(self.l1().lookup(&k(key), now), Lookup::Hit { .. }), "{key} at {now}");
    }

    fn live(&self, now: u64) -> Vec<&'static str> {
        ["a", "b", "c", "d", "e"]
            .into_iter()
            .filter(|key| matches!(self.l1().lookup(&k(key), now), Lookup::Hit { .. }))
            .collect()
    }
}

/// a, b, c, d stored; a used most but longest ago, c used least but last. LRU evicts a, LFU c.
fn skewed_uses(w: &World) {
    for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
        w.insert(key, 10, i as u64 * 1_000);
    }
    for t in 10..15 {
        w.hit("a", t * 1_000);
    }
    for t in 15..18 {
        w.hit("b", t * 1_000);
    }
    for t in 20..22 {
        w.hit("d", t * 1_000);
    }
    w.hit("c", 30_000);
}

#[test]
fn lru_evicts_the_least_recently_used_even_if_it_was_the_most_used() {
    let w = World::policy(EvictionPolicy::Lru, 4);
    skewed_uses(&w);
    assert_eq!(w.insert("e", 10, 40_000), Insert::Stored { evicted: 1 });
    assert_eq!(w.live(41_000), ["b", "c", "d", "e"]);
}

#[test]
fn lfu_evicts_the_least_frequently_used_even_if_it_was_the_last_used() {
    let w = World::policy(EvictionPolicy::Lfu, 4);
    skewed_uses(&w);
    assert_eq!(w.insert("e", 10, 40_000), Insert::Stored { evicted: 1 });
    assert_eq!(w.live(41_000), ["a", "b", "d", "e"]);
    // Then the newcomer (one use, the store) goes before any entry with hits: ties go to LRU.
    assert_eq!(w.insert("c", 10, 50_000), Insert::Stored { evicted: 1 });
    assert_eq!(w.live(51_000).len(), 4);
}

#[test]
fn hits_within_the_touch_interval_are_counted_in_one_write() {
    let w = World::policy(EvictionPolicy::Lfu, 2);
    w.insert("a", 10, 0);
    w.insert("b", 10, 1);
    let writes = w.store.writes();
    for t in 100..110 {
        w.hit("a", t); // within a second of the store: kept in the worker's hint
    }
    assert_eq!(w.store.writes(), writes, "no write per hit");
    w.hit("a", 1_200); // due: one write carries all eleven
    assert_eq!(w.store.writes(), writes + 1);
    w.hit("b", 1_500);
    w.hit("b", 2_600);
    // LRU would evict a (used last at 1.2 s); LFU keeps it: 12 uses against b's 3.
    w.insert("c", 10, 3_000);
    assert!(matches!(w.l1().lookup(&k("a"), 3_001), Lookup::Hit { .. }));
    assert_eq!(w.l1().lookup(&k("b"), 3_001), Lookup::Miss);
}

#[test]
fn every_worker_adds_to_the_count_and_a_refresh_keeps_it() {
    let w = World::policy(EvictionPolicy::Lfu, 2);
    w.insert("a", 10, 0);
    w.insert("b", 10, 0);
    let other_hints = WayHints::new(2);
    let other = w.other_worker(&other_hints);
    for t in 1..4 {
        assert!(matches!(other.lookup(&k("a"), t * 1_000), Lookup::Hit { .. }));
    }
    w.hit("b", 5_000);
    w.insert("a", 10, 6_000); // a refresh of the same request
    w.insert("c", 10, 7_000);
    assert!(matches!(w.l1().lookup(&k("a"), 7_001), Lookup::Hit { .. }), "a: 1 + 3 hits, refreshed");
    assert_eq!(w.l1().lookup(&k("b"), 7_001), Lookup::Miss, "b: 1 + 1");
}
