use crate::StoreError;
use async_trait::async_trait;

/// One persisted telemetry window: the key columns the store can filter on, and the window's
/// statistics as an opaque, versioned payload (counts, a mergeable latency sketch, tokens) that
/// only the control plane's telemetry module encodes and decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    /// Start of the window, Unix milliseconds.
    pub window_start_ms: i64,
    /// Width of the window in seconds (10 for raw windows; coarser rollups use 60, 3600, ...).
    pub window_secs: u32,
    pub model: String,
    pub provider: String,
    /// `hit`, `miss`, `bypass`, ... as the filter reports it.
    pub cache_status: String,
    /// The tenant scope id (a hash, never a key), only for the top-N tenants; `None` otherwise.
    /// Never empty: an empty id is stored as `None`.
    pub tenant: Option<String>,
    pub payload: Vec<u8>,
}

/// Telemetry history: append windows, read a time range back, forget what is past retention.
#[async_trait]
pub trait RollupStore: Send + Sync {
    /// Stores the rows; a row with the same (start, secs, model, provider, status, tenant) as a
    /// stored one replaces it, so a retried flush does not double-count.
    async fn put_rollups(&self, rows: &[Rollup]) -> Result<(), StoreError>;
    /// Rows of width `window_secs` whose window starts in `[from_ms, to_ms)`, oldest first.
    async fn rollups(&self, window_secs: u32, from_ms: i64, to_ms: i64) -> Result<Vec<Rollup>, StoreError>;
    /// Deletes rows of width `window_secs` that start before `before_ms`; returns how many.
    async fn prune_before(&self, window_secs: u32, before_ms: i64) -> Result<u64, StoreError>;
}

/// Backends store "no tenant" as an empty string, so the row key can be a primary key (SQL's
/// NULLs never conflict). Tenant ids are hashes and never empty: `Some("")` reads back as `None`.
pub(crate) fn tenant_column(tenant: &Option<String>) -> &str {
    tenant.as_deref().unwrap_or_default()
}

pub(crate) fn tenant_from_column(tenant: String) -> Option<String> {
    (!tenant.is_empty()).then_some(tenant)
}
