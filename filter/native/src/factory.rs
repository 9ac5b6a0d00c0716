//! One filter configuration (`on_http_filter_config_new` .. `_destroy`), shared by every worker
//! thread: the parsed configuration (refused when invalid, so Envoy keeps the previous one),
//! its metrics, and the queue of L2 stores the main thread sends.
//!
//! Why L2 stores go through the main thread: a store must outlive the request that filled it
//! (a callout made on a stream is cancelled when the stream ends), and Envoy's configuration
//! level callouts keep their state in an unsynchronized map, so they may only be made on one
//! thread. Workers queue the store and commit an event to the configuration's main-thread
//! scheduler; the main thread sends the queued stores and counts their answers. The worker's
//! other calls (hit reports) go the same way, and so does warming, which the configuration
//! starts itself when it is created: a worker thread only runs while it has streams, and a
//! restarted Envoy must warm before its first request.
use crate::abi::{self, ConfigScheduler, Level, MetricKind};
use crate::metrics::{Metrics, MetricsSink};
use crate::secrets;
use crate::store::ProcessStore;
use aurelis_core::cache::l2::L2Secrets;
use aurelis_core::cache::{KeyNames, L1Cache, Layout, WayHints};
use aurelis_core::config::FilterConfig;
use aurelis_core::flow::stats::{Counter, Gauge, Tally};
use aurelis_core::flow::Worker;
use aurelis_core::http::Callout;
use aurelis_core::limits::LimitTable;
use aurelis_core::warm::{self, HitCounts, WorkerCall};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// The ticker reports the hits parked by idle workers every this many ticks (250 ms): at most
/// four reports a second per configuration, however the traffic comes.
pub const PARKED_REPORT_EVERY_TICKS: u32 = 5;

/// Bound on queued L2 stores (the core bounds its own queue the same way): beyond it a store
/// is dropped and counted, never buffered without limit.
const MAX_QUEUED_STORES: usize = 1024;

/// The configuration scheduler's events (`on_http_filter_config_scheduled`, main thread).
pub const SEND_QUEUED_CALLS: u64 = 0;
pub const FLUSH_PARKED_STATS: u64 = 1;

static GENERATIONS: AtomicU64 = AtomicU64::new(0);

pub struct Factory {
    /// Distinguishes configurations, so each worker thread keeps one core `Worker` per
    /// configuration it serves.
    pub generation: u64,
    pub config: FilterConfig,
    pub metrics: Metrics,
    handle: abi::Config,
    /// Taken (deleted) when Envoy destroys the configuration, on the thread that does it.
    scheduler: Mutex<Option<ConfigScheduler>>,
    /// Calls for the main thread to send: L2 stores (`None`) and the worker calls.
    stores: Mutex<Vec<(Option<WorkerCall>, Callout)>>,
    /// Worker calls sent and not answered yet, by callout id (main thread only).
    calls: Mutex<HashMap<u64, WorkerCall>>,
    /// For verifying warmed entries on the main thread (never logged).
    secrets: L2Secrets,
    /// L1 hits of workers that went idle (no stream, so no timer), for the ticker to report.
    parked: Mutex<HitCounts>,
    /// Stats of workers that went idle, for the ticker to flush (every tick, in one batch).
    parked_stats: Mutex<Tally>,
    retired: AtomicBool,
}

impl Factory {
    /// Parses and validates the configuration (the Wasm filter's JSON, unchanged); `None`
    /// refuses it, with the reason in Envoy's log.
    pub fn new(handle: abi::Config, _name: &[u8], json: &[u8]) -> Option<Arc<Factory>> {
        crate::panics::install_hook();
        let config = match FilterConfig::from_json(json) {
            Ok(config) => config,
            Err(err) => {
                abi::log(Level::Error, &format!("aurelis: refusing filter configuration: {err}"));
                return None;
            }
        };
        let metrics = Metrics::define(handle);
        let secrets = secrets::from_env();
        let describe = Worker::new(config.clone(), secrets.clone()).describe();
        abi::log(Level::Info, &format!("aurelis: configured (native): {describe}"));
        let factory = Arc::new(Factory {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            config,
            metrics,
            handle,
            scheduler: Mutex::new(handle.scheduler()),
            stores: Mutex::default(),
            calls: Mutex::default(),
            secrets,
            parked: Mutex::default(),
            parked_stats: Mutex::default(),
            retired: AtomicBool::new(false),
        });
        lock(&LIVE).push(Arc::downgrade(&factory));
        // A new process or L1 layout warms once (the core's mark in the store decides).
        if let Some(callout) = warm::load::start(&factory.config, &factory.secrets, ProcessStore::global()) {
            if !factory.queue_call(Some(WorkerCall::Warm), callout) {
                factory.count(Counter::Warm("error"));
            }
        }
        Some(factory)
    }

    /// Envoy destroyed the configuration: worker threads drop their `Worker` for it once its
    /// last stream is gone.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.metrics.close();
        lock(&self.scheduler).take();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// From a worker thread: queues an L2 store for the main thread. `false` if it cannot be
    /// sent (no scheduler, or the queue is full: counted as dropped).
    pub fn queue_store(&self, callout: Callout) -> bool {
        self.queue_call(None, callout)
    }

    /// Queues a store (`None`) or a worker call for the main thread (see `queue_store`).
    pub fn queue_call(&self, call: Option<WorkerCall>, callout: Callout) -> bool {
        let scheduler = lock(&self.scheduler);
        let Some(scheduler) = scheduler.as_ref() else { return false };
        let mut stores = lock(&self.stores);
        if stores.len() >= MAX_QUEUED_STORES {
            drop(stores);
            self.count(match call {
                None => Counter::L2Store("dropped"),
                Some(WorkerCall::Warm) => Counter::Warm("error"),
                Some(WorkerCall::HitReport) => Counter::HitReports("error"),
            });
            return true;
        }
        stores.push((call, callout));
        let first = stores.len() == 1;
        drop(stores);
        if first {
            scheduler.commit(SEND_QUEUED_CALLS);
        }
        true
    }

    /// On the main thread: sends every queued call.
    pub fn send_queued_stores(&self) {
        let stores = std::mem::take(&mut *lock(&self.stores));
        for (call, store) in stores {
            let headers: Vec<(&str, &str)> = store.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let body = store.body.as_deref().unwrap_or_default();
            match (self.handle.callout(&store.cluster, &headers, body, store.timeout_ms), call) {
                (Some(id), Some(call)) => {
                    lock(&self.calls).insert(id, call);
                }
                (Some(_), None) => {}
                (None, None) => self.count(Counter::L2Store("error")),
                (None, Some(WorkerCall::Warm)) => self.count(Counter::Warm("error")),
                (None, Some(WorkerCall::HitReport)) => self.count(Counter::HitReports("error")),
            }
        }
    }

    /// On the main thread: the answer to call `id`, handled as the core's worker would.
    pub fn on_callout_answer(&self, id: u64, answer: &abi::CalloutAnswer) {
        let call = lock(&self.calls).remove(&id);
        match call {
            None => self.on_store_answer(answer.status),
            Some(WorkerCall::HitReport) => {
                let ok = matches!(answer.status, Some(s) if (200..300).contains(&s));
                self.count(Counter::HitReports(if ok { "ok" } else { "error" }));
            }
            Some(WorkerCall::Warm) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let mut count =
                    |counter: Counter, by: u64| self.metrics.record(MetricKind::Counter, &counter.name(), by);
                let store = ProcessStore::global();
                warm::load::load_into(&self.config, &self.secrets, store, answer.status, &answer.body, now, &mut count);
            }
        }
    }

    /// From a worker thread whose last stream ended: its unreported L1 hits.
    pub fn park_hits(&self, counts: HitCounts) {
        if !counts.is_empty() {
            lock(&self.parked).merge(counts);
        }
    }

    /// From a worker thread whose last stream ended: the stats it counted.
    pub fn park_stats(&self, tally: Tally) {
        if !tally.is_empty() {
            lock(&self.parked_stats).merge(tally);
        }
    }

    /// On the main thread: a scheduled event (see `SEND_QUEUED_CALLS`, `FLUSH_PARKED_STATS`).
    pub fn on_scheduled(&self, event: u64) {
        match event {
            FLUSH_PARKED_STATS => self.flush_parked_stats(),
            _ => self.send_queued_stores(),
        }
    }

    /// From the ticker thread: asks the main thread to flush the parked stats, if any. Not
    /// flushed here: Envoy resolves a labelled metric through thread-local caches that only
    /// its own threads have (a call from the ticker thread crashes Envoy).
    fn schedule_parked_stats_flush(&self) {
        if lock(&self.parked_stats).is_empty() {
            return;
        }
        if let Some(scheduler) = lock(&self.scheduler).as_ref() {
            scheduler.commit(FLUSH_PARKED_STATS);
        }
    }

    /// On the main thread: the parked stats into Envoy's metrics.
    fn flush_parked_stats(&self) {
        let mut pending = lock(&self.parked_stats).take_pending();
        if !pending.is_empty() {
            pending.flush(&mut MetricsSink(&self.metrics));
        }
    }

    /// From the ticker thread: one report of the parked hits, if any.
    fn report_parked(&self) {
        let (body, dropped) = {
            let mut parked = lock(&self.parked);
            if parked.is_empty() {
                return;
            }
            parked.take_body()
        };
        if dropped > 0 {
            self.metrics.record(MetricKind::Counter, &Counter::HitsUnreported.name(), dropped);
        }
        if body.is_empty() || !warm::hits::reporting(&self.config, &self.secrets) {
            return;
        }
        let callout = warm::hits::report_callout(&self.config, &self.secrets, body);
        if !self.queue_call(Some(WorkerCall::HitReport), callout) {
            self.count(Counter::HitReports("error"));
        }
    }

    /// On the main thread: a store's answer, counted as the core's `on_store_answer` would.
    pub fn on_store_answer(&self, status: Option<u16>) {
        let ok = matches!(status, Some(s) if (200..300).contains(&s));
        self.count(Counter::L2Store(if ok { "ok" } else { "error" }));
    }

    fn count(&self, counter: Counter) {
        self.metrics.record(MetricKind::Counter, &counter.name(), 1);
    }

    /// The L1 and limit-table gauges. They describe the process-wide store, not one worker, so
    /// the ticker thread computes them (every 2 s, like a worker's tick under Wasm) even while
    /// no worker has a stream to carry its own timer.
    fn refresh_gauges(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let store = ProcessStore::global();
        let layout = Layout::from_config(&self.config.cache);
        let names = KeyNames::new(&layout);
        let hints = WayHints::new(layout.capacity());
        let occupancy = L1Cache::new(store, &layout, &names, &hints).occupancy(now);
        self.metrics.record(MetricKind::Gauge, Gauge::L1Entries.name(), occupancy.entries);
        self.metrics.record(MetricKind::Gauge, Gauge::L1Bytes.name(), occupancy.bytes);
        let limits = &self.config.rate_limit;
        if limits.enabled {
            let identities = LimitTable::new(store, limits.max_identities).tracked(&limits.limits, now);
            self.metrics.record(MetricKind::Gauge, Gauge::RatelimitIdentities.name(), identities);
        }
    }
}

/// Every configuration not yet destroyed (for the gauge refresh).
static LIVE: Mutex<Vec<Weak<Factory>>> = Mutex::new(Vec::new());

/// Refreshes the gauges of every live configuration (called by the ticker thread).
pub fn refresh_gauges() {
    let live: Vec<Arc<Factory>> = {
        let mut live = lock(&LIVE);
        live.retain(|f| f.strong_count() > 0);
        live.iter().filter_map(Weak::upgrade).collect()
    };
    for factory in live.iter().filter(|f| !f.is_retired()) {
        factory.refresh_gauges();
    }
}

/// Has the stats idle workers parked flushed by the main thread, for every live configuration
/// (called by the ticker thread).
pub fn schedule_parked_stats_flushes() {
    let live: Vec<Arc<Factory>> = lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    for factory in live.iter().filter(|f| !f.is_retired()) {
        factory.schedule_parked_stats_flush();
    }
}

/// Reports the hits idle workers parked, for every live configuration (called by the ticker
/// thread).
pub fn report_parked_hits() {
    let live: Vec<Arc<Factory>> = lock(&LIVE).iter().filter_map(Weak::upgrade).collect();
    for factory in live.iter().filter(|f| !f.is_retired()) {
        factory.report_parked();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every value behind these locks is whole between statements: keep going after a panic.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
