use serde::Serialize;

/// One model served by one provider: the unit anomalies are detected on and routing acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SeriesKey {
    pub model: String,
    pub provider: String,
}

/// What one closed 10 s window says about one series, all cache statuses and Envoys merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowSummary {
    pub series: SeriesKey,
    /// Start of the window, Unix milliseconds.
    pub start_ms: i64,
    pub window_secs: u32,
    pub requests: u64,
    /// Requests answered with a 5xx, a 429 or a local error (the filter's refusals excluded).
    pub errors: u64,
    /// Requests answered from any cache level.
    pub hits: u64,
    /// Latency percentiles in milliseconds, from the window's sketch; `None` with no requests.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_saved: u64,
}

impl WindowSummary {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / f64::from(self.window_secs.max(1))
    }
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.requests)
    }
    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.requests)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
