//! `aurelis_core::flow::Host` over proxy-wasm host calls: translation only. Every host call
//! goes through the Result-returning `hostcalls` functions (the SDK's trait helpers unwrap host
//! errors, and a panic would kill this worker's Wasm VM); a failure becomes the value the flow
//! expects (no data, `false`), never a panic.
use aurelis_core::cache::{SharedStore, StoreError};
use aurelis_core::flow::facts::NAMESPACE;
use aurelis_core::flow::stats::StatSink;
use aurelis_core::flow::{Facts, Host, LogLevel};
use aurelis_core::http::{Callout, Headers, Reply};
use aurelis_core::warm::WorkerCall;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

thread_local! {
    /// Host calls made by this VM (the `count-host-calls` benchmark build publishes it).
    static HOST_CALLS: Cell<u64> = const { Cell::new(0) };
    /// Calls this VM's workers made with `dispatch_call`, by token, until their answer arrives
    /// (Envoy answers every call, a timeout or reset included, so entries do not pile up).
    static WORKER_CALLS: RefCell<HashMap<u32, WorkerCall>> = RefCell::new(HashMap::new());
}

/// What the root's call with `token` was, if a worker made it with `dispatch_call` (the other
/// root calls are L2 stores).
pub fn take_worker_call(token: u32) -> Option<WorkerCall> {
    WORKER_CALLS.with(|calls| calls.borrow_mut().remove(&token))
}

/// Counts one host call; compiled away unless the benchmark feature is on.
#[inline(always)]
fn counted<T>(call: T) -> T {
    if cfg!(feature = "count-host-calls") {
        HOST_CALLS.with(|c| c.set(c.get() + 1));
    }
    call
}

/// Envoy's process-wide shared data: one map for every worker of this VM id.
pub struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        match counted(hostcalls::get_shared_data(key)) {
            Ok((value, cas)) => Ok((value, cas)),
            Err(Status::NotFound) => Ok((None, None)),
            Err(_) => Err(StoreError::Host),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match counted(hostcalls::set_shared_data(key, Some(value), cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Host),
        }
    }
}

/// Stat ids by name, defined on first use (0, an id Envoy never hands out, makes updates no-ops).
#[derive(Default)]
pub struct MetricIds(RefCell<HashMap<String, u32>>);

impl MetricIds {
    pub fn id(&self, kind: MetricType, name: &str) -> u32 {
        if let Some(id) = self.0.borrow().get(name) {
            return *id;
        }
        let id = counted(hostcalls::define_metric(kind, name)).unwrap_or(0);
        self.0.borrow_mut().insert(name.to_string(), id);
        id
    }
}

/// The host as one callback sees it: the clock is read at most once per callback.
pub struct ProxyHost<'a> {
    store: HostStore,
    metrics: &'a MetricIds,
    /// This worker's shared queue, whose `on_queue_ready` is the flow's wake-up.
    wake_queue: Option<u32>,
    now: Option<u64>,
    /// In a root-context callback: the root's id, to switch back to after acting on a stream
    /// (a call made while another stream is the effective context would die with that stream).
    root: Option<u32>,
    switched: bool,
}

impl<'a> ProxyHost<'a> {
    /// The host for a stream's callback.
    pub fn new(metrics: &'a MetricIds, wake_queue: Option<u32>) -> Self {
        ProxyHost { store: HostStore, metrics, wake_queue, now: None, root: None, switched: false }
    }

    /// The host for a root-context callback (timer, queue, store answers).
    pub fn for_root(metrics: &'a MetricIds, wake_queue: Option<u32>, root: u32) -> Self {
        ProxyHost { root: Some(root), ..ProxyHost::new(metrics, wake_queue) }
    }

    /// Publishes the host-call count (benchmark build only).
    pub fn flush_host_calls(&mut self) {
        if cfg!(feature = "count-host-calls") {
            let calls = HOST_CALLS.with(|c| c.replace(0));
            self.counter_add("aurelis_host_calls_total", calls);
        }
    }
}

fn get_headers(map: MapType) -> Headers {
    Headers::from(counted(hostcalls::get_map(map)).unwrap_or_default())
}

fn get_buffer(buffer: BufferType, size: usize) -> Option<Vec<u8>> {
    counted(hostcalls::get_buffer(buffer, 0, size)).ok().flatten()
}

fn to_pairs<K: AsRef<str>>(headers: &[(K, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(k, v)| (k.as_ref(), v.as_str())).collect()
}

impl StatSink for ProxyHost<'_> {
    fn counter_add(&mut self, name: &str, by: u64) {
        let id = self.metrics.id(MetricType::Counter, name);
        if id != 0 && by > 0 {
            let _ = counted(hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX)));
        }
    }

    fn gauge_set(&mut self, name: &str, value: u64) {
        let id = self.metrics.id(MetricType::Gauge, name);
        if id != 0 {
            let _ = counted(hostcalls::record_metric(id, value));
        }
    }

    fn histogram_record(&mut self, name: &str, value: u64) {
        let id = self.metrics.id(MetricType::Histogram, name);
        if id != 0 {
            let _ = counted(hostcalls::record_metric(id, value));
        }
    }
}

impl Host for ProxyHost<'_> {
    type Store = HostStore;

    fn store(&self) -> &HostStore {
        &self.store
    }

    /// Wall-clock milliseconds; 0 if the host cannot tell (entries then look fresh only to
    /// readers with the same broken clock, which is harmless).
    fn now_ms(&mut self) -> u64 {
        *self.now.get_or_insert_with(|| {
            counted(hostcalls::get_current_time())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64)
        })
    }

    fn request_headers(&mut self) -> Headers {
        get_headers(MapType::HttpRequestHeaders)
    }

    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        get_buffer(BufferType::HttpRequestBody, size)
    }

    fn response_headers(&mut self) -> Headers {
        get_headers(MapType::HttpResponseHeaders)
    }

    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        get_buffer(BufferType::HttpResponseBody, size)
    }

    fn metadata_string(&mut self, path: &[&str]) -> Option<String> {
        // Envoy walks `metadata.filter_metadata.<namespace>.<key>...` into the Struct and
        // returns a string leaf as its bytes.
        let mut property = vec!["metadata", "filter_metadata"];
        property.extend_from_slice(path);
        let bytes = counted(hostcalls::get_property(property)).ok().flatten()?;
        String::from_utf8(bytes).ok()
    }

    fn client_address(&mut self) -> Option<String> {
        let bytes = counted(hostcalls::get_property(vec!["source", "address"])).ok().flatten()?;
        let address = String::from_utf8(bytes).ok()?;
        let host = match address.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
            _ => address,
        };
        Some(host.trim_start_matches('[').trim_end_matches(']').to_string())
    }

    fn callout_status(&mut self) -> Option<u16> {
        counted(hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status"))
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok())
    }

    fn callout_body(&mut self, size: usize) -> Option<Vec<u8>> {
        get_buffer(BufferType::HttpCallResponseBody, size)
    }

    fn callout_header(&mut self, name: &str) -> Option<String> {
        counted(hostcalls::get_map_value(MapType::HttpCallResponseHeaders, name)).ok().flatten()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let _ = counted(hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value));
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        let _ = counted(hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)));
    }

    fn send_reply(&mut self, reply: &Reply) -> bool {
        counted(hostcalls::send_http_response(u32::from(reply.status), to_pairs(&reply.headers), Some(&reply.body)))
            .is_ok()
    }

    fn resume(&mut self) {
        let _ = counted(hostcalls::resume_http_request());
    }

    fn dispatch(&mut self, callout: &Callout) -> bool {
        let timeout = Duration::from_millis(callout.timeout_ms);
        let headers = to_pairs(&callout.headers);
        counted(hostcalls::dispatch_http_call(&callout.cluster, headers, callout.body.as_deref(), vec![], timeout))
            .is_ok()
    }

    fn send_reply_to(&mut self, stream: u32, reply: &Reply) -> bool {
        self.switched = true;
        counted(hostcalls::set_effective_context(stream)).is_ok() && self.send_reply(reply)
    }

    fn resume_stream(&mut self, stream: u32) {
        self.switched = true;
        if counted(hostcalls::set_effective_context(stream)).is_ok() {
            self.resume();
        }
    }

    fn wake_worker(&mut self) {
        if let Some(queue) = self.wake_queue {
            let _ = counted(hostcalls::enqueue_shared_queue(queue, Some(b"wake")));
        }
    }

    fn dispatch_from_worker(&mut self, callout: &Callout) -> bool {
        if let (Some(root), true) = (self.root, self.switched) {
            self.switched = counted(hostcalls::set_effective_context(root)).is_err();
        }
        self.dispatch(callout)
    }

    fn dispatch_call(&mut self, call: WorkerCall, callout: &Callout) -> bool {
        if let (Some(root), true) = (self.root, self.switched) {
            self.switched = counted(hostcalls::set_effective_context(root)).is_err();
        }
        let timeout = Duration::from_millis(callout.timeout_ms);
        let headers = to_pairs(&callout.headers);
        match counted(hostcalls::dispatch_http_call(
            &callout.cluster,
            headers,
            callout.body.as_deref(),
            vec![],
            timeout,
        )) {
            Ok(token) => {
                WORKER_CALLS.with(|calls| calls.borrow_mut().insert(token, call));
                true
            }
            Err(_) => false,
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => proxy_wasm::types::LogLevel::Debug,
            LogLevel::Info => proxy_wasm::types::LogLevel::Info,
            LogLevel::Warn => proxy_wasm::types::LogLevel::Warn,
            LogLevel::Error => proxy_wasm::types::LogLevel::Error,
        };
        let _ = counted(hostcalls::log(level, message));
    }

    /// One filter-state object, `wasm.aurelis` (a `Struct`; see `facts`): one host call.
    fn publish_facts(&mut self, facts: &Facts) {
        let _ = counted(hostcalls::set_property(vec![NAMESPACE], Some(&facts.to_struct_proto())));
    }
}
