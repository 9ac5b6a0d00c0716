use super::MemoryStore;
use crate::entry::entry_bytes;
use crate::{EntryStore, HotQuery, NewEntry, PurgeScope, StoreError, StoredEntry};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::MutexGuard;

pub(super) struct MemoryEntry {
    entry: StoredEntry,
    bytes: u64,
}

type Entries = HashMap<(String, String), MemoryEntry>;

impl MemoryStore {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Every update below is a single map operation: a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn count_hit(entry: &mut StoredEntry, now_ms: i64) {
    entry.hits = entry.hits.saturating_add(1);
    entry.last_access_ms = entry.last_access_ms.max(now_ms);
}

#[async_trait]
impl EntryStore for MemoryStore {
    async fn get(&self, namespace: &str, key: &str, now_ms: i64) -> Result<Option<StoredEntry>, StoreError> {
        let mut entries = self.entries();
        let Some(stored) = entries.get_mut(&(namespace.to_string(), key.to_string())) else { return Ok(None) };
        if stored.entry.expires_at_ms <= now_ms {
            return Ok(None);
        }
        count_hit(&mut stored.entry, now_ms);
        Ok(Some(stored.entry.clone()))
    }

    async fn put(&self, new: NewEntry) -> Result<(), StoreError> {
        let bytes = entry_bytes(&new.namespace, &new.key, &new.value);
        let mut entries = self.entries();
        let id = (new.namespace.clone(), new.key.clone());
        let (hits, last_access_ms) = entries
            .get(&id)
            .map_or((0, new.stored_at_ms), |old| (old.entry.hits, old.entry.last_access_ms.max(new.stored_at_ms)));
        let entry = StoredEntry {
            namespace: new.namespace,
            key: new.key,
            value: new.value,
            key_id: new.key_id,
            tenant: new.tenant,
            model: new.model,
            schema: new.schema,
            stored_at_ms: new.stored_at_ms,
            expires_at_ms: new.expires_at_ms,
            hits,
            last_access_ms,
        };
        entries.insert(id, MemoryEntry { entry, bytes });
        Ok(())
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        Ok(self.entries().remove(&(namespace.to_string(), key.to_string())).is_some())
    }

    fn record_hit(&self, namespace: &str, key: &str, now_ms: i64) {
        if let Some(stored) = self.entries().get_mut(&(namespace.to_string(), key.to_string())) {
            count_hit(&mut stored.entry, now_ms);
        }
    }

    async fn flush_hits(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn purge(&self, namespace: &str, scope: &PurgeScope) -> Result<u64, StoreError> {
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, stored| {
            let e = &stored.entry;
            let in_scope = match scope {
                PurgeScope::Tenant(t) => &e.tenant == t,
                PurgeScope::Model(m) => &e.model == m,
                PurgeScope::Schema(s) => &e.schema == s,
            };
            !(e.namespace == namespace && in_scope)
        });
        Ok((before - entries.len()) as u64)
    }

    async fn evict_to(&self, max_bytes: u64) -> Result<u64, StoreError> {
        let mut entries = self.entries();
        let mut total: u64 = entries.values().map(|e| e.bytes).sum();
        let mut by_age: Vec<(i64, (String, String), u64)> =
            entries.iter().map(|(id, e)| (e.entry.last_access_ms, id.clone(), e.bytes)).collect();
        by_age.sort();
        let mut removed = 0;
        for (_, id, bytes) in by_age {
            if total <= max_bytes {
                break;
            }
            entries.remove(&id);
            total -= bytes;
            removed += 1;
        }
        Ok(removed)
    }

    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, e| e.entry.expires_at_ms > now_ms);
        Ok((before - entries.len()) as u64)
    }

    async fn hottest(&self, q: &HotQuery) -> Result<Vec<StoredEntry>, StoreError> {
        let entries = self.entries();
        let mut hot: Vec<StoredEntry> = entries
            .values()
            .map(|e| &e.entry)
            .filter(|e| {
                e.namespace == q.namespace
                    && e.hits >= q.min_hits
                    && e.last_access_ms >= q.since_ms
                    && e.expires_at_ms > q.now_ms
            })
            .cloned()
            .collect();
        hot.sort_by(|a, b| (b.hits, b.last_access_ms, &a.key).cmp(&(a.hits, a.last_access_ms, &b.key)));
        hot.truncate(q.limit);
        Ok(hot)
    }

    async fn stored_bytes(&self) -> Result<u64, StoreError> {
        Ok(self.entries().values().map(|e| e.bytes).sum())
    }

    async fn namespaces(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let mut found: Vec<String> = self
            .entries()
            .values()
            .filter(|e| e.entry.expires_at_ms > now_ms)
            .map(|e| e.entry.namespace.clone())
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    }
}
