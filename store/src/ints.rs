//! Counts are `u64` in the API and signed 64-bit integers in SQL (neither SQLite nor
//! PostgreSQL has an unsigned type).

/// Saturates: a count past `i64::MAX` is not reachable in practice.
pub(crate) fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `None` for a negative stored count, which only a corrupted row can hold.
pub(crate) fn from_sql(value: i64) -> Option<u64> {
    u64::try_from(value).ok()
}
