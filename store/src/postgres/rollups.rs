use super::{classify, PostgresStore};
use crate::rollup::{tenant_column, tenant_from_column};
use crate::{Rollup, RollupStore, StoreError};
use async_trait::async_trait;

#[async_trait]
impl RollupStore for PostgresStore {
    async fn put_rollups(&self, rows: &[Rollup]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        let upsert = tx
            .prepare_cached(
                "INSERT INTO aurelis_rollups
                     (window_secs, window_start_ms, model, provider, cache_status, tenant, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (window_secs, window_start_ms, model, provider, cache_status, tenant)
                 DO UPDATE SET payload = excluded.payload",
            )
            .await
            .map_err(classify)?;
        for row in rows {
            let window_secs = i64::from(row.window_secs);
            tx.execute(
                &upsert,
                &[
                    &window_secs,
                    &row.window_start_ms,
                    &row.model,
                    &row.provider,
                    &row.cache_status,
                    &tenant_column(&row.tenant),
                    &row.payload,
                ],
            )
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn rollups(&self, window_secs: u32, from_ms: i64, to_ms: i64) -> Result<Vec<Rollup>, StoreError> {
        let client = self.client().await?;
        let select = client
            .prepare_cached(
                "SELECT window_start_ms, model, provider, cache_status, tenant, payload
                 FROM aurelis_rollups
                 WHERE window_secs = $1 AND window_start_ms >= $2 AND window_start_ms < $3
                 ORDER BY window_start_ms, model, provider, cache_status, tenant",
            )
            .await
            .map_err(classify)?;
        let rows = client.query(&select, &[&i64::from(window_secs), &from_ms, &to_ms]).await.map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(Rollup {
                    window_start_ms: row.try_get(0).map_err(classify)?,
                    window_secs,
                    model: row.try_get(1).map_err(classify)?,
                    provider: row.try_get(2).map_err(classify)?,
                    cache_status: row.try_get(3).map_err(classify)?,
                    tenant: tenant_from_column(row.try_get(4).map_err(classify)?),
                    payload: row.try_get(5).map_err(classify)?,
                })
            })
            .collect()
    }

    async fn prune_before(&self, window_secs: u32, before_ms: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM aurelis_rollups WHERE window_secs = $1 AND window_start_ms < $2",
                &[&i64::from(window_secs), &before_ms],
            )
            .await
            .map_err(classify)
    }
}
