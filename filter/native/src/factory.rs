//! One filter configuration (`on_http_filter_config_new` .. `_destroy`), shared by every worker
//! thread: the parsed configuration (refused when invalid, so Envoy keeps the previous one),
//! its metrics, and the queue of L2 stores the main thread sends.
//!
//! Why L2 stores go through the main thread: a store must outlive the request that filled it
//! (a callout made on a stream is cancelled when the stream ends), and Envoy's configuration
//! level callouts keep their state in an unsynchronized map, so they may only be made on one
//! thread. Workers queue the store and commit an event to the configuration's main-thread
//! scheduler; the main thread sends the queued stores and counts their answers.
use crate::abi::{self, ConfigScheduler, Level, MetricKind};
use crate::metrics::Metrics;
use crate::secrets;
use aurelis_core::config::FilterConfig;
use aurelis_core::flow::stats::Counter;
use aurelis_core::flow::Worker;
use aurelis_core::http::Callout;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bound on queued L2 stores (the core bounds its own queue the same way): beyond it a store
/// is dropped and counted, never buffered without limit.
const MAX_QUEUED_STORES: usize = 1024;

static GENERATIONS: AtomicU64 = AtomicU64::new(0);

pub struct Factory {
    /// Distinguishes configurations, so each worker thread keeps one core `Worker` per
    /// configuration it serves.
    pub generation: u64,
    pub config: FilterConfig,
    pub metrics: Metrics,
    handle: abi::Config,
    scheduler: Option<ConfigScheduler>,
    stores: Mutex<Vec<Callout>>,
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
        let describe = Worker::new(config.clone(), secrets::from_env()).describe();
        abi::log(Level::Info, &format!("aurelis: configured (native): {describe}"));
        Some(Arc::new(Factory {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            config,
            metrics,
            handle,
            scheduler: handle.scheduler(),
            stores: Mutex::default(),
            retired: AtomicBool::new(false),
        }))
    }

    /// Envoy destroyed the configuration: worker threads drop their `Worker` for it once its
    /// last stream is gone.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// From a worker thread: queues an L2 store for the main thread. `false` if it cannot be
    /// sent (no scheduler, or the queue is full: counted as dropped).
    pub fn queue_store(&self, callout: Callout) -> bool {
        let Some(scheduler) = &self.scheduler else { return false };
        let mut stores = self.stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if stores.len() >= MAX_QUEUED_STORES {
            drop(stores);
            self.count(Counter::L2Store("dropped"));
            return true;
        }
        stores.push(callout);
        let first = stores.len() == 1;
        drop(stores);
        if first {
            scheduler.commit(0);
        }
        true
    }

    /// On the main thread: sends every queued store.
    pub fn send_queued_stores(&self) {
        let stores = std::mem::take(&mut *self.stores.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for store in stores {
            let headers: Vec<(&str, &str)> = store.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let body = store.body.as_deref().unwrap_or_default();
            if !self.handle.callout(&store.cluster, &headers, body, store.timeout_ms) {
                self.count(Counter::L2Store("error"));
            }
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
}
