//! The four things judged per series and window, how each is read from a window summary, and
//! which way is bad.
use super::config::{AnomalyConfig, Threshold};
use crate::telemetry::WindowSummary;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Milliseconds.
    P95LatencyMs,
    ErrorRate,
    HitRate,
    /// Requests per second.
    RequestRate,
}

/// Which departures from the baseline are anomalies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    Above,
    Below,
    Either,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::P95LatencyMs, Metric::ErrorRate, Metric::HitRate, Metric::RequestRate];

    /// The label on metrics and the `metric` field of events.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::P95LatencyMs => "p95_latency_ms",
            Metric::ErrorRate => "error_rate",
            Metric::HitRate => "hit_rate",
            Metric::RequestRate => "request_rate",
        }
    }

    pub fn bad(self) -> Bad {
        match self {
            Metric::P95LatencyMs | Metric::ErrorRate => Bad::Above,
            Metric::HitRate => Bad::Below,
            // A surge and a collapse are both worth a look.
            Metric::RequestRate => Bad::Either,
        }
    }

    pub fn threshold(self, config: &AnomalyConfig) -> &Threshold {
        match self {
            Metric::P95LatencyMs => &config.p95_latency,
            Metric::ErrorRate => &config.error_rate,
            Metric::HitRate => &config.hit_rate,
            Metric::RequestRate => &config.request_rate,
        }
    }

    /// The window's value, or `None` when the window says nothing about it: ratios and
    /// percentiles of a handful of requests are noise.
    pub fn value(self, window: &WindowSummary, min_requests: u64) -> Option<f64> {
        if self == Metric::RequestRate {
            return Some(window.requests_per_second());
        }
        if window.requests < min_requests.max(1) {
            return None;
        }
        match self {
            Metric::P95LatencyMs => window.p95_ms.filter(|v| v.is_finite()),
            Metric::ErrorRate => Some(window.error_rate()),
            Metric::HitRate => Some(window.hit_rate()),
            Metric::RequestRate => None,
        }
    }
}
