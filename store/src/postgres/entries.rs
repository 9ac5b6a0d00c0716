use super::{classify, PostgresStore};
use crate::entry::entry_bytes;
use crate::hits::HitBatch;
use crate::ints::{from_sql, to_sql};
use crate::{EntryStore, HotQuery, NewEntry, PurgeScope, StoreError, StoredEntry};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const COLUMNS: &str = "namespace, key, value, key_id, tenant, model, key_schema, \
                       stored_at_ms, expires_at_ms, hits, last_access_ms";

fn count(value: i64, what: &str) -> Result<u64, StoreError> {
    from_sql(value).ok_or_else(|| StoreError::Corrupt(format!("{what} is negative: {value}")))
}

fn stored_entry(row: &Row) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        namespace: row.try_get(0).map_err(classify)?,
        key: row.try_get(1).map_err(classify)?,
        value: row.try_get(2).map_err(classify)?,
        key_id: row.try_get(3).map_err(classify)?,
        tenant: row.try_get(4).map_err(classify)?,
        model: row.try_get(5).map_err(classify)?,
        schema: row.try_get(6).map_err(classify)?,
        stored_at_ms: row.try_get(7).map_err(classify)?,
        expires_at_ms: row.try_get(8).map_err(classify)?,
        hits: count(row.try_get(9).map_err(classify)?, "hits")?,
        last_access_ms: row.try_get(10).map_err(classify)?,
    })
}

impl PostgresStore {
    /// Adds the pending hits in one transaction; on failure they are kept for the next flush.
    async fn flush_pending(&self) -> Result<(), StoreError> {
        let _flushing = self.flushing.lock().await;
        let batch = self.hits.drain();
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.apply_hits(&batch).await;
        if result.is_err() {
            self.hits.restore(batch);
        }
        result
    }

    async fn apply_hits(&self, batch: &HitBatch) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let update = tx
            .prepare_cached(
                "UPDATE aurelis_entries
                 SET hits = hits + $1, last_access_ms = GREATEST(last_access_ms, $2)
                 WHERE namespace = $3 AND key = $4",
            )
            .await
            .map_err(classify)?;
        for ((namespace, key), hits) in batch {
            tx.execute(&update, &[&to_sql(hits.count), &hits.last_access_ms, namespace, key])
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn total_bytes(client: &impl GenericClient) -> Result<u64, StoreError> {
        let row = client
            .query_one("SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM aurelis_entries", &[])
            .await
            .map_err(classify)?;
        count(row.try_get(0).map_err(classify)?, "stored bytes")
    }
}

#[async_trait]
impl EntryStore for PostgresStore {
    async fn get(&self, namespace: &str, key: &str, now_ms: i64) -> Result<Option<StoredEntry>, StoreError> {
        let client = self.client().await?;
        let select = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM aurelis_entries
                 WHERE namespace = $1 AND key = $2 AND expires_at_ms > $3"
            ))
            .await
            .map_err(classify)?;
        let row = client.query_opt(&select, &[&namespace, &key, &now_ms]).await.map_err(classify)?;
        drop(client);
        let Some(row) = row else { return Ok(None) };
        let mut entry = stored_entry(&row)?;
        let (pending, flush_due) = self.hits.record(namespace, key, now_ms);
        entry.hits = entry.hits.saturating_add(pending);
        entry.last_access_ms = entry.last_access_ms.max(now_ms);
        if flush_due {
            // Off the lookup's path; a failed flush keeps its hits for the next one.
            let store = self.clone();
            tokio::spawn(async move { store.flush_pending().await });
        }
        Ok(Some(entry))
    }

    async fn put(&self, entry: NewEntry) -> Result<(), StoreError> {
        let bytes = to_sql(entry_bytes(&entry.namespace, &entry.key, &entry.value));
        let client = self.client().await?;
        let upsert = client
            .prepare_cached(
                "INSERT INTO aurelis_entries
                     (namespace, key, value, key_id, tenant, model, key_schema,
                      stored_at_ms, expires_at_ms, last_access_ms, hits, bytes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, 0, $10)
                 ON CONFLICT (namespace, key) DO UPDATE SET
                     value = excluded.value, key_id = excluded.key_id, tenant = excluded.tenant,
                     model = excluded.model, key_schema = excluded.key_schema,
                     stored_at_ms = excluded.stored_at_ms, expires_at_ms = excluded.expires_at_ms,
                     last_access_ms = GREATEST(aurelis_entries.last_access_ms, excluded.last_access_ms),
                     bytes = excluded.bytes",
            )
            .await
            .map_err(classify)?;
        client
            .execute(
                &upsert,
                &[
                    &entry.namespace,
                    &entry.key,
                    &entry.value,
                    &entry.key_id,
                    &entry.tenant,
                    &entry.model,
                    &entry.schema,
                    &entry.stored_at_ms,
                    &entry.expires_at_ms,
                    &bytes,
                ],
            )
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM aurelis_entries WHERE namespace = $1 AND key = $2", &[&namespace, &key])
            .await
            .map(|n| n > 0)
            .map_err(classify)
    }

    fn record_hit(&self, namespace: &str, key: &str, now_ms: i64) {
        // A due flush happens with the next lookup or ranking; this must not do I/O.
        self.hits.record(namespace, key, now_ms);
    }

    async fn flush_hits(&self) -> Result<(), StoreError> {
        self.flush_pending().await
    }

    async fn purge(&self, namespace: &str, scope: &PurgeScope) -> Result<u64, StoreError> {
        let (column, value) = match scope {
            PurgeScope::Tenant(t) => ("tenant", t),
            PurgeScope::Model(m) => ("model", m),
            PurgeScope::Schema(s) => ("key_schema", s),
        };
        let client = self.client().await?;
        client
            .execute(
                &format!("DELETE FROM aurelis_entries WHERE namespace = $1 AND {column} = $2"),
                &[&namespace, value],
            )
            .await
            .map_err(classify)
    }

    async fn evict_to(&self, max_bytes: u64) -> Result<u64, StoreError> {
        self.flush_pending().await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let total = Self::total_bytes(&tx).await?;
        let Some(excess) = total.checked_sub(max_bytes).filter(|e| *e > 0) else { return Ok(0) };
        // Oldest access first, until the bytes removed cover the excess.
        let removed = tx
            .execute(
                "DELETE FROM aurelis_entries WHERE (namespace, key) IN (
                     SELECT namespace, key FROM (
                         SELECT namespace, key, bytes,
                                (SUM(bytes) OVER (ORDER BY last_access_ms, namespace, key))::BIGINT AS running
                         FROM aurelis_entries) ranked
                     WHERE running - bytes < $1)",
                &[&to_sql(excess)],
            )
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client.execute("DELETE FROM aurelis_entries WHERE expires_at_ms <= $1", &[&now_ms]).await.map_err(classify)
    }

    async fn hottest(&self, q: &HotQuery) -> Result<Vec<StoredEntry>, StoreError> {
        self.flush_pending().await?;
        let client = self.client().await?;
        let select = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM aurelis_entries
                 WHERE namespace = $1 AND hits >= $2 AND last_access_ms >= $3 AND expires_at_ms > $4
                 ORDER BY hits DESC, last_access_ms DESC, key
                 LIMIT $5"
            ))
            .await
            .map_err(classify)?;
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let rows = client
            .query(&select, &[&q.namespace, &to_sql(q.min_hits), &q.since_ms, &q.now_ms, &limit])
            .await
            .map_err(classify)?;
        rows.iter().map(stored_entry).collect()
    }

    async fn stored_bytes(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        Self::total_bytes(&client).await
    }

    async fn namespaces(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT namespace FROM aurelis_entries WHERE expires_at_ms > $1 ORDER BY namespace",
                &[&now_ms],
            )
            .await
            .map_err(classify)?;
        rows.iter().map(|row| row.try_get(0).map_err(classify)).collect()
    }
}
