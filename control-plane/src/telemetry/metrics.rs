//! The telemetry's own metrics (`aurelis_cp_telemetry_*`), served on the control plane's
//! `/metrics`; their names are pinned by a test in `telemetry`.
use prometheus::{IntCounter, IntCounterVec, Opts};

/// The telemetry's metrics, named `aurelis_cp_telemetry_*`.
pub(super) struct TelemetryMetrics {
    /// Records ingested (tests synchronise on it).
    pub(super) records: IntCounter,
    /// Records whose window had closed (counted in a later one).
    pub(super) late_records: IntCounter,
    pub(super) windows_closed: IntCounter,
    /// Store operations that failed, by `op` (`put`, `roll_up`, `prune`, `read`).
    pub(super) store_errors: IntCounterVec,
    /// Access log streams refused, by `reason` (the xDS admission reasons).
    pub(super) refused_streams: IntCounterVec,
}

impl TelemetryMetrics {
    pub(super) fn new(metrics: &crate::metrics::Metrics) -> TelemetryMetrics {
        // Names and labels are constants: a rejection is a programming error, caught by tests.
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|_| crate::metrics::unreachable_metric());
            metrics.register(Box::new(c.clone()));
            c
        };
        let by = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])
                .unwrap_or_else(|_| crate::metrics::unreachable_metric());
            metrics.register(Box::new(c.clone()));
            c
        };
        TelemetryMetrics {
            records: counter(
                "aurelis_cp_telemetry_records_total",
                "Per-request records ingested from Envoys' access logs",
            ),
            late_records: counter(
                "aurelis_cp_telemetry_late_records_total",
                "Records that arrived after their window closed (counted in a later window)",
            ),
            windows_closed: counter("aurelis_cp_telemetry_windows_closed_total", "10 s telemetry windows closed"),
            store_errors: by(
                "aurelis_cp_telemetry_store_errors_total",
                "Telemetry history operations that failed, by op",
                "op",
            ),
            refused_streams: by(
                "aurelis_cp_telemetry_refused_streams_total",
                "Access log streams refused (client identity), by reason",
                "reason",
            ),
        }
    }
}
