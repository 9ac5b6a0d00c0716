//! The embedded file database (the default): SQLite, compiled into the binary (`bundled`), so
//! `make run` needs nothing installed and the file can be copied or deleted like any other.
//!
//! One connection behind a mutex, used only from `spawn_blocking`: SQLite serialises writers
//! anyway, and each operation is a handful of indexed statements. WAL with `synchronous=NORMAL`
//! keeps a commit to an append (a crash may lose the last commits, never corrupt the file).
mod entries;
mod rollups;

use crate::hits::HitLedger;
use crate::StoreError;
use rusqlite::{Connection, ErrorCode};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aurelis_rollups (
    window_secs     INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    model           TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    cache_status    TEXT    NOT NULL,
    tenant          TEXT    NOT NULL, -- '' = not a per-tenant row
    payload         BLOB    NOT NULL,
    PRIMARY KEY (window_secs, window_start_ms, model, provider, cache_status, tenant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aurelis_entries (
    namespace      TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    value          BLOB    NOT NULL,
    key_id         TEXT    NOT NULL,
    tenant         TEXT    NOT NULL,
    model          TEXT    NOT NULL,
    key_schema     TEXT    NOT NULL,
    stored_at_ms   INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    last_access_ms INTEGER NOT NULL,
    hits           INTEGER NOT NULL DEFAULT 0,
    bytes          INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS aurelis_entries_lru ON aurelis_entries (last_access_ms);
CREATE INDEX IF NOT EXISTS aurelis_entries_expiry ON aurelis_entries (expires_at_ms);
CREATE INDEX IF NOT EXISTS aurelis_entries_hot ON aurelis_entries (namespace, hits);
";

/// Both stores (telemetry rollups and L3 entries) in one file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    hits: Arc<HitLedger>,
    /// Held from draining the hit ledger until the batch is written, so a ranking never reads
    /// before an earlier batch (say, one a lookup handed to the background) has landed.
    flushing: Arc<tokio::sync::Mutex<()>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates, with its directory) the database file and its schema.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let opened = path.clone();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&opened))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the store: {e}")))??;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), hits: Arc::default(), flushing: Arc::default(), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the connection off the async runtime.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside `work` leaves at most an open transaction, rolled back on drop.
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut conn).map_err(classify)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("creating {}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(classify)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(classify)?;
    conn.execute_batch(SCHEMA).map_err(classify)?;
    Ok(conn)
}

/// Busy, locked or unreadable files are the store being unavailable (retry later, fail open);
/// values of the wrong type are corruption; the rest are query errors (a bug on our side).
fn classify(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied => StoreError::Unavailable(error.to_string()),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt(error.to_string()),
            _ => StoreError::Query(error.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(error.to_string()),
        _ => StoreError::Query(error.to_string()),
    }
}
