//! An in-memory backend: for unit tests of the callers, and as the reference the contract tests
//! compare the real backends with. It keeps nothing across restarts.
use crate::{Rollup, RollupStore, StoreError};
use async_trait::async_trait;
use tokio::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    rollups: Mutex<Vec<Rollup>>,
}

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
            stored.retain(|old| !same_window(old, row));
            stored.push(row.clone());
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
        rows.sort_by_key(|r| r.window_start_ms);
        Ok(rows)
    }

    async fn prune_before(&self, window_secs: u32, before_ms: i64) -> Result<u64, StoreError> {
        let mut stored = self.rollups.lock().await;
        let before = stored.len();
        stored.retain(|r| !(r.window_secs == window_secs && r.window_start_ms < before_ms));
        Ok((before - stored.len()) as u64)
    }
}
