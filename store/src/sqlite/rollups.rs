use super::SqliteStore;
use crate::rollup::{tenant_column, tenant_from_column};
use crate::{Rollup, RollupStore, StoreError};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl RollupStore for SqliteStore {
    async fn put_rollups(&self, rows: &[Rollup]) -> Result<(), StoreError> {
        let rows = rows.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO aurelis_rollups
                         (window_secs, window_start_ms, model, provider, cache_status, tenant, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (window_secs, window_start_ms, model, provider, cache_status, tenant)
                     DO UPDATE SET payload = excluded.payload",
                )?;
                for row in &rows {
                    upsert.execute(params![
                        row.window_secs,
                        row.window_start_ms,
                        row.model,
                        row.provider,
                        row.cache_status,
                        tenant_column(&row.tenant),
                        row.payload
                    ])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn rollups(&self, window_secs: u32, from_ms: i64, to_ms: i64) -> Result<Vec<Rollup>, StoreError> {
        self.run(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT window_start_ms, model, provider, cache_status, tenant, payload
                 FROM aurelis_rollups
                 WHERE window_secs = ?1 AND window_start_ms >= ?2 AND window_start_ms < ?3
                 ORDER BY window_start_ms, model, provider, cache_status, tenant",
            )?;
            let rows = select.query_map(params![window_secs, from_ms, to_ms], |row| {
                Ok(Rollup {
                    window_start_ms: row.get(0)?,
                    window_secs,
                    model: row.get(1)?,
                    provider: row.get(2)?,
                    cache_status: row.get(3)?,
                    tenant: tenant_from_column(row.get(4)?),
                    payload: row.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn prune_before(&self, window_secs: u32, before_ms: i64) -> Result<u64, StoreError> {
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM aurelis_rollups WHERE window_secs = ?1 AND window_start_ms < ?2",
                params![window_secs, before_ms],
            )
        })
        .await
        .map(|n| n as u64)
    }
}
