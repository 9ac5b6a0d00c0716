//! The control plane's eyes: per-request records streamed by the fleet's Envoys over Envoy's
//! gRPC access log service (`ingest`), folded into 10 s windows (`telemetry.window_secs`) per
//! model × provider × cache status and top-N tenant (`windows`, `stats`), persisted as rollups
//! with coarser 1 min and
//! 1 h tiers and retention (`history`), and read back by the report (`report`, `recommend`),
//! the anomaly detector and the dashboard (`subscribe`).
//!
//! `WindowSummary` is the contract between the window keeper (which produces one per series
//! every 10 s) and its readers (anomaly detection, the live dashboard): plain numbers, already
//! merged across cache statuses and Envoys.
pub mod endpoints;
pub mod history;
pub mod ingest;
mod metrics;
pub mod recommend;
pub mod record;
pub mod report;
pub mod score;
pub mod stats;
mod summary;
pub mod table;
pub mod windows;

use aurelis_store::RollupStore;
use metrics::TelemetryMetrics;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
pub use summary::{SeriesKey, WindowSummary};
use tokio::sync::{broadcast, watch};
use windows::{ClosedWindow, WindowKeeper};

/// A provider said it has no quota left until `until_ms` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSignal {
    pub provider: String,
    pub until_ms: i64,
}

/// How long a window stays open past its end for records still in Envoys' buffers (they
/// flush every second).
pub const GRACE_MS: u64 = 3000;
/// Closed windows kept in memory too, so the report never misses one the store has not
/// written yet (or failed to).
const RECENT_MS: i64 = 5 * 60 * 1000;
/// Rolling up after a restart looks this far back for periods the last run left unrolled
/// (minutes, hours): within what the finer tier keeps.
const ROLL_UP_LOOKBACK_MS: [i64; 2] = [2 * 3600 * 1000, 24 * 3600 * 1000];
/// Summaries of closed windows not yet read by a slow subscriber before it starts losing them.
const SUBSCRIBER_BACKLOG: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TelemetryOptions {
    pub grace_ms: u64,
    pub top_tenants: u32,
    /// The model's `telemetry.sample_rate`: the share of requests Envoys send records for.
    pub sample_rate: f64,
    /// The model's `telemetry.window_secs`: the raw windows' width (a divisor of 60).
    pub window_secs: u32,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions { grace_ms: GRACE_MS, top_tenants: 10, sample_rate: 1.0, window_secs: windows::WINDOW_SECS }
    }
}

struct Inner {
    options: TelemetryOptions,
    keeper: Mutex<WindowKeeper>,
    recent: Mutex<VecDeque<ClosedWindow>>,
    /// Where the next roll-up of each coarser tier (minutes, hours) starts.
    rolled_up_from_ms: Mutex<[i64; 2]>,
    store: Arc<dyn RollupStore>,
    summaries: broadcast::Sender<Vec<WindowSummary>>,
    /// Providers' quota signals, as records arrive (adaptive routing reacts without waiting
    /// for the window to close).
    quota: broadcast::Sender<QuotaSignal>,
    /// Per provider endpoint load and response time (the balancing rule's inputs).
    endpoints: Mutex<endpoints::EndpointTally>,
    metrics: TelemetryMetrics,
}

/// A handle on the fleet's telemetry; cheap to clone (one per server and task).
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a few assignments: a panic cannot leave the data half-written.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Telemetry {
    pub fn new(
        store: Arc<dyn RollupStore>,
        options: TelemetryOptions,
        metrics: &crate::metrics::Metrics,
        now_ms: i64,
    ) -> Telemetry {
        let (summaries, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        let (quota, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        Telemetry {
            inner: Arc::new(Inner {
                options,
                keeper: Mutex::new(WindowKeeper::with_window(
                    options.window_secs,
                    options.grace_ms,
                    options.top_tenants,
                    now_ms,
                )),
                recent: Mutex::new(VecDeque::new()),
                rolled_up_from_ms: Mutex::new(ROLL_UP_LOOKBACK_MS.map(|back| now_ms - back)),
                store,
                summaries,
                quota,
                endpoints: Mutex::new(endpoints::EndpointTally::default()),
                metrics: TelemetryMetrics::new(metrics),
            }),
        }
    }

    pub fn options(&self) -> TelemetryOptions {
        self.inner.options
    }

    /// The raw windows' width, in seconds.
    fn raw_secs(&self) -> u32 {
        self.inner.options.window_secs.max(1)
    }

    /// Every closed 10 s window's summaries (one per model × provider), as it closes.
    pub fn subscribe(&self) -> broadcast::Receiver<Vec<WindowSummary>> {
        self.inner.summaries.subscribe()
    }

    /// Records ingested since start.
    pub fn ingested(&self) -> u64 {
        self.inner.metrics.records.get()
    }

    /// Every provider quota signal, as its record arrives.
    pub fn subscribe_quota(&self) -> broadcast::Receiver<QuotaSignal> {
        self.inner.quota.subscribe()
    }

    /// Quota signals from refused attempts (the router's attempts log): published like a
    /// record's, never counted in the windows (the request's own record is).
    pub fn ingest_attempts(&self, refusals: &[(String, i64)]) {
        for (provider, until_ms) in refusals {
            // No subscriber is fine: adaptive routing may be off.
            let _ = self.inner.quota.send(QuotaSignal { provider: provider.clone(), until_ms: *until_ms });
        }
    }

    pub fn ingest(&self, records: &[record::Record], now_ms: i64) {
        for record in records {
            if let Some(until_ms) = record.quota_exhausted_until_ms {
                // No subscriber is fine: adaptive routing may be off.
                let _ = self.inner.quota.send(QuotaSignal { provider: record.provider.clone(), until_ms });
            }
        }
        {
            let mut tally = lock(&self.inner.endpoints);
            for record in records {
                if let Some(host) = &record.upstream_host {
                    // The provider's share when Envoy timed it, else the whole request.
                    tally.add(&record.provider, host, record.start_ms, record.upstream_ms.unwrap_or(record.latency_ms));
                }
            }
        }
        let mut late = 0;
        {
            let mut keeper = lock(&self.inner.keeper);
            for record in records {
                if keeper.add(record, now_ms) == windows::Placement::Late {
                    late += 1;
                }
            }
        }
        self.inner.metrics.records.inc_by(records.len() as u64);
        self.inner.metrics.late_records.inc_by(late);
    }

    /// Per provider and endpoint: requests and mean response time over the last `window_ms`.
    pub fn endpoint_loads(
        &self,
        now_ms: i64,
        window_ms: i64,
    ) -> BTreeMap<String, BTreeMap<String, crate::adaptive::EndpointLoad>> {
        lock(&self.inner.endpoints).loads(now_ms, window_ms)
    }

    pub(crate) fn refuse(&self, peer: &str, reason: &str, message: &str) -> tonic::Status {
        self.inner.metrics.refused_streams.with_label_values(&[reason]).inc();
        tracing::warn!(%peer, reason, "access log stream refused: {message}");
        tonic::Status::permission_denied(message)
    }

    fn store_error(&self, op: &str, error: &dyn std::fmt::Display) {
        self.inner.metrics.store_errors.with_label_values(&[op]).inc();
        tracing::warn!(op, "telemetry history: {error}");
    }

    /// Closes due windows: publishes their summaries, keeps them in memory, writes them to the
    /// store, rolls closed minutes and hours up and prunes what is past retention. Store
    /// failures are counted and logged; the windows stay in memory for the report.
    pub async fn tick(&self, now_ms: i64) {
        let (closed, closed_until) = {
            let mut keeper = lock(&self.inner.keeper);
            (keeper.close(now_ms), keeper.closed_until_ms())
        };
        if !closed.is_empty() {
            self.inner.metrics.windows_closed.inc_by(closed.len() as u64);
            {
                let mut recent = lock(&self.inner.recent);
                recent.extend(closed.iter().cloned());
                while recent.front().is_some_and(|w| w.start_ms < now_ms - RECENT_MS) {
                    recent.pop_front();
                }
            }
            for window in &closed {
                // No subscriber is fine: nobody is watching yet.
                let _ = self.inner.summaries.send(window.summaries());
            }
            if let Err(e) = history::persist(self.inner.store.as_ref(), &closed).await {
                self.store_error("put", &e);
            }
        }
        // Each coarser tier once one of its periods has closed: a minute's rows once a minute,
        // an hour's once an hour; retention with the hours.
        let watermarks = *lock(&self.inner.rolled_up_from_ms);
        for (i, from) in watermarks.into_iter().enumerate() {
            let coarser = i + 1;
            let tier_ms = history::tiers(self.raw_secs()).get(coarser).map_or(i64::MAX, |t| t.ms());
            if closed_until.div_euclid(tier_ms) * tier_ms <= from {
                continue;
            }
            match history::roll_up_tier(self.inner.store.as_ref(), self.raw_secs(), coarser, from, closed_until).await {
                Ok(next) => {
                    if let Some(w) = lock(&self.inner.rolled_up_from_ms).get_mut(i) {
                        *w = next;
                    }
                }
                Err(e) => self.store_error("roll_up", &e),
            }
            if coarser == history::TIERS.len() - 1 {
                if let Err(e) = history::prune(self.inner.store.as_ref(), self.raw_secs(), now_ms).await {
                    self.store_error("prune", &e);
                }
            }
        }
    }

    /// Takes back the windows a previous run wrote while they were open (its stop), so their
    /// rows are completed rather than overwritten. Run once at start-up.
    pub async fn restore(&self, now_ms: i64) {
        let from = lock(&self.inner.keeper).closed_until_ms();
        let rows = match self.inner.store.rollups(self.raw_secs(), from, now_ms + 60_000).await {
            Ok(rows) => rows,
            Err(e) => return self.store_error("read", &e),
        };
        match history::to_windows(&rows) {
            Ok(stored) => {
                let taken = lock(&self.inner.keeper).reopen(stored);
                if taken > 0 {
                    tracing::info!("telemetry: {taken} open window(s) of the previous run taken back");
                }
            }
            Err(e) => self.store_error("read", &e),
        }
    }

    /// Closes windows every second until `stop` fires (after `restore`).
    pub async fn run(self, mut stop: watch::Receiver<()>) {
        self.restore(now_ms()).await;
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => self.tick(now_ms()).await,
                _ = stop.changed() => {
                    // Whatever is still open is written on the way out, so a restart keeps it.
                    self.flush().await;
                    return;
                }
            }
        }
    }

    /// Writes the open windows as they are (a stop): the next run merges nothing into them,
    /// a record for them arriving later lands in a later window.
    pub async fn flush(&self) {
        let open = lock(&self.inner.keeper).open_windows();
        if let Err(e) = history::persist(self.inner.store.as_ref(), &open).await {
            self.store_error("put", &e);
        }
    }

    /// The windows of `[from_ms, to_ms)`: stored history at the tiers that cover it, then the
    /// windows still in memory (closed recently, and open) for the raw part.
    pub async fn windows(&self, from_ms: i64, to_ms: i64) -> Vec<ClosedWindow> {
        let closed_until = lock(&self.inner.keeper).closed_until_ms();
        let raw_secs = self.raw_secs();
        let plan = history::plan(raw_secs, from_ms, to_ms, closed_until);
        let raw_from = plan.iter().find(|(tier, _, _)| tier.secs == raw_secs).map_or(to_ms, |(_, s, _)| *s);
        let stored = match history::load(self.inner.store.as_ref(), raw_secs, from_ms, to_ms, closed_until).await {
            Ok(stored) => stored,
            Err(e) => {
                self.store_error("read", &e);
                Vec::new()
            }
        };
        let mut by_start: BTreeMap<(i64, u32), ClosedWindow> =
            stored.into_iter().map(|w| ((w.start_ms, w.window_secs), w)).collect();
        let memory: Vec<ClosedWindow> = {
            let recent = lock(&self.inner.recent);
            let open = lock(&self.inner.keeper).open_windows();
            recent.iter().cloned().chain(open).collect()
        };
        for window in memory.into_iter().filter(|w| w.start_ms >= raw_from && w.start_ms < to_ms) {
            // Memory is the truth for what it holds (the store may lag or have failed).
            by_start.insert((window.start_ms, window.window_secs), window);
        }
        by_start.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurelis_store::memory::MemoryStore;
    use record::Record;

    const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;

    fn record(start_ms: i64) -> Record {
        Record {
            start_ms,
            model: "m".into(),
            provider: "p".into(),
            cache_status: "MISS".into(),
            latency_ms: 5.0,
            ..Record::default()
        }
    }

    fn telemetry(store: Arc<dyn RollupStore>, now: i64) -> Telemetry {
        Telemetry::new(
            store,
            TelemetryOptions { grace_ms: 0, ..Default::default() },
            &crate::metrics::Metrics::new(),
            now,
        )
    }

    fn requests(windows: &[ClosedWindow]) -> u64 {
        windows.iter().flat_map(|w| w.rows.values()).map(|s| s.requests).sum()
    }

    #[tokio::test]
    async fn closed_windows_are_published_stored_and_read_back_once() {
        let store: Arc<dyn RollupStore> = Arc::new(MemoryStore::default());
        let t = telemetry(store.clone(), T0 - 10_000);
        let mut summaries = t.subscribe();
        t.ingest(&[record(T0 + 1000), record(T0 + 2000), record(T0 + 12_000)], T0 + 12_000);
        assert_eq!(t.ingested(), 3);
        assert_eq!(requests(&t.windows(T0, T0 + 3_600_000).await), 3, "open windows count");
        t.tick(T0 + 20_000).await;
        let published = summaries.recv().await.unwrap();
        assert_eq!(published[0].requests, 2);
        assert_eq!(store.rollups(10, T0, T0 + 10_000).await.unwrap().len(), 1);
        assert_eq!(requests(&t.windows(T0, T0 + 3_600_000).await), 3, "stored and in memory, counted once");
    }

    #[tokio::test]
    async fn ticks_roll_closed_minutes_and_hours_up() {
        let store: Arc<dyn RollupStore> = Arc::new(MemoryStore::default());
        let t = telemetry(store.clone(), T0 - 10_000);
        t.ingest(&[record(T0 + 1000), record(T0 + 55_000)], T0 + 55_000);
        t.tick(T0 + 59_000).await;
        assert!(store.rollups(60, T0, T0 + 60_000).await.unwrap().is_empty(), "the minute is still open");
        t.tick(T0 + 60_000).await;
        let minute = history::to_windows(&store.rollups(60, T0, T0 + 60_000).await.unwrap()).unwrap();
        assert_eq!(requests(&minute), 2);
        t.tick(T0 + 3_600_000).await;
        let hour = history::to_windows(&store.rollups(3600, T0, T0 + 1).await.unwrap()).unwrap();
        assert_eq!(requests(&hour), 2);
    }

    /// Tests and dashboards read these names: renaming one must fail here first.
    #[tokio::test]
    async fn the_telemetry_metric_names_are_stable() {
        let metrics = crate::metrics::Metrics::new();
        let t = Telemetry::new(Arc::new(MemoryStore::default()), TelemetryOptions::default(), &metrics, T0);
        t.ingest(&[record(T0)], T0);
        let _ = t.refuse("127.0.0.1:1", "node_mismatch", "test");
        t.store_error("put", &"test");
        let text = metrics.render();
        for line in [
            "aurelis_cp_telemetry_records_total 1",
            "aurelis_cp_telemetry_late_records_total 0",
            "aurelis_cp_telemetry_windows_closed_total 0",
            r#"aurelis_cp_telemetry_store_errors_total{op="put"} 1"#,
            r#"aurelis_cp_telemetry_refused_streams_total{reason="node_mismatch"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn a_restart_keeps_history() {
        let store: Arc<dyn RollupStore> = Arc::new(MemoryStore::default());
        let before = telemetry(store.clone(), T0);
        before.ingest(&[record(T0 + 1000), record(T0 + 15_000)], T0 + 15_000);
        before.tick(T0 + 15_000).await;
        before.flush().await;
        drop(before);
        let after = telemetry(store.clone(), T0 + 16_000);
        after.restore(T0 + 16_000).await;
        after.ingest(&[record(T0 + 16_500)], T0 + 16_500);
        assert_eq!(requests(&after.windows(T0, T0 + 3_600_000).await), 3);
        after.tick(T0 + 20_000).await;
        let rows = store.rollups(10, T0 + 10_000, T0 + 20_000).await.unwrap();
        assert_eq!(requests(&history::to_windows(&rows).unwrap()), 2, "the reopened window holds both runs' records");
    }
}
