//! The mock's knobs and counters, shared by the server and the test that drives it.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// Delay before a model answer (a per-request `x-mock-latency-ms` header overrides it).
    pub latency_ms: u64,
    /// Delay between streamed tokens.
    pub per_token_latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Per-process, never reset: answer ids stay unique across `reset()` and across mock instances,
/// so a test can tell a cached answer (repeated id) from a fresh upstream one.
static SERIAL: AtomicU64 = AtomicU64::new(0);

pub struct MockState {
    latency_ms: AtomicU64,
    pub per_token_latency_ms: u64,
    requests: AtomicU64,
    by_path: Mutex<BTreeMap<String, u64>>,
    last: Mutex<Option<RecordedRequest>>,
    /// (status, remaining count) of injected failures.
    failures: Mutex<Option<(u16, u32)>>,
    /// The `retry-after` of an injected 429, in seconds.
    retry_after_s: AtomicU64,
}

impl MockState {
    pub fn new(config: MockConfig) -> MockState {
        MockState {
            latency_ms: AtomicU64::new(config.latency_ms),
            per_token_latency_ms: config.per_token_latency_ms,
            requests: AtomicU64::new(0),
            by_path: Mutex::default(),
            last: Mutex::default(),
            failures: Mutex::default(),
            retry_after_s: AtomicU64::new(1),
        }
    }

    /// Counts and records a model request; returns its process-wide serial number (1-based).
    pub fn record(&self, request: RecordedRequest) -> u64 {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let serial = SERIAL.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut by_path) = self.by_path.lock() {
            *by_path.entry(request.path.clone()).or_default() += 1;
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(request);
        }
        serial
    }

    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn by_path(&self) -> BTreeMap<String, u64> {
        self.by_path.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    pub fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        if let Ok(mut m) = self.by_path.lock() {
            m.clear();
        }
        if let Ok(mut f) = self.failures.lock() {
            *f = None;
        }
    }

    pub fn fail_next(&self, status: u16, count: u32) {
        if let Ok(mut f) = self.failures.lock() {
            *f = (count > 0).then_some((status, count));
        }
    }

    pub fn set_retry_after_s(&self, seconds: u64) {
        self.retry_after_s.store(seconds, Ordering::Relaxed);
    }

    pub fn retry_after_s(&self) -> u64 {
        self.retry_after_s.load(Ordering::Relaxed)
    }

    /// Takes one injected failure, if any is pending.
    pub fn take_failure(&self) -> Option<u16> {
        let mut f = self.failures.lock().ok()?;
        let (status, left) = (*f)?;
        *f = (left > 1).then_some((status, left - 1));
        Some(status)
    }

    pub fn latency_ms(&self) -> u64 {
        self.latency_ms.load(Ordering::Relaxed)
    }

    pub fn set_latency_ms(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::Relaxed);
    }
}
