use super::SqliteStore;
use crate::entry::entry_bytes;
use crate::hits::HitBatch;
use crate::ints::{from_sql, to_sql};
use crate::{EntryStore, HotQuery, NewEntry, PurgeScope, StoreError, StoredEntry};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "namespace, key, value, key_id, tenant, model, key_schema, \
                       stored_at_ms, expires_at_ms, hits, last_access_ms";

fn stored_entry(row: &Row<'_>) -> rusqlite::Result<StoredEntry> {
    Ok(StoredEntry {
        namespace: row.get(0)?,
        key: row.get(1)?,
        value: row.get(2)?,
        key_id: row.get(3)?,
        tenant: row.get(4)?,
        model: row.get(5)?,
        schema: row.get(6)?,
        stored_at_ms: row.get(7)?,
        expires_at_ms: row.get(8)?,
        hits: count(row, 9)?,
        last_access_ms: row.get(10)?,
    })
}

fn count(row: &Row<'_>, column: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(column)?;
    from_sql(value).ok_or(rusqlite::Error::IntegralValueOutOfRange(column, value))
}

/// Adds a drained batch of hits in one transaction. Hits of entries no longer stored (purged,
/// evicted, or only ever in L1/L2) are dropped.
fn apply_hits(conn: &mut Connection, batch: &HitBatch) -> rusqlite::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE aurelis_entries SET hits = hits + ?1, last_access_ms = MAX(last_access_ms, ?2)
             WHERE namespace = ?3 AND key = ?4",
        )?;
        for ((namespace, key), hits) in batch {
            update.execute(params![to_sql(hits.count), hits.last_access_ms, namespace, key])?;
        }
    }
    tx.commit()
}

impl SqliteStore {
    /// Flushes the pending hits, then runs `work` in the same blocking task, so rankings
    /// (eviction order, hottest) see every hit counted so far.
    async fn run_flushed<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _flushing = self.flushing.lock().await;
        let batch = self.hits.drain();
        let hits = std::sync::Arc::clone(&self.hits);
        let result = self
            .run(move |conn| match apply_hits(conn, &batch) {
                Ok(()) => work(conn).map(Ok),
                Err(e) => Ok(Err((e, batch))),
            })
            .await?;
        match result {
            Ok(value) => Ok(value),
            Err((error, batch)) => {
                hits.restore(batch);
                Err(super::classify(error))
            }
        }
    }
}

#[async_trait]
impl EntryStore for SqliteStore {
    async fn get(&self, namespace: &str, key: &str, now_ms: i64) -> Result<Option<StoredEntry>, StoreError> {
        let (ns, k) = (namespace.to_string(), key.to_string());
        let found = self
            .run(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM aurelis_entries
                     WHERE namespace = ?1 AND key = ?2 AND expires_at_ms > ?3"
                ))?
                .query_row(params![ns, k, now_ms], stored_entry)
                .optional()
            })
            .await?;
        let Some(mut entry) = found else { return Ok(None) };
        let (pending, flush_due) = self.hits.record(namespace, key, now_ms);
        entry.hits = entry.hits.saturating_add(pending);
        entry.last_access_ms = entry.last_access_ms.max(now_ms);
        if flush_due {
            // Off the lookup's path; a failed flush keeps its hits for the next one.
            let store = self.clone();
            tokio::spawn(async move { store.flush_hits().await });
        }
        Ok(Some(entry))
    }

    async fn put(&self, entry: NewEntry) -> Result<(), StoreError> {
        let bytes = entry_bytes(&entry.namespace, &entry.key, &entry.value);
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO aurelis_entries
                     (namespace, key, value, key_id, tenant, model, key_schema,
                      stored_at_ms, expires_at_ms, last_access_ms, hits, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8, 0, ?10)
                 ON CONFLICT (namespace, key) DO UPDATE SET
                     value = excluded.value, key_id = excluded.key_id, tenant = excluded.tenant,
                     model = excluded.model, key_schema = excluded.key_schema,
                     stored_at_ms = excluded.stored_at_ms, expires_at_ms = excluded.expires_at_ms,
                     last_access_ms = MAX(last_access_ms, excluded.last_access_ms),
                     bytes = excluded.bytes",
            )?
            .execute(params![
                entry.namespace,
                entry.key,
                entry.value,
                entry.key_id,
                entry.tenant,
                entry.model,
                entry.schema,
                entry.stored_at_ms,
                entry.expires_at_ms,
                to_sql(bytes)
            ])
            .map(drop)
        })
        .await
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        let (namespace, key) = (namespace.to_string(), key.to_string());
        self.run(move |conn| {
            conn.execute("DELETE FROM aurelis_entries WHERE namespace = ?1 AND key = ?2", params![namespace, key])
        })
        .await
        .map(|n| n > 0)
    }

    fn record_hit(&self, namespace: &str, key: &str, now_ms: i64) {
        // A due flush happens with the next lookup or ranking; this must not do I/O.
        self.hits.record(namespace, key, now_ms);
    }

    async fn flush_hits(&self) -> Result<(), StoreError> {
        self.run_flushed(|_| Ok(())).await
    }

    async fn purge(&self, namespace: &str, scope: &PurgeScope) -> Result<u64, StoreError> {
        let (column, value) = match scope {
            PurgeScope::Tenant(t) => ("tenant", t.clone()),
            PurgeScope::Model(m) => ("model", m.clone()),
            PurgeScope::Schema(s) => ("key_schema", s.clone()),
        };
        let namespace = namespace.to_string();
        self.run(move |conn| {
            conn.execute(
                &format!("DELETE FROM aurelis_entries WHERE namespace = ?1 AND {column} = ?2"),
                params![namespace, value],
            )
        })
        .await
        .map(|n| n as u64)
    }

    async fn evict_to(&self, max_bytes: u64) -> Result<u64, StoreError> {
        self.run_flushed(move |conn| {
            let tx = conn.transaction()?;
            let total = tx.query_row("SELECT COALESCE(SUM(bytes), 0) FROM aurelis_entries", [], |r| count(r, 0))?;
            let Some(excess) = total.checked_sub(max_bytes).filter(|e| *e > 0) else { return Ok(0) };
            // Oldest access first, until the bytes removed cover the excess.
            let removed = tx.execute(
                "DELETE FROM aurelis_entries WHERE (namespace, key) IN (
                     SELECT namespace, key FROM (
                         SELECT namespace, key, bytes,
                                SUM(bytes) OVER (ORDER BY last_access_ms, namespace, key) AS running
                         FROM aurelis_entries)
                     WHERE running - bytes < ?1)",
                params![to_sql(excess)],
            )?;
            tx.commit()?;
            Ok(removed as u64)
        })
        .await
    }

    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.run(move |conn| conn.execute("DELETE FROM aurelis_entries WHERE expires_at_ms <= ?1", params![now_ms]))
            .await
            .map(|n| n as u64)
    }

    async fn hottest(&self, query: &HotQuery) -> Result<Vec<StoredEntry>, StoreError> {
        let q = query.clone();
        self.run_flushed(move |conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM aurelis_entries
                 WHERE namespace = ?1 AND hits >= ?2 AND last_access_ms >= ?3 AND expires_at_ms > ?4
                 ORDER BY hits DESC, last_access_ms DESC, key
                 LIMIT ?5"
            ))?;
            let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
            let rows = select
                .query_map(params![q.namespace, to_sql(q.min_hits), q.since_ms, q.now_ms, limit], stored_entry)?;
            rows.collect()
        })
        .await
    }

    async fn stored_bytes(&self) -> Result<u64, StoreError> {
        self.run(|conn| conn.query_row("SELECT COALESCE(SUM(bytes), 0) FROM aurelis_entries", [], |r| count(r, 0)))
            .await
    }

    async fn namespaces(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT DISTINCT namespace FROM aurelis_entries WHERE expires_at_ms > ?1 ORDER BY namespace",
            )?;
            let rows = select.query_map(params![now_ms], |row| row.get(0))?;
            rows.collect()
        })
        .await
    }
}
