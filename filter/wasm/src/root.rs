//! Root context: parses the configuration (refusing invalid ones so Envoy keeps the previous
//! one), creates HTTP contexts, and runs the per-worker timer (coalescing deadlines, gauges).
use crate::host;
use crate::http::AurelisHttp;
use crate::metrics::{self, Metrics};
use crate::worker::Worker;
use aurelis_core::cache::{L1Cache, Layout, Lookup};
use aurelis_core::config::FilterConfig;
use aurelis_core::limits::LimitTable;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::rc::Rc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(50);
/// Gauges walk every L1 set's metadata: refresh them every this many ticks.
const GAUGE_EVERY_TICKS: u32 = 40;
/// Remembers the L1 shape last configured in this process, to free a replaced shape's memory.
const LAYOUT_KEY: &str = "aurelis.l1.layout";

/// Allocates each worker's number, to give it a shared queue of its own.
const WORKER_SEQ_KEY: &str = "aurelis.worker.seq";

#[derive(Default)]
pub struct AurelisRoot {
    worker: Option<Rc<Worker>>,
    ticks: u32,
    release_queue: Option<u32>,
}

impl AurelisRoot {
    /// Answers or resumes the waiters of every finished flight (see `worker`).
    fn release_finished(&self) {
        let Some(worker) = &self.worker else { return };
        let now = host::now_ms();
        for finished in worker.take_finished() {
            let entry = if finished.stored {
                match L1Cache::new(&host::HostStore, &worker.layout).lookup(&finished.key, now) {
                    Lookup::Hit { entry, .. } => Some(entry),
                    _ => None,
                }
            } else {
                None
            };
            let served = worker.release(finished, entry.as_ref(), now);
            metrics::increment(worker.metrics.coalesced, served);
        }
    }

    /// Sends the L2 stores requests queued (from here: a request's own calls die with it).
    fn send_l2_stores(&self) {
        let Some(worker) = &self.worker else { return };
        for store in worker.take_l2_stores() {
            if crate::l2::store(&worker.config.l2, worker.l2_authorization.as_deref(), &store).is_none() {
                worker.metrics.l2_store("error");
            }
        }
    }

    fn register_release_queue(&mut self) {
        if self.release_queue.is_some() {
            return;
        }
        let Some(n) = next_worker_number() else { return };
        self.release_queue = hostcalls::register_shared_queue(&format!("aurelis.release.{n}")).ok();
    }
}

fn next_worker_number() -> Option<u64> {
    for _ in 0..16 {
        let (value, cas) = hostcalls::get_shared_data(WORKER_SEQ_KEY).ok()?;
        let current = value.and_then(|v| v.try_into().ok()).map_or(0, u64::from_le_bytes);
        let next = current.wrapping_add(1);
        if hostcalls::set_shared_data(WORKER_SEQ_KEY, Some(&next.to_le_bytes()), cas).is_ok() {
            return Some(next);
        }
    }
    None
}

impl Context for AurelisRoot {
    /// An L2 store's answer (the only calls the root context makes).
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {
        let Some(worker) = &self.worker else { return };
        let ok = matches!(crate::l2::response_status(), Some(s) if (200..300).contains(&s));
        worker.metrics.l2_store(if ok { "ok" } else { "error" });
    }
}

impl RootContext for AurelisRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size).ok().flatten().unwrap_or_default();
        let config = match FilterConfig::from_json(&bytes) {
            Ok(config) => config,
            Err(err) => {
                host::log(LogLevel::Error, &format!("refusing filter configuration: {err}"));
                return false;
            }
        };
        // Envoy returns the existing id for a name defined before, so redefining is cheap.
        self.register_release_queue();
        // Read with every configuration; the value is Envoy's own environment, fixed for the
        // life of the Envoy process.
        let l2_authorization = crate::l2::authorization_from_env();
        let worker = Worker::new(config, Metrics::define_all(), self.release_queue, l2_authorization);
        free_replaced_layout(&worker.layout);
        host::log(
            LogLevel::Info,
            &format!(
                "aurelis: configured: L1 {} sets x {} ways, {} bytes, ttl {} s; L2 {}, API token {}",
                worker.layout.sets,
                worker.layout.ways,
                worker.config.cache.max_bytes,
                worker.config.cache.ttl_seconds,
                if worker.config.l2.enabled { "on" } else { "off" },
                if worker.l2_authorization.is_some() { "set" } else { "unset" },
            ),
        );
        self.worker = Some(Rc::new(worker));
        let _ = hostcalls::set_tick_period(TICK);
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        // The queue only wakes us; the flights themselves are in the worker's table.
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue_id) {}
        self.release_finished();
        self.send_l2_stores();
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            if worker.has_waiters() {
                worker.poll_remote_flights(host::now_ms());
            }
        }
        self.release_finished();
        self.send_l2_stores();
        let Some(worker) = &self.worker else { return };
        if worker.has_waiters() {
            let expired = worker.expire_waiters(host::now_ms());
            metrics::increment(worker.metrics.coalesce_timeouts, expired);
        }
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(GAUGE_EVERY_TICKS) {
            let occupancy = L1Cache::new(&host::HostStore, &worker.layout).occupancy(host::now_ms());
            metrics::record(worker.metrics.l1_entries, occupancy.entries);
            metrics::record(worker.metrics.l1_bytes, occupancy.bytes);
            let limits = &worker.config.rate_limit;
            if limits.enabled {
                let table = LimitTable::new(&host::HostStore, limits.max_identities);
                metrics::record(worker.metrics.ratelimit_identities, table.tracked(&limits.limits, host::now_ms()));
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(AurelisHttp::new(context_id, worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Shared data never frees keys, but a replaced L1 shape's values can be emptied. The first
/// worker to see a new shape does it; the others find the marker already updated.
fn free_replaced_layout(layout: &Layout) {
    let current = layout.namespace();
    let Ok((previous, cas)) = hostcalls::get_shared_data(LAYOUT_KEY) else { return };
    let previous = previous.and_then(|b| String::from_utf8(b).ok());
    if previous.as_deref() == Some(current.as_str()) {
        return;
    }
    if hostcalls::set_shared_data(LAYOUT_KEY, Some(current.as_bytes()), cas).is_err() {
        return;
    }
    if let Some(old) = previous.and_then(|ns| parse_namespace(&ns)) {
        L1Cache::new(&host::HostStore, &old).clear();
    }
}

/// Rebuilds a layout from its namespace (`aurelis.l1.<sets>x<ways>.<budget>`).
fn parse_namespace(ns: &str) -> Option<Layout> {
    let rest = ns.strip_prefix("aurelis.l1.")?;
    let (shape, budget) = rest.split_once('.')?;
    let (sets, ways) = shape.split_once('x')?;
    Some(Layout {
        sets: sets.parse().ok()?,
        ways: ways.parse().ok()?,
        set_budget_bytes: budget.parse().ok()?,
        max_entry_bytes: 0,
        ttl_ms: 0,
    })
}
