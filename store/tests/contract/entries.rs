//! The `EntryStore` contract: the L3 cache level.
use crate::{cases, Case};
use aurelis_store::{HotQuery, NewEntry, PurgeScope, StoredEntry, Stores};

pub fn cases() -> Vec<Case> {
    cases![
        an_entry_reads_back_with_its_metadata_and_counts_hits,
        an_expired_entry_is_gone,
        a_deleted_entry_is_gone_from_its_namespace_only,
        a_restored_entry_keeps_its_hits,
        purge_removes_one_tenant_model_or_schema_of_one_namespace,
        eviction_removes_the_least_recently_used_down_to_the_bound,
        pruning_removes_only_expired_entries,
        hottest_ranks_by_hits_within_the_window,
        hits_from_other_levels_count_without_a_read,
        hits_survive_the_automatic_flush,
        namespaces_with_live_entries_are_listed,
    ]
}

const NS: &str = "fleet-a";
const T0: i64 = 1_750_000_000_000;
const DAY_MS: i64 = 86_400_000;

fn entry(key: &str, value: &[u8]) -> NewEntry {
    NewEntry {
        namespace: NS.to_string(),
        key: key.to_string(),
        value: value.to_vec(),
        key_id: "k1".to_string(),
        tenant: "tenant-a".to_string(),
        model: "gpt-4o".to_string(),
        schema: "v3".to_string(),
        stored_at_ms: T0,
        expires_at_ms: T0 + DAY_MS,
    }
}

fn hot(min_hits: u64, since_ms: i64, now_ms: i64, limit: usize) -> HotQuery {
    HotQuery { namespace: NS.to_string(), min_hits, since_ms, now_ms, limit }
}

fn keys(entries: &[StoredEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

async fn an_entry_reads_back_with_its_metadata_and_counts_hits(s: Stores) {
    let stored = entry("k", &[0, 1, 2, 255]);
    s.entries.put(stored.clone()).await.unwrap();
    let got = s.entries.get(NS, "k", T0 + 5).await.unwrap().expect("stored");
    let expected = StoredEntry {
        namespace: NS.into(),
        key: "k".into(),
        value: vec![0, 1, 2, 255],
        key_id: "k1".into(),
        tenant: "tenant-a".into(),
        model: "gpt-4o".into(),
        schema: "v3".into(),
        stored_at_ms: T0,
        expires_at_ms: T0 + DAY_MS,
        hits: 1,
        last_access_ms: T0 + 5,
    };
    assert_eq!(got, expected);
    let again = s.entries.get(NS, "k", T0 + 9).await.unwrap().expect("stored");
    assert_eq!((again.hits, again.last_access_ms), (2, T0 + 9));
    assert_eq!(s.entries.get(NS, "other", T0).await.unwrap(), None);
    assert_eq!(s.entries.get("another-namespace", "k", T0).await.unwrap(), None, "keys are per namespace");
}

async fn an_expired_entry_is_gone(s: Stores) {
    s.entries.put(entry("k", b"v")).await.unwrap();
    assert!(s.entries.get(NS, "k", T0 + DAY_MS - 1).await.unwrap().is_some());
    assert_eq!(s.entries.get(NS, "k", T0 + DAY_MS).await.unwrap(), None, "expired at expires_at");
}

async fn a_deleted_entry_is_gone_from_its_namespace_only(s: Stores) {
    s.entries.put(entry("k", b"v")).await.unwrap();
    s.entries.put(NewEntry { namespace: "other".into(), ..entry("k", b"v") }).await.unwrap();
    assert!(s.entries.delete(NS, "k").await.unwrap());
    assert!(!s.entries.delete(NS, "k").await.unwrap(), "already gone");
    assert_eq!(s.entries.get(NS, "k", T0).await.unwrap(), None);
    assert!(s.entries.get("other", "k", T0).await.unwrap().is_some());
}

async fn a_restored_entry_keeps_its_hits(s: Stores) {
    s.entries.put(entry("k", b"old")).await.unwrap();
    s.entries.get(NS, "k", T0 + 1).await.unwrap();
    s.entries.get(NS, "k", T0 + 2).await.unwrap();
    let renewed = NewEntry {
        value: b"new".to_vec(),
        key_id: "k2".into(),
        stored_at_ms: T0 + 10,
        expires_at_ms: T0 + 2 * DAY_MS,
        ..entry("k", b"")
    };
    s.entries.put(renewed).await.unwrap();
    let got = s.entries.get(NS, "k", T0 + DAY_MS + 1).await.unwrap().expect("renewed");
    assert_eq!((got.value.as_slice(), got.key_id.as_str()), (&b"new"[..], "k2"));
    assert_eq!((got.stored_at_ms, got.expires_at_ms), (T0 + 10, T0 + 2 * DAY_MS));
    assert_eq!(got.hits, 3, "popularity outlives one TTL");
}

async fn purge_removes_one_tenant_model_or_schema_of_one_namespace(s: Stores) {
    let variants = [
        ("a", "tenant-a", "gpt-4o", "v3"),
        ("b", "tenant-b", "gpt-4o", "v3"),
        ("c", "tenant-a", "llama", "v3"),
        ("d", "tenant-a", "gpt-4o", "v2"),
    ];
    for (key, tenant, model, schema) in variants {
        let e = NewEntry { tenant: tenant.into(), model: model.into(), schema: schema.into(), ..entry(key, b"v") };
        s.entries.put(e.clone()).await.unwrap();
        s.entries.put(NewEntry { namespace: "other".into(), ..e }).await.unwrap();
    }
    let live = |s: Stores, ns: &'static str| async move {
        let mut found = vec![];
        for key in ["a", "b", "c", "d"] {
            if s.entries.get(ns, key, T0).await.unwrap().is_some() {
                found.push(key);
            }
        }
        found
    };
    assert_eq!(s.entries.purge(NS, &PurgeScope::Tenant("tenant-b".into())).await.unwrap(), 1);
    assert_eq!(live(s.clone(), NS).await, ["a", "c", "d"]);
    assert_eq!(s.entries.purge(NS, &PurgeScope::Model("llama".into())).await.unwrap(), 1);
    assert_eq!(live(s.clone(), NS).await, ["a", "d"]);
    assert_eq!(s.entries.purge(NS, &PurgeScope::Schema("v2".into())).await.unwrap(), 1);
    assert_eq!(live(s.clone(), NS).await, ["a"]);
    assert_eq!(s.entries.purge(NS, &PurgeScope::Schema("v2".into())).await.unwrap(), 0);
    assert_eq!(live(s.clone(), "other").await, ["a", "b", "c", "d"], "another namespace is untouched");
}

async fn eviction_removes_the_least_recently_used_down_to_the_bound(s: Stores) {
    // Each entry: namespace (7) + key (2) + value (91) = 100 bytes.
    for (i, key) in ["k0", "k1", "k2", "k3", "k4"].into_iter().enumerate() {
        let e = NewEntry { stored_at_ms: T0 + i as i64, ..entry(key, &[b'x'; 91]) };
        s.entries.put(e).await.unwrap();
    }
    assert_eq!(s.entries.stored_bytes().await.unwrap(), 500);
    // k0 and k1 are the oldest stores, but k0 was just read: k1 and k2 go first.
    s.entries.get(NS, "k0", T0 + 100).await.unwrap().expect("k0");
    assert_eq!(s.entries.evict_to(1_000).await.unwrap(), 0, "under the bound: nothing to do");
    assert_eq!(s.entries.evict_to(300).await.unwrap(), 2);
    assert_eq!(s.entries.stored_bytes().await.unwrap(), 300);
    let mut left = vec![];
    for key in ["k0", "k1", "k2", "k3", "k4"] {
        if s.entries.get(NS, key, T0 + 200).await.unwrap().is_some() {
            left.push(key);
        }
    }
    assert_eq!(left, ["k0", "k3", "k4"]);
    // A bound that is not a multiple of the entry size: at most that many bytes stay.
    assert_eq!(s.entries.evict_to(250).await.unwrap(), 1);
    assert_eq!(s.entries.stored_bytes().await.unwrap(), 200);
    assert_eq!(s.entries.evict_to(0).await.unwrap(), 2);
    assert_eq!(s.entries.stored_bytes().await.unwrap(), 0);
}

async fn pruning_removes_only_expired_entries(s: Stores) {
    for (key, ttl) in [("short", 1_000), ("exact", 2_000), ("long", DAY_MS)] {
        s.entries.put(NewEntry { expires_at_ms: T0 + ttl, ..entry(key, b"v") }).await.unwrap();
    }
    assert_eq!(s.entries.prune_expired(T0 + 2_000).await.unwrap(), 2);
    assert_eq!(s.entries.stored_bytes().await.unwrap(), (NS.len() + "long".len() + 1) as u64);
    assert!(s.entries.get(NS, "long", T0 + 2_000).await.unwrap().is_some());
    assert_eq!(s.entries.prune_expired(T0 + 2_000).await.unwrap(), 0);
}

async fn hottest_ranks_by_hits_within_the_window(s: Stores) {
    // (key, hits, last hit at)
    let usage =
        [("warm", 3, T0 + 50), ("hot", 5, T0 + 40), ("tie", 3, T0 + 60), ("cold", 1, T0 + 70), ("stale", 9, T0 + 5)];
    for (key, hits, last) in usage {
        s.entries.put(entry(key, b"v")).await.unwrap();
        for i in 0..hits {
            s.entries.get(NS, key, last - i).await.unwrap();
        }
    }
    s.entries.put(NewEntry { namespace: "other".into(), ..entry("elsewhere", b"v") }).await.unwrap();
    for i in 0..20 {
        s.entries.get("other", "elsewhere", T0 + 80 + i).await.unwrap();
    }
    let now = T0 + 100;
    let found = s.entries.hottest(&hot(2, T0 + 10, now, 10)).await.unwrap();
    // "stale" has the most hits but none since T0 + 10; "cold" too few; ties: latest use first.
    assert_eq!(keys(&found), ["hot", "tie", "warm"]);
    assert_eq!(found.iter().map(|e| e.hits).collect::<Vec<_>>(), [5, 3, 3]);
    assert_eq!(found[0].value, b"v", "warming gets the value in the same query");
    assert_eq!(keys(&s.entries.hottest(&hot(2, T0 + 10, now, 2)).await.unwrap()), ["hot", "tie"]);
    assert_eq!(keys(&s.entries.hottest(&hot(4, 0, now, 10)).await.unwrap()), ["stale", "hot"]);
    // Expired entries are never warmed.
    assert!(s.entries.hottest(&hot(1, 0, T0 + DAY_MS, 10)).await.unwrap().is_empty());
}

async fn hits_from_other_levels_count_without_a_read(s: Stores) {
    s.entries.put(entry("k", b"v")).await.unwrap();
    for i in 0..4 {
        s.entries.record_hit(NS, "k", T0 + 10 + i);
    }
    // Hits for entries L3 does not hold are dropped, not errors.
    s.entries.record_hit(NS, "not-in-l3", T0 + 10);
    s.entries.flush_hits().await.unwrap();
    let found = s.entries.hottest(&hot(4, T0 + 13, T0 + 20, 10)).await.unwrap();
    assert_eq!(keys(&found), ["k"]);
    assert_eq!((found[0].hits, found[0].last_access_ms), (4, T0 + 13));
    let read = s.entries.get(NS, "k", T0 + 30).await.unwrap().expect("k");
    assert_eq!(read.hits, 5);
}

async fn hits_survive_the_automatic_flush(s: Stores) {
    // More distinct entries than the in-memory hit buffer holds before it writes on its own.
    let n = 600;
    for i in 0..n {
        s.entries.put(entry(&format!("k{i}"), b"v")).await.unwrap();
    }
    for i in 0..n {
        s.entries.get(NS, &format!("k{i}"), T0 + 1).await.unwrap().expect("stored");
    }
    s.entries.get(NS, "k0", T0 + 2).await.unwrap().expect("stored");
    let found = s.entries.hottest(&hot(1, 0, T0 + 3, n + 1)).await.unwrap();
    assert_eq!(found.len(), n);
    assert_eq!((found[0].key.as_str(), found[0].hits), ("k0", 2));
    assert!(found[1..].iter().all(|e| e.hits == 1), "every hit counted once");
}

/// Restart tests: what `write_and_use` stores and reads, `entries_are_back` finds after a
/// reopen, hits included (flushed before the store is dropped, as a shutdown does).
pub async fn write_and_use(s: &Stores) {
    s.entries.put(entry("kept", b"value")).await.unwrap();
    s.entries.get(NS, "kept", T0 + 1).await.unwrap().expect("kept");
    s.entries.get(NS, "kept", T0 + 2).await.unwrap().expect("kept");
    s.entries.flush_hits().await.unwrap();
}

pub async fn entries_are_back(s: &Stores) {
    let hot = s.entries.hottest(&hot(2, T0, T0 + 3, 10)).await.unwrap();
    assert_eq!(keys(&hot), ["kept"]);
    let got = s.entries.get(NS, "kept", T0 + 3).await.unwrap().expect("kept after a restart");
    assert_eq!((got.value.as_slice(), got.hits, got.last_access_ms), (&b"value"[..], 3, T0 + 3));
}

async fn namespaces_with_live_entries_are_listed(s: Stores) {
    assert!(s.entries.namespaces(T0).await.unwrap().is_empty());
    s.entries.put(entry("k", b"v")).await.unwrap();
    s.entries.put(NewEntry { namespace: "a-first".into(), ..entry("k", b"v") }).await.unwrap();
    s.entries.put(NewEntry { namespace: "gone".into(), expires_at_ms: T0 + 5, ..entry("k", b"v") }).await.unwrap();
    assert_eq!(s.entries.namespaces(T0).await.unwrap(), ["a-first", NS, "gone"]);
    assert_eq!(s.entries.namespaces(T0 + 5).await.unwrap(), ["a-first", NS], "only live entries count");
}
