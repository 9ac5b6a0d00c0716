//! L3: the persistent level behind Redis (`aurelis-store`: an embedded file database or
//! PostgreSQL). A lookup that Redis cannot answer (miss, or Redis down) asks L3 under a short
//! timeout and fails open; an L3 hit is promoted to Redis. Every value L2 stores is also
//! written to L3, in the background. Values are compressed and encrypted here (`seal`): the
//! database never holds a prompt or an answer in clear.
pub mod refill;
pub mod seal;

use crate::metrics::Metrics;
use crate::settings::l3::L3Settings;
use crate::store::Tags;
use aurelis_store::{EntryStore, HotQuery, NewEntry, PurgeScope};
use seal::{OpenError, Sealer};
use std::sync::Arc;
use std::time::Duration;

/// Bound on the hits one report adds to one entry.
pub const MAX_HITS_PER_REPORT: u32 = 1000;

/// How often `maintain` runs.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(30);

/// Bound on a background write: long enough for a busy database, short enough that writes
/// cannot pile up behind a dead one.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct L3 {
    entries: Arc<dyn EntryStore>,
    sealer: Sealer,
    /// Bound on a lookup; past it the request goes on as a miss.
    timeout: Duration,
    /// Lifetime of an entry in L3 (longer than in Redis: this level is for what Redis forgot).
    ttl: Duration,
    /// Bytes L3 may hold; `maintain` evicts the least recently used above it.
    max_bytes: u64,
    metrics: Arc<Metrics>,
}

/// An L3 hit: the value as the filter stored it, the tags to re-index it with in Redis, and
/// how long it still lives.
pub struct Found {
    pub value: Vec<u8>,
    pub tags: Tags,
    pub remaining: Duration,
}

impl L3 {
    pub fn new(
        entries: Arc<dyn EntryStore>,
        sealer: Sealer,
        timeout: Duration,
        ttl: Duration,
        max_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> L3 {
        L3 { entries, sealer, timeout, ttl, max_bytes, metrics }
    }

    /// Opens the configured store (creating its schema) and starts the periodic maintenance.
    pub async fn start(settings: L3Settings, metrics: Arc<Metrics>) -> Result<Arc<L3>, aurelis_store::StoreError> {
        let stores = aurelis_store::open(&settings.store).await?;
        let l3 = Arc::new(L3::new(
            stores.entries,
            settings.sealer,
            settings.timeout,
            settings.ttl,
            settings.max_bytes,
            metrics,
        ));
        let weak = Arc::downgrade(&l3);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(MAINTENANCE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(l3) = weak.upgrade() else { return };
                l3.maintain(unix_ms_now()).await;
            }
        });
        Ok(l3)
    }

    /// Writes what is only in memory (hit counts); call at shutdown.
    pub async fn shutdown(&self) {
        if let Err(e) = self.entries.flush_hits().await {
            tracing::warn!(error = %e, "L3 hit counts not written at shutdown");
        }
    }

    /// The entry, or `None` for a miss of any kind (counted by outcome).
    pub async fn lookup(&self, namespace: &str, key: &str, now_ms: i64) -> Option<Found> {
        let (found, outcome) = match tokio::time::timeout(self.timeout, self.entries.get(namespace, key, now_ms)).await
        {
            Err(_) => (None, "timeout"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "L3 lookup failed");
                (None, "error")
            }
            Ok(Ok(None)) => (None, "miss"),
            Ok(Ok(Some(stored))) => match self.sealer.open(&stored.key_id, namespace, key, &stored.value) {
                Ok(value) => {
                    let remaining = u64::try_from(stored.expires_at_ms.saturating_sub(now_ms)).unwrap_or(0);
                    let tags = Tags {
                        tenant: non_empty(stored.tenant),
                        model: non_empty(stored.model),
                        schema: non_empty(stored.schema),
                    };
                    (Some(Found { value, tags, remaining: Duration::from_millis(remaining) }), "hit")
                }
                Err(OpenError::UnknownKey(_)) => (None, "unknown_key"),
                Err(OpenError::Decrypt | OpenError::Decompress) => (None, "undecryptable"),
            },
        };
        self.metrics.l3("get", outcome);
        found
    }

    /// Seals and writes the value in a background task; the caller never waits for L3.
    pub fn store_in_background(self: &Arc<Self>, namespace: &str, key: &str, value: Vec<u8>, tags: &Tags, now_ms: i64) {
        let l3 = Arc::clone(self);
        let (namespace, key, tags) = (namespace.to_string(), key.to_string(), tags.clone());
        tokio::spawn(async move {
            let outcome = l3.store(namespace, key, &value, tags, now_ms).await;
            l3.metrics.l3("put", outcome);
        });
    }

    async fn store(&self, namespace: String, key: String, value: &[u8], tags: Tags, now_ms: i64) -> &'static str {
        let (key_id, sealed) = match self.sealer.seal(&namespace, &key, value) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(error = %e, "L3 value not sealed");
                return "error";
            }
        };
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let entry = NewEntry {
            namespace,
            key,
            value: sealed,
            key_id,
            tenant: tags.tenant.unwrap_or_default(),
            model: tags.model.unwrap_or_default(),
            schema: tags.schema.unwrap_or_default(),
            stored_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        };
        within_write_bound(self.entries.put(entry), "L3 write failed").await.err().unwrap_or("stored")
    }

    /// Removes the entry, so an explicit invalidation is not undone by an L3 hit. Waits (under
    /// the write bound): the caller's DELETE is only done once both levels forgot the entry.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<(), &'static str> {
        // Its refresh record goes too: an invalidated entry is not brought back by a refresh.
        let records = record_namespace(namespace);
        let delete_both = async {
            let deleted = self.entries.delete(namespace, key).await?;
            self.entries.delete(&records, key).await?;
            Ok::<_, aurelis_store::StoreError>(deleted)
        };
        let outcome = within_write_bound(delete_both, "L3 delete failed").await.map(|_deleted| ());
        self.metrics.l3("delete", outcome.err().unwrap_or("deleted"));
        outcome
    }

    /// The hottest live entries of a namespace (`query`), opened, most hits first, as many as
    /// fit in `max_bytes` (key + value). Entries that do not open (a key no longer loaded) are
    /// skipped: warming is best effort.
    pub async fn hottest(&self, query: &HotQuery, max_bytes: usize) -> Result<Vec<(String, Vec<u8>)>, &'static str> {
        let found = self.hottest_found(query, max_bytes).await?;
        Ok(found.into_iter().map(|(key, found)| (key, found.value)).collect())
    }

    /// Counts `hits` served by another level (an Envoy's L1, or Redis) towards the entry's
    /// hotness: in memory, written with the next batch (`EntryStore::record_hit`), never a
    /// write per hit. At most `MAX_HITS_PER_REPORT` per call: one report cannot make a cold
    /// entry the hottest of the fleet.
    pub fn record_hits(&self, namespace: &str, key: &str, hits: u32) {
        let now_ms = unix_ms_now();
        for _ in 0..hits.min(MAX_HITS_PER_REPORT) {
            self.entries.record_hit(namespace, key, now_ms);
        }
    }

    /// The namespaces L3 holds live entries of (what a refill walks).
    pub async fn namespaces(&self) -> Result<Vec<String>, &'static str> {
        within_write_bound(self.entries.namespaces(unix_ms_now()), "L3 namespaces not listed").await
    }

    /// `hottest` with what putting them back into Redis needs: tags and remaining lifetime.
    pub async fn hottest_found(
        &self,
        query: &HotQuery,
        max_bytes: usize,
    ) -> Result<Vec<(String, Found)>, &'static str> {
        let found = within_write_bound(self.entries.hottest(query), "L3 hottest failed").await;
        self.metrics.l3("hottest", found.as_ref().err().copied().unwrap_or("listed"));
        let mut hot = Vec::new();
        let mut bytes = 0usize;
        for stored in found? {
            let Ok(value) = self.sealer.open(&stored.key_id, &stored.namespace, &stored.key, &stored.value) else {
                continue;
            };
            bytes = bytes.saturating_add(stored.key.len() + value.len());
            if bytes > max_bytes {
                break;
            }
            let remaining = u64::try_from(stored.expires_at_ms.saturating_sub(query.now_ms)).unwrap_or(0);
            let tags = Tags {
                tenant: non_empty(stored.tenant),
                model: non_empty(stored.model),
                schema: non_empty(stored.schema),
            };
            hot.push((stored.key, Found { value, tags, remaining: Duration::from_millis(remaining) }));
        }
        Ok(hot)
    }

    /// Keys of the namespace's hot entries (`query`) that expire within `ahead_ms` of
    /// `query.now_ms`, most hits first: what refresh-ahead replays. Values are not opened.
    pub async fn due_for_refresh(&self, query: &HotQuery, ahead_ms: i64) -> Result<Vec<String>, &'static str> {
        let found = within_write_bound(self.entries.hottest(query), "L3 hottest (refresh) failed").await;
        self.metrics.l3("due", found.as_ref().err().copied().unwrap_or("listed"));
        let due = found?.into_iter().filter(|e| e.expires_at_ms.saturating_sub(query.now_ms) <= ahead_ms);
        Ok(due.map(|e| e.key).collect())
    }

    /// Stores a refresh record (the filter's, opaque here) next to its entry, sealed like it.
    pub fn store_record_in_background(
        self: &Arc<Self>,
        namespace: &str,
        key: &str,
        record: Vec<u8>,
        tags: &Tags,
        now_ms: i64,
    ) {
        self.store_in_background(&record_namespace(namespace), key, record, tags, now_ms);
    }

    /// The refresh record of `key`, opened; `None` when there is none or it does not open.
    pub async fn record(&self, namespace: &str, key: &str, now_ms: i64) -> Option<Vec<u8>> {
        let records = record_namespace(namespace);
        let stored =
            tokio::time::timeout(WRITE_TIMEOUT, self.entries.get(&records, key, now_ms)).await.ok()?.ok()??;
        self.sealer.open(&stored.key_id, &records, key, &stored.value).ok()
    }

    /// Removes one scope (tenant, model or key schema) of a namespace; how many entries went.
    /// Waits (under the write bound), so a purge is only reported done once L3 forgot them.
    pub async fn purge(&self, namespace: &str, scope: &PurgeScope) -> Result<u64, &'static str> {
        // The entries' refresh records go with them (same tags).
        let records = record_namespace(namespace);
        let purge_both = async {
            let purged = self.entries.purge(namespace, scope).await?;
            self.entries.purge(&records, scope).await?;
            Ok::<_, aurelis_store::StoreError>(purged)
        };
        let outcome = within_write_bound(purge_both, "L3 purge failed").await;
        self.metrics.l3("purge", outcome.err().unwrap_or("purged"));
        outcome
    }

    /// Periodic housekeeping: hit counts written, expired entries removed, size bounded.
    pub async fn maintain(&self, now_ms: i64) {
        if let Err(e) = self.entries.flush_hits().await {
            tracing::warn!(error = %e, "L3 hit counts not written");
        }
        if let Err(e) = self.entries.prune_expired(now_ms).await {
            tracing::warn!(error = %e, "L3 expired entries not pruned");
        }
        match self.entries.evict_to(self.max_bytes).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(evicted = n, "L3 above its size bound"),
            Err(e) => tracing::warn!(error = %e, "L3 eviction failed"),
        }
    }
}

/// Where refresh records live in L3: a namespace of their own, so warming and hottest lists
/// never see them. `#` is not a namespace character (`validate_name`): no fleet can name it.
/// `op` under the write bound, its failure as the outcome label callers count and answer
/// with: `timeout`, or `error` (logged with `failed`, never with the entry's content).
async fn within_write_bound<T>(
    op: impl std::future::Future<Output = Result<T, aurelis_store::StoreError>>,
    failed: &'static str,
) -> Result<T, &'static str> {
    match tokio::time::timeout(WRITE_TIMEOUT, op).await {
        Err(_) => Err("timeout"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "{failed}");
            Err("error")
        }
        Ok(Ok(value)) => Ok(value),
    }
}

pub fn record_namespace(namespace: &str) -> String {
    format!("{namespace}#refresh")
}

fn unix_ms_now() -> i64 {
    i64::try_from(crate::store::layout::unix_ms(std::time::SystemTime::now())).unwrap_or(i64::MAX)
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
