//! Refilling Redis from L3 after Redis lost its contents (a flush, a restart without
//! persistence, a new instance). Every `check_every` the service sets a sentinel key in Redis
//! if it is absent (`SET NX`, one command): finding it absent means Redis was emptied since the
//! last check (or this is the first start), and the hottest L3 entries of every namespace are
//! put back, a few at a time (`AT_ONCE`), each for what is left of its L3 life (at most the L2
//! TTL), marked as coming from L3 (the filter then judges its age by L3's lifetime) and
//! counted. The sentinel is set before the refill, so of several service replicas one refills;
//! a replica that dies mid-refill leaves the rest to promotion on lookup.
use super::L3;
use crate::api::Defaults;
use crate::metrics::Metrics;
use crate::store::{PutOptions, Store};
use aurelis_store::HotQuery;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Entries written to Redis concurrently (the design's "5 at a time").
pub const AT_ONCE: usize = 5;
/// Bytes (keys + values) refilled per namespace at most.
pub const MAX_BYTES: usize = 64 << 20;
const WINDOW_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;
/// The sentinel's key: outside every namespace's `<namespace>:e:` and `<namespace>:i:` keys.
pub const SENTINEL_KEY: &str = "aurelis:refill-sentinel";

/// What the refill takes from L3: the design's usage pattern, bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefillSettings {
    /// `None`: no refill.
    pub check_every: Option<Duration>,
    /// At most this many entries per namespace.
    pub max_entries: usize,
    /// An entry needs at least this many hits (in the last 30 days) to be refilled.
    pub min_hits: u64,
}

/// Checks for an emptied Redis every `check_every` and refills it; runs until the service stops.
pub async fn run(settings: RefillSettings, store: Store, l3: Arc<L3>, defaults: Defaults, metrics: Arc<Metrics>) {
    let Some(every) = settings.check_every else { return };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.set_sentinel(SENTINEL_KEY).await {
            Ok(true) => refill(&settings, &store, &l3, defaults, &metrics).await,
            Ok(false) => {}
            // Redis down: nothing to refill yet; the next check after it is back will see it empty.
            Err(e) => tracing::debug!(error = %e, "refill check: Redis does not answer"),
        }
    }
}

/// Puts the hottest L3 entries of every namespace back into Redis.
pub async fn refill(settings: &RefillSettings, store: &Store, l3: &L3, defaults: Defaults, metrics: &Metrics) {
    let namespaces = match l3.namespaces().await {
        Ok(namespaces) => namespaces,
        Err(_) => {
            metrics.refills.with_label_values(&["error"]).inc();
            return;
        }
    };
    let now_ms = super::unix_ms_now();
    let (mut stored, mut failed) = (0u64, 0u64);
    for namespace in namespaces {
        let query = HotQuery {
            namespace: namespace.clone(),
            min_hits: settings.min_hits,
            since_ms: now_ms.saturating_sub(WINDOW_DAYS * DAY_MS),
            now_ms,
            limit: settings.max_entries,
        };
        let Ok(hot) = l3.hottest_found(&query, MAX_BYTES).await else {
            metrics.refills.with_label_values(&["error"]).inc();
            continue;
        };
        let puts = futures::stream::iter(hot)
            .map(|(key, found)| {
                let namespace = namespace.as_str();
                async move {
                    let ttl = found.remaining.min(defaults.ttl).max(Duration::from_secs(1));
                    let options = PutOptions { ttl, compress_min_bytes: defaults.compress_min_bytes, tags: found.tags };
                    store.put_from_l3(namespace, &key, &found.value, &options).await
                }
            })
            .buffer_unordered(AT_ONCE);
        let outcomes: Vec<_> = puts.collect().await;
        for outcome in outcomes {
            match outcome {
                Ok(_) => stored += 1,
                Err(e) => {
                    tracing::debug!(error = %e, "refill: entry not put back into Redis");
                    failed += 1;
                }
            }
        }
    }
    metrics.refill_entries.with_label_values(&["stored"]).inc_by(stored);
    metrics.refill_entries.with_label_values(&["error"]).inc_by(failed);
    metrics.refills.with_label_values(&["done"]).inc();
    tracing::info!(stored, failed, "Redis refilled from L3's hottest entries");
}
