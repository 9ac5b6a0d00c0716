//! PostgreSQL, for replicas and fleets: several control planes or cache services share one
//! database. `tokio-postgres` is asynchronous already, so nothing here blocks the runtime; a
//! small `deadpool` pool bounds the connections each process opens.
//!
//! The schema is created on connect, idempotently, under a transaction-scoped advisory lock so
//! replicas starting together do not race on `CREATE TABLE IF NOT EXISTS` (which can fail with
//! a unique violation on the catalog when two sessions run it at once).
mod entries;
mod rollups;

use crate::hits::HitLedger;
use crate::{PostgresSettings, StoreError};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::sync::Arc;
use tokio_postgres::NoTls;

/// Any constant: identifies "creating the Aurelis schema" among advisory locks.
const SCHEMA_LOCK: i64 = 0x4155_5245_4c49_5331;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aurelis_rollups (
    window_secs     BIGINT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    model           TEXT   NOT NULL,
    provider        TEXT   NOT NULL,
    cache_status    TEXT   NOT NULL,
    tenant          TEXT   NOT NULL, -- '' = not a per-tenant row
    payload         BYTEA  NOT NULL,
    PRIMARY KEY (window_secs, window_start_ms, model, provider, cache_status, tenant)
);
CREATE TABLE IF NOT EXISTS aurelis_entries (
    namespace      TEXT   NOT NULL,
    key            TEXT   NOT NULL,
    value          BYTEA  NOT NULL,
    key_id         TEXT   NOT NULL,
    tenant         TEXT   NOT NULL,
    model          TEXT   NOT NULL,
    key_schema     TEXT   NOT NULL,
    stored_at_ms   BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    last_access_ms BIGINT NOT NULL,
    hits           BIGINT NOT NULL DEFAULT 0,
    bytes          BIGINT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS aurelis_entries_lru ON aurelis_entries (last_access_ms);
CREATE INDEX IF NOT EXISTS aurelis_entries_expiry ON aurelis_entries (expires_at_ms);
CREATE INDEX IF NOT EXISTS aurelis_entries_hot ON aurelis_entries (namespace, hits);
";

/// Both stores (telemetry rollups and L3 entries) in one database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    hits: Arc<HitLedger>,
    /// Held from draining the hit ledger until the batch is committed, so a ranking never reads
    /// before an earlier batch (say, one a lookup handed to the background) has landed.
    flushing: Arc<tokio::sync::Mutex<()>>,
}

impl PostgresStore {
    /// Builds the pool, connects once (so a wrong URL or password fails here, not on the first
    /// request) and creates the schema.
    pub async fn connect(settings: &PostgresSettings) -> Result<PostgresStore, StoreError> {
        let manager = Manager::from_config(
            settings.config().clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size())
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.connect_timeout()))
            .create_timeout(Some(settings.connect_timeout()))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the PostgreSQL pool: {e}")))?;
        let store = PostgresStore { pool, hits: Arc::default(), flushing: Arc::default() };
        let mut client = store.client().await?;
        let tx = client.transaction().await.map_err(classify)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(classify)?;
        tx.batch_execute(SCHEMA).await.map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Unavailable(format!("PostgreSQL connection: {e}")))
    }
}

/// A closed connection or a server going away is the store being unavailable (retry later,
/// fail open); a value that does not decode is corruption; the rest are query errors.
fn classify(error: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    if error.is_closed() {
        return StoreError::Unavailable(error.to_string());
    }
    match error.code() {
        None if error.as_db_error().is_none() => {
            // No SQL state: I/O, protocol or decoding trouble on our side of the wire.
            let text = error.to_string();
            if text.contains("error deserializing") {
                StoreError::Corrupt(text)
            } else if text.contains("error serializing") {
                StoreError::Query(text)
            } else {
                StoreError::Unavailable(text)
            }
        }
        Some(code)
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::QUERY_CANCELED =>
        {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Query(error.to_string()),
    }
}
