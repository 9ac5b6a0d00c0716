//! Anomaly detection over the fleet's closed 10 s windows: per model × provider, p95 latency,
//! error rate, hit rate and request rate against a robust baseline (`baseline`), judged with
//! hysteresis (`detector`, a pure state machine: summaries and `now` in, events out). The
//! thresholds are the model file's `anomalies` section (`config`). `log` keeps the events for
//! `GET /v1/events` and the gauges on `/metrics`; `webhook` posts them, off the loop.
mod baseline;
pub mod config;
mod detector;
mod metric;

pub use config::{AnomalyConfig, InvalidAnomalyConfig, Threshold};
pub use detector::{ActiveAnomaly, AnomalyEvent, ClearReason, Detector, EventKind, ALL_PROVIDERS};
pub use metric::Metric;
mod metrics;
mod service;
pub mod webhook;

pub use metrics::AnomalyMetrics;
pub use service::{feed_windows, now_ms, Anomalies};

/// Window feeds other modules' tests share.
#[cfg(test)]
pub(crate) use service::tests as tests_support;
