use thiserror::Error;

/// Why a store operation failed. Callers count these and fail open: history or L3 being
/// unavailable never fails a request or a push.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
