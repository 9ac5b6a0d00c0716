use crate::StoreError;
use async_trait::async_trait;

/// One cache entry to store in L3. The value is opaque here: the cache service compresses and
/// encrypts it before it reaches the store, so the store never sees a prompt or an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The fleet namespace the entry belongs to (the same as in L2).
    pub namespace: String,
    /// The cache key within the namespace.
    pub key: String,
    pub value: Vec<u8>,
    /// Which encryption key sealed `value`, so keys can rotate while old entries stay readable.
    pub key_id: String,
    /// The tenant scope id (a hash, never an API key).
    pub tenant: String,
    pub model: String,
    /// The cache key schema the entry was computed with.
    pub schema: String,
    /// Unix milliseconds.
    pub stored_at_ms: i64,
    /// Unix milliseconds; from then on the entry is never returned.
    pub expires_at_ms: i64,
}

/// An entry as read back, with its usage so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub namespace: String,
    pub key: String,
    pub value: Vec<u8>,
    pub key_id: String,
    pub tenant: String,
    pub model: String,
    pub schema: String,
    pub stored_at_ms: i64,
    pub expires_at_ms: i64,
    /// Hits counted since the key was first stored (a re-store keeps them: popularity outlives
    /// one TTL), including the one this read counted.
    pub hits: u64,
    /// Unix milliseconds of the latest hit (or of the store, before any hit).
    pub last_access_ms: i64,
}

/// Which entries of a namespace a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeScope {
    Tenant(String),
    Model(String),
    Schema(String),
}

/// What `hottest` looks for: the usage pattern warming fills caches with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotQuery {
    pub namespace: String,
    /// Entries with fewer hits are not hot.
    pub min_hits: u64,
    /// Entries not used since then (Unix ms) are not hot, however many hits they once had.
    pub since_ms: i64,
    /// Entries expired at this instant are skipped.
    pub now_ms: i64,
    pub limit: usize,
}

/// The L3 cache level: a persistent, size-bounded store of opaque entries.
///
/// Hits are counted in memory and written in batches (`flush_hits`, also done by every
/// operation that ranks entries), so a lookup costs one read and no write. Hits not yet flushed
/// when a process dies are lost; they only feed warming and eviction order, never correctness.
#[async_trait]
pub trait EntryStore: Send + Sync {
    /// The entry unless it is missing or expired at `now_ms`; counts a hit and moves its last
    /// access to `now_ms`.
    async fn get(&self, namespace: &str, key: &str, now_ms: i64) -> Result<Option<StoredEntry>, StoreError>;
    /// Stores or replaces the entry; a replaced entry keeps its hit count.
    async fn put(&self, entry: NewEntry) -> Result<(), StoreError>;
    /// Removes one entry (an explicit invalidation); returns whether it was there.
    async fn delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError>;
    /// Counts a hit served by another level (L1/L2) without reading the entry, so warming sees
    /// the whole usage pattern. Never blocks on I/O.
    fn record_hit(&self, namespace: &str, key: &str, now_ms: i64);
    /// Writes the hits counted in memory; call it periodically and before shutting down.
    async fn flush_hits(&self) -> Result<(), StoreError>;
    /// Removes the namespace's entries in `scope`; returns how many.
    async fn purge(&self, namespace: &str, scope: &PurgeScope) -> Result<u64, StoreError>;
    /// Removes the least recently used entries until the stored bytes (keys + values) are at
    /// most `max_bytes`; returns how many were removed.
    async fn evict_to(&self, max_bytes: u64) -> Result<u64, StoreError>;
    /// Removes the entries expired at `now_ms`; returns how many.
    async fn prune_expired(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// The most used live entries of a namespace, most hits first (ties: most recently used).
    async fn hottest(&self, query: &HotQuery) -> Result<Vec<StoredEntry>, StoreError>;
    /// Bytes stored (keys + values), the figure `evict_to` bounds.
    async fn stored_bytes(&self) -> Result<u64, StoreError>;
    /// The namespaces with live entries at `now_ms`, sorted (the L2 refill walks them).
    async fn namespaces(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;
}

/// The size an entry counts for against the byte bound.
pub(crate) fn entry_bytes(namespace: &str, key: &str, value: &[u8]) -> u64 {
    (namespace.len() + key.len() + value.len()) as u64
}
