//! The root context: parses the configuration (refusing an invalid one, so Envoy keeps the
//! previous one), creates stream contexts, and turns the worker's own callbacks (timer, queue,
//! L2 store answers) into `Worker` events.
use crate::host::{MetricIds, ProxyHost};
use crate::stream::AurelisStream;
use aurelis_core::cache::l2::L2Secrets;
use aurelis_core::config::FilterConfig;
use aurelis_core::flow::{stats, workers, Host, LogLevel, Worker};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MetricType};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(50);
/// Allocates each root a number, to give it a shared queue of its own.
const ROOT_SEQ_KEY: &str = "aurelis.worker.seq";

thread_local! {
    /// This VM serves requests and was counted as a worker (once per VM, across configurations).
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// What a worker's contexts share: the flow's worker state, stat ids and the wake-up queue.
pub struct Shared {
    pub worker: Worker,
    pub metrics: MetricIds,
    pub wake_queue: Option<u32>,
}

impl Shared {
    pub fn host(&self) -> ProxyHost<'_> {
        ProxyHost::new(&self.metrics, self.wake_queue)
    }
}

pub struct AurelisRoot {
    id: u32,
    shared: Option<Rc<Shared>>,
    /// Workers of replaced configurations whose streams are still running: they keep their
    /// timer until the last stream is gone, so their waiters are still released.
    retired: Vec<Rc<Shared>>,
    wake_queue: Option<u32>,
}

impl AurelisRoot {
    pub fn new(id: u32) -> Self {
        AurelisRoot { id, shared: None, retired: Vec::new(), wake_queue: None }
    }

    fn with_worker(&self, event: impl FnOnce(&Worker, &mut ProxyHost<'_>)) {
        let Some(shared) = &self.shared else { return };
        let mut host = ProxyHost::for_root(&shared.metrics, shared.wake_queue, self.id);
        event(&shared.worker, &mut host);
    }

    /// The same event for every worker with streams: the current one and the retired ones.
    fn with_every_worker(&mut self, event: impl Fn(&Worker, &mut ProxyHost<'_>)) {
        self.retired.retain(|shared| Rc::strong_count(shared) > 1);
        for shared in self.retired.iter().chain(self.shared.as_ref()) {
            let mut host = ProxyHost::for_root(&shared.metrics, shared.wake_queue, self.id);
            event(&shared.worker, &mut host);
        }
    }
}

impl Context for AurelisRoot {
    /// The answer to a worker's call (warming, hit report) or, for any other token, to an L2
    /// store.
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        match crate::host::take_worker_call(token_id) {
            Some(call) => self.with_worker(|worker, host| worker.on_call_answer(call, host, body_size)),
            None => self.with_worker(|worker, host| worker.on_store_answer(host.callout_status())),
        }
    }
}

impl RootContext for AurelisRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size).ok().flatten().unwrap_or_default();
        let config = match FilterConfig::from_json(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log(LogLevel::Error, &format!("refusing filter configuration: {err}"));
                return false;
            }
        };
        if self.wake_queue.is_none() {
            self.wake_queue = register_wake_queue();
        }
        let previous = self.shared.as_ref().map(|shared| &shared.worker);
        let worker = Worker::continuing(config, l2_secrets_from_env(), previous);
        let shared = Shared { worker, metrics: MetricIds::default(), wake_queue: self.wake_queue };
        define_stats(&shared.metrics);
        if !crate::facts::declare_property() {
            log(LogLevel::Info, "aurelis: the facts property was declared before (or cannot be)");
        }
        shared.worker.on_configure(&mut shared.host());
        log(LogLevel::Info, &format!("aurelis: configured: {}", shared.worker.describe()));
        if let Some(replaced) = self.shared.replace(Rc::new(shared)) {
            self.retired.push(replaced);
        }
        let _ = hostcalls::set_tick_period(TICK);
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        // The queue only wakes us; what to do is in the worker's state.
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue_id) {}
        self.with_every_worker(|worker, host| worker.on_wake(host));
    }

    fn on_tick(&mut self) {
        self.with_every_worker(|worker, host| worker.on_tick(host));
        self.with_worker(|_, host| host.flush_host_calls());
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        if !REGISTERED.with(Cell::get) {
            REGISTERED.with(|r| r.set(true));
            let _ = workers::register(&crate::host::HostStore);
        }
        Some(Box::new(AurelisStream::new(context_id, shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn log(level: LogLevel, message: &str) {
    let level =
        if level == LogLevel::Error { proxy_wasm::types::LogLevel::Error } else { proxy_wasm::types::LogLevel::Info };
    let _ = hostcalls::log(level, message);
}

/// Defines the always-present stats, so they show (at 0) before anything happened.
fn define_stats(metrics: &MetricIds) {
    let (counters, gauges, histograms) = stats::predefined();
    for counter in counters {
        metrics.id(MetricType::Counter, &counter.name());
    }
    for gauge in gauges {
        metrics.id(MetricType::Gauge, gauge.name());
    }
    for histogram in histograms {
        metrics.id(MetricType::Histogram, histogram.name());
    }
}

fn register_wake_queue() -> Option<u32> {
    for _ in 0..16 {
        let (value, cas) = hostcalls::get_shared_data(ROOT_SEQ_KEY).ok()?;
        let n = value.and_then(|v| v.try_into().ok()).map_or(0, u64::from_le_bytes).wrapping_add(1);
        if hostcalls::set_shared_data(ROOT_SEQ_KEY, Some(&n.to_le_bytes()), cas).is_ok() {
            return hostcalls::register_shared_queue(&format!("aurelis.release.{n}")).ok();
        }
    }
    None
}

/// The L2 secrets, read once per configuration from the VM's environment: Envoy exposes its
/// own `AURELIS_L2_TOKEN` and `AURELIS_L2_SIGNING_KEY` there when the Wasm `vm_config` lists
/// them in `environment_variables.host_env_keys` (WASI `environ_get`). Never logged.
fn l2_secrets_from_env() -> L2Secrets {
    L2Secrets::from_env(|message| log(LogLevel::Warn, message))
}
