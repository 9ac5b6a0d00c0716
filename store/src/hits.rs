//! Hit counts kept in memory between flushes, so a lookup never waits for a write. The backends
//! apply a drained batch in one transaction (`hits += count`, `last_access = max(...)`).
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Distinct entries after which a backend flushes on its own, bounding memory and what a crash
/// can lose.
pub(crate) const FLUSH_AT_ENTRIES: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PendingHits {
    pub count: u64,
    pub last_access_ms: i64,
}

/// One drained batch: (namespace, key) → hits to add.
pub(crate) type HitBatch = Vec<((String, String), PendingHits)>;

#[derive(Default)]
pub(crate) struct HitLedger {
    pending: Mutex<HashMap<(String, String), PendingHits>>,
}

impl HitLedger {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), PendingHits>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts).
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one hit; returns the hits now pending for the entry and whether the ledger is due
    /// for a flush.
    pub fn record(&self, namespace: &str, key: &str, now_ms: i64) -> (u64, bool) {
        let mut pending = self.lock();
        let hits = pending
            .entry((namespace.to_string(), key.to_string()))
            .or_insert(PendingHits { count: 0, last_access_ms: now_ms });
        hits.count += 1;
        hits.last_access_ms = hits.last_access_ms.max(now_ms);
        let count = hits.count;
        (count, pending.len() >= FLUSH_AT_ENTRIES)
    }

    /// Takes everything pending. A backend that fails to write the batch hands it back with
    /// `restore`, so a brief outage loses no hits.
    pub fn drain(&self) -> HitBatch {
        self.lock().drain().collect()
    }

    pub fn restore(&self, batch: HitBatch) {
        let mut pending = self.lock();
        for (entry, hits) in batch {
            let merged = pending.entry(entry).or_insert(PendingHits { count: 0, last_access_ms: hits.last_access_ms });
            merged.count += hits.count;
            merged.last_access_ms = merged.last_access_ms.max(hits.last_access_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_entry_and_keeps_the_latest_access() {
        let ledger = HitLedger::default();
        assert_eq!(ledger.record("ns", "a", 20), (1, false));
        assert_eq!(ledger.record("ns", "a", 10), (2, false));
        ledger.record("other", "a", 5);
        let mut batch = ledger.drain();
        batch.sort();
        assert_eq!(
            batch,
            vec![
                (("ns".into(), "a".into()), PendingHits { count: 2, last_access_ms: 20 }),
                (("other".into(), "a".into()), PendingHits { count: 1, last_access_ms: 5 }),
            ]
        );
        assert!(ledger.drain().is_empty());
    }

    #[test]
    fn a_restored_batch_merges_with_new_hits() {
        let ledger = HitLedger::default();
        ledger.record("ns", "a", 10);
        let batch = ledger.drain();
        ledger.record("ns", "a", 30);
        ledger.restore(batch);
        assert_eq!(ledger.drain(), vec![(("ns".into(), "a".into()), PendingHits { count: 2, last_access_ms: 30 })]);
    }

    #[test]
    fn asks_for_a_flush_past_the_bound() {
        let ledger = HitLedger::default();
        let due: Vec<bool> = (0..FLUSH_AT_ENTRIES).map(|i| ledger.record("ns", &i.to_string(), 1).1).collect();
        assert_eq!(due.iter().filter(|d| **d).count(), 1, "only the entry reaching the bound asks");
    }
}
