use super::MemoryStore;
use crate::rollup::tenant_from_column;
use crate::{Rollup, RollupStore, StoreError};
use async_trait::async_trait;

fn same_window(a: &Rollup, b: &Rollup) -> bool {
    a.window_start_ms == b.window_start_ms
        && a.window_secs == b.window_secs
        && a.model == b.model
        && a.provider == b.provider
        && a.cache_status == b.cache_status
        && a.tenant == b.tenant
}

#[async_trait]
impl RollupStore for MemoryStore {
    async fn put_rollups(&self, rows: &[Rollup]) -> Result<(), StoreError> {
        let mut stored = self.rollups.lock().await;
        for row in rows {
            // As in the SQL backends, an empty tenant id is no tenant.
            let row = Rollup { tenant: row.tenant.clone().and_then(tenant_from_column), ..row.clone() };
            stored.retain(|old| !same_window(old, &row));
            stored.push(row);
        }
        Ok(())
    }

    async fn rollups(&self, window_secs: u32, from_ms: i64, to_ms: i64) -> Result<Vec<Rollup>, StoreError> {
        let stored = self.rollups.lock().await;
        let mut rows: Vec<Rollup> = stored
            .iter()
            .filter(|r| r.window_secs == window_secs && r.window_start_ms >= from_ms && r.window_start_ms < to_ms)
            .cloned()
            .collect();
        rows.sort_by(|a, b| {
            (a.window_start_ms, &a.model, &a.provider, &a.cache_status, &a.tenant).cmp(&(
                b.window_start_ms,
                &b.model,
                &b.provider,
                &b.cache_status,
                &b.tenant,
            ))
        });
        Ok(rows)
    }

    async fn prune_before(&self, window_secs: u32, before_ms: i64) -> Result<u64, StoreError> {
        let mut stored = self.rollups.lock().await;
        let before = stored.len();
        stored.retain(|r| !(r.window_secs == window_secs && r.window_start_ms < before_ms));
        Ok((before - stored.len()) as u64)
    }
}
