//! Envoy's dynamic-module C ABI: the only module with `unsafe` code.
//!
//! `ffi` declares the few Envoy callbacks we call (names and signatures from Envoy's
//! `source/extensions/dynamic_modules/abi/abi.h`, checked against the symbols the pinned
//! Envoy 1.40 exports and by loading the module in it); `hooks` exports the event hooks Envoy
//! calls. Everything else in the crate sees only the safe handles below: a handle is a pointer
//! Envoy owns, valid for as long as the comment on its type says, and used only on the thread
//! the comment names.
#![allow(unsafe_code)]

mod ffi;
mod hooks;

use aurelis_core::http::Headers;
use ffi::{EnvoyBuffer, EnvoyHttpHeader, ModuleBuffer, ModuleHttpHeader};
use std::ffi::c_void;

/// The ABI version this module is written against. Envoy 1.40 reports `v0.2.0` and warns
/// (but still loads) on a mismatch; the end-to-end test `native_abi` fails with a clear message
/// when the Envoy in use reports another one.
pub const ABI_VERSION: &str = "v0.2.0";
/// The same, NUL-terminated, for `envoy_dynamic_module_on_program_init`.
const ABI_VERSION_C: &[u8] = b"v0.2.0\0";

/// Header maps (`envoy_dynamic_module_type_http_header_type`).
#[derive(Debug, Clone, Copy)]
pub enum HeaderMap {
    Request = 0,
    Response = 2,
}

/// Bodies (`envoy_dynamic_module_type_http_body_type`).
#[derive(Debug, Clone, Copy)]
enum Body {
    ReceivedRequest = 0,
    BufferedRequest = 1,
    ReceivedResponse = 2,
}

/// `envoy_dynamic_module_type_attribute_id_SourceAddress` ("source.address", `ip:port`).
const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;
/// `envoy_dynamic_module_type_metadata_source_Dynamic`.
const METADATA_DYNAMIC: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
const CALLOUT_INIT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_result_Success`.
const CALLOUT_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;

/// Log levels (`envoy_dynamic_module_type_log_level`).
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// Metric kinds a filter configuration defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

fn module_buffer(bytes: &[u8]) -> ModuleBuffer {
    ModuleBuffer { ptr: bytes.as_ptr(), length: bytes.len() }
}

/// A null buffer: "no value" (removes a header; no response details).
fn null_buffer() -> ModuleBuffer {
    ModuleBuffer { ptr: std::ptr::null(), length: 0 }
}

fn module_headers(headers: &[(&str, &str)]) -> Vec<ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader {
            key_ptr: k.as_ptr(),
            key_length: k.len(),
            value_ptr: v.as_ptr(),
            value_length: v.len(),
        })
        .collect()
}

/// Borrows a buffer Envoy owns (valid during the current hook, so only within it).
fn envoy_slice(ptr: *const u8, length: usize) -> &'static [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: Envoy hands out `ptr`/`length` of a live buffer it owns for the duration of the
    // current hook (abi.h, "OWNERSHIP"). The `'static` is a lie the callers keep honest: every
    // caller copies the bytes out before the hook returns.
    unsafe { std::slice::from_raw_parts(ptr, length) }
}

fn envoy_string(ptr: *const u8, length: usize) -> Option<String> {
    std::str::from_utf8(envoy_slice(ptr, length)).ok().map(str::to_string)
}

/// Writes a message to Envoy's log (`[dynamic_modules]`). Any thread.
pub fn log(level: Level, message: &str) {
    // SAFETY: the buffer points into `message`, alive for the call; Envoy copies it.
    unsafe { ffi::envoy_dynamic_module_callback_log(level as u32, module_buffer(message.as_bytes())) }
}

/// One HTTP stream's filter in Envoy (`DynamicModuleHttpFilter`). Valid from
/// `on_http_filter_new` until `on_http_filter_destroy`, on that stream's worker thread only
/// (the type is neither `Send` nor `Sync`: it holds a raw pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter(*mut c_void);

impl Filter {
    /// Every header of `map`, in one read (two calls: size, then the array), copied into one
    /// buffer (`Headers`). Headers whose name or value is not UTF-8 are left out.
    pub fn headers(self, map: HeaderMap) -> Headers {
        // SAFETY: `self.0` is a live filter on this thread (type invariant).
        let count = unsafe { ffi::envoy_dynamic_module_callback_http_get_headers_size(self.0, map as u32) };
        if count == 0 {
            return Headers::default();
        }
        let empty =
            EnvoyHttpHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 };
        let mut raw = vec![empty; count];
        // SAFETY: `raw` has room for the `count` entries Envoy just reported for this map.
        if !unsafe { ffi::envoy_dynamic_module_callback_http_get_headers(self.0, map as u32, raw.as_mut_ptr()) } {
            return Headers::default();
        }
        let bytes = raw.iter().map(|h| h.key_length + h.value_length).sum();
        let pairs =
            raw.iter().map(|h| (envoy_slice(h.key_ptr, h.key_length), envoy_slice(h.value_ptr, h.value_length)));
        Headers::from_bytes(count, bytes, pairs)
    }

    /// The first value of one header of `map`.
    pub fn header(self, map: HeaderMap, name: &str) -> Option<String> {
        let mut out = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
        // SAFETY: live filter (type invariant); `out` is a valid place to write to, the count
        // pointer may be null (abi.h: optional).
        let found = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_header(
                self.0,
                map as u32,
                module_buffer(name.as_bytes()),
                &mut out,
                0,
                std::ptr::null_mut(),
            )
        };
        (found && !out.ptr.is_null()).then(|| envoy_string(out.ptr, out.length)).flatten()
    }

    /// Sets (or with `None` removes) one header of `map`.
    pub fn set_header(self, map: HeaderMap, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or_else(null_buffer, |v| module_buffer(v.as_bytes()));
        // SAFETY: live filter (type invariant); both buffers outlive the call, Envoy copies them.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_header(
                self.0,
                map as u32,
                module_buffer(name.as_bytes()),
                value,
            )
        }
    }

    /// The whole request body read so far: what earlier callbacks buffered plus this one's data.
    /// (When a filter ahead of us buffered the whole body, the received data *is* the buffered
    /// body: then only that.)
    pub fn request_body(self) -> Option<Vec<u8>> {
        // SAFETY: live filter (type invariant).
        let same = unsafe { ffi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0) };
        let mut body = if same { Vec::new() } else { self.body(Body::BufferedRequest)? };
        body.extend(self.body(Body::ReceivedRequest)?);
        Some(body)
    }

    /// Bytes of request body read so far (as `request_body` would return).
    pub fn request_body_size(self) -> usize {
        // SAFETY: live filter (type invariant); these only read sizes.
        unsafe {
            let received = ffi::envoy_dynamic_module_callback_http_get_body_size(self.0, Body::ReceivedRequest as u32);
            if ffi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0) {
                received
            } else {
                received + ffi::envoy_dynamic_module_callback_http_get_body_size(self.0, Body::BufferedRequest as u32)
            }
        }
    }

    /// This callback's response data (the chunk passing by).
    pub fn response_chunk(self) -> Option<Vec<u8>> {
        self.body(Body::ReceivedResponse)
    }

    pub fn response_chunk_size(self) -> usize {
        // SAFETY: live filter (type invariant).
        unsafe { ffi::envoy_dynamic_module_callback_http_get_body_size(self.0, Body::ReceivedResponse as u32) }
    }

    fn body(self, which: Body) -> Option<Vec<u8>> {
        // SAFETY: live filter (type invariant).
        let count = unsafe { ffi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, which as u32) };
        if count == 0 {
            return Some(Vec::new());
        }
        let mut chunks = vec![EnvoyBuffer { ptr: std::ptr::null(), length: 0 }; count];
        // SAFETY: `chunks` has room for the `count` chunks Envoy just reported.
        if !unsafe {
            ffi::envoy_dynamic_module_callback_http_get_body_chunks(self.0, which as u32, chunks.as_mut_ptr())
        } {
            return None;
        }
        let mut body = Vec::with_capacity(chunks.iter().map(|c| c.length).sum());
        for chunk in &chunks {
            body.extend_from_slice(envoy_slice(chunk.ptr, chunk.length));
        }
        Some(body)
    }

    /// A string in the stream's dynamic metadata: `namespace` -> top-level `key`.
    pub fn metadata_string(self, namespace: &str, key: &str) -> Option<String> {
        let mut out = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
        // SAFETY: live filter (type invariant); `out` is a valid place for Envoy to write to.
        let found = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_metadata_string(
                self.0,
                METADATA_DYNAMIC,
                module_buffer(namespace.as_bytes()),
                module_buffer(key.as_bytes()),
                &mut out,
            )
        };
        found.then(|| envoy_string(out.ptr, out.length)).flatten()
    }

    /// Sets string values under `namespace` in the stream's dynamic metadata, in one call.
    pub fn set_metadata_strings(self, namespace: &str, pairs: &[(&str, &str)]) {
        if pairs.is_empty() {
            return;
        }
        let raw = module_headers(pairs);
        // SAFETY: live filter (type invariant); `raw` and the strings it points into outlive the
        // call (Envoy copies them into the metadata).
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch(
                self.0,
                module_buffer(namespace.as_bytes()),
                raw.as_ptr(),
                raw.len(),
            )
        }
    }

    /// Sets a number under `namespace` in the stream's dynamic metadata.
    pub fn set_metadata_number(self, namespace: &str, key: &str, value: f64) {
        let (namespace, key) = (module_buffer(namespace.as_bytes()), module_buffer(key.as_bytes()));
        // SAFETY: live filter (type invariant); the buffers outlive the call (Envoy copies them).
        unsafe { ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_number(self.0, namespace, key, value) }
    }

    /// Sets a flag under `namespace` in the stream's dynamic metadata.
    pub fn set_metadata_flag(self, namespace: &str, key: &str, value: bool) {
        let (namespace, key) = (module_buffer(namespace.as_bytes()), module_buffer(key.as_bytes()));
        // SAFETY: live filter (type invariant); the buffers outlive the call (Envoy copies them).
        unsafe { ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(self.0, namespace, key, value) }
    }

    /// `source.address` (`ip:port`).
    pub fn source_address(self) -> Option<String> {
        let mut out = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
        // SAFETY: live filter (type invariant); `out` is a valid place for Envoy to write to.
        let found = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                ATTRIBUTE_SOURCE_ADDRESS,
                &mut out,
            )
        };
        found.then(|| envoy_string(out.ptr, out.length)).flatten()
    }

    /// Answers the stream locally.
    pub fn send_response(self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut raw = module_headers(headers);
        // SAFETY: live filter (type invariant); `raw` and the strings it points into outlive
        // the call, and Envoy copies them.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                module_buffer(body),
                null_buffer(),
            )
        }
    }

    /// Makes Envoy match the route again (after a request header the routes look at changed;
    /// proxy-wasm does this implicitly on every request-header change, this ABI does not).
    pub fn clear_route_cache(self) {
        // SAFETY: live filter (type invariant).
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    /// Lets a paused request go on.
    pub fn continue_decoding(self) {
        // SAFETY: live filter (type invariant).
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// Starts a callout whose answer arrives as this stream's `on_http_filter_http_callout_done`.
    pub fn callout(self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> bool {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: live filter (type invariant); every buffer outlives the call (Envoy copies
        // the request), `id` is a valid place to write to.
        let result = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                module_buffer(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                module_buffer(body),
                timeout_ms,
            )
        };
        result == CALLOUT_INIT_SUCCESS
    }

    /// A scheduler that runs `on_http_filter_scheduled` on this stream's worker thread.
    pub fn scheduler(self) -> Option<Scheduler> {
        // SAFETY: live filter (type invariant). The result is owned by us (deleted on drop).
        let ptr = unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) };
        (!ptr.is_null()).then_some(Scheduler(ptr))
    }
}

/// A stream filter's scheduler (`DynamicModuleHttpFilterScheduler`), owned by us: deleted on
/// drop. Committing is safe from any thread and a no-op once its filter is gone (abi.h); the
/// owner deletes it before the filter is destroyed and never commits after that.
#[derive(Debug)]
pub struct Scheduler(*mut c_void);

// SAFETY: Envoy documents `scheduler_commit` as callable from any thread; the pointer is only
// deleted by `Drop`, which needs ownership, so no commit can race it.
unsafe impl Send for Scheduler {}

impl Scheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: `self.0` came from `scheduler_new` and is not deleted yet (deleted in Drop).
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by `scheduler_new`, deleted exactly once here.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

/// One filter configuration in Envoy (`DynamicModuleHttpFilterConfig`). Valid from
/// `on_http_filter_config_new` until `on_http_filter_config_destroy`. Metric definitions only
/// during `on_http_filter_config_new` (Envoy freezes them afterwards); metric updates from any
/// thread (Envoy's stats are atomic); callouts only on the main thread (the config keeps its
/// callouts in an unsynchronized map).
#[derive(Debug, Clone, Copy)]
pub struct Config(*mut c_void);

// SAFETY: see the type's comment: the only calls made off the main thread are metric updates,
// which Envoy implements with atomic counters/gauges/histograms.
unsafe impl Send for Config {}
// SAFETY: as above.
unsafe impl Sync for Config {}

impl Config {
    /// Defines a metric family with these label names; its id, or `None` if Envoy refused.
    pub fn define(self, kind: MetricKind, name: &str, labels: &[&str]) -> Option<usize> {
        let mut raw: Vec<ModuleBuffer> = labels.iter().map(|l| module_buffer(l.as_bytes())).collect();
        let labels_ptr = if raw.is_empty() { std::ptr::null_mut() } else { raw.as_mut_ptr() };
        let mut id = 0usize;
        let name = module_buffer(name.as_bytes());
        // SAFETY: live config (type invariant), called from `on_http_filter_config_new`; the
        // buffers outlive the call (Envoy interns the names), `id` is a valid place to write.
        let result = unsafe {
            match kind {
                MetricKind::Counter => ffi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                    self.0,
                    name,
                    labels_ptr,
                    raw.len(),
                    &mut id,
                ),
                MetricKind::Gauge => ffi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                    self.0,
                    name,
                    labels_ptr,
                    raw.len(),
                    &mut id,
                ),
                MetricKind::Histogram => ffi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                    self.0,
                    name,
                    labels_ptr,
                    raw.len(),
                    &mut id,
                ),
            }
        };
        (result == METRICS_SUCCESS).then_some(id)
    }

    /// Adds to a counter, sets a gauge or records a histogram value. `labels` must have as many
    /// values as the family has label names (the caller checks).
    pub fn record(self, kind: MetricKind, id: usize, labels: &[&str], value: u64) -> bool {
        let mut raw: Vec<ModuleBuffer> = labels.iter().map(|l| module_buffer(l.as_bytes())).collect();
        let labels_ptr = if raw.is_empty() { std::ptr::null_mut() } else { raw.as_mut_ptr() };
        let n = raw.len();
        // SAFETY: live config (type invariant); metric updates are thread-safe in Envoy; the
        // label buffers outlive the call.
        let result = unsafe {
            match kind {
                MetricKind::Counter => ffi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                    self.0, id, labels_ptr, n, value,
                ),
                MetricKind::Gauge => {
                    ffi::envoy_dynamic_module_callback_http_filter_config_set_gauge(self.0, id, labels_ptr, n, value)
                }
                MetricKind::Histogram => ffi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                    self.0, id, labels_ptr, n, value,
                ),
            }
        };
        result == METRICS_SUCCESS
    }

    /// A callout owned by the configuration (answer: `on_http_filter_config_http_callout_done`,
    /// with the id returned here). Main thread only (see the type's comment).
    pub fn callout(self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Option<u64> {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: live config on the main thread; buffers outlive the call (Envoy copies the
        // request); `id` is a valid place to write to.
        let result = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                module_buffer(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                module_buffer(body),
                timeout_ms,
            )
        };
        (result == CALLOUT_INIT_SUCCESS).then_some(id)
    }

    /// A scheduler that runs `on_http_filter_config_scheduled` on the main thread.
    pub fn scheduler(self) -> Option<ConfigScheduler> {
        // SAFETY: live config (type invariant); the result is owned by us (deleted on drop).
        let ptr = unsafe { ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!ptr.is_null()).then_some(ConfigScheduler(ptr))
    }
}

/// A configuration's main-thread scheduler, owned by us (deleted on drop, which happens when
/// the configuration is destroyed, after every stream that could commit is gone).
#[derive(Debug)]
pub struct ConfigScheduler(*mut c_void);

// SAFETY: `scheduler_commit` posts to the main dispatcher and is callable from any thread;
// deletion needs ownership (Drop), so it cannot race a commit.
unsafe impl Send for ConfigScheduler {}
// SAFETY: as above; `commit` takes `&self` and Envoy synchronizes the post.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: created by `config_scheduler_new`, not deleted yet (deleted in Drop).
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event) }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: created by `config_scheduler_new`, deleted exactly once here.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// A callout's answer, copied out of Envoy's buffers during the hook.
#[derive(Debug, Default)]
pub struct CalloutAnswer {
    /// `None`: reset, timeout or no `:status`.
    pub status: Option<u16>,
    /// The other headers (lower-case names; those that are not UTF-8 are left out).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CalloutAnswer {
    /// Reads the answer Envoy hands to a `*_http_callout_done` hook.
    fn read(result: u32, headers: &[EnvoyHttpHeader], chunks: &[EnvoyBuffer]) -> Self {
        if result != CALLOUT_SUCCESS {
            return CalloutAnswer::default();
        }
        let status = headers
            .iter()
            .find(|h| envoy_slice(h.key_ptr, h.key_length) == b":status")
            .and_then(|h| envoy_string(h.value_ptr, h.value_length))
            .and_then(|s| s.parse().ok());
        let headers = headers
            .iter()
            .filter_map(|h| {
                let name = envoy_string(h.key_ptr, h.key_length)?;
                Some((name.to_ascii_lowercase(), envoy_string(h.value_ptr, h.value_length)?))
            })
            .collect();
        let mut body = Vec::new();
        for chunk in chunks {
            body.extend_from_slice(envoy_slice(chunk.ptr, chunk.length));
        }
        CalloutAnswer { status, headers, body }
    }
}
