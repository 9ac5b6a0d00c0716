//! The fleet stats' own metrics (`aurelis_cp_fleet_stats_*`), pinned by a test in `fleetstats`.
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

pub(super) struct FleetStatsMetrics {
    /// Stats messages received (tests synchronise on it).
    pub(super) messages: IntCounter,
    /// Ingest errors by `reason`.
    pub(super) errors: IntCounterVec,
    /// Envoys whose stats are currently known.
    pub(super) envoys: IntGauge,
}

impl FleetStatsMetrics {
    pub(super) fn new(metrics: &crate::metrics::Metrics) -> FleetStatsMetrics {
        // Names and labels are constants: a rejection is a programming error, caught by tests.
        let messages = IntCounter::new(
            "aurelis_cp_fleet_stats_messages_total",
            "Stats messages received from Envoys' metrics-service sinks",
        )
        .unwrap_or_else(|_| crate::metrics::unreachable_metric());
        let errors = IntCounterVec::new(
            Opts::new("aurelis_cp_fleet_stats_errors_total", "Envoy stats not ingested, by reason"),
            &["reason"],
        )
        .unwrap_or_else(|_| crate::metrics::unreachable_metric());
        let envoys = IntGauge::new("aurelis_cp_fleet_stats_envoys", "Envoys whose stats the control plane holds")
            .unwrap_or_else(|_| crate::metrics::unreachable_metric());
        metrics.register(Box::new(messages.clone()));
        metrics.register(Box::new(errors.clone()));
        metrics.register(Box::new(envoys.clone()));
        FleetStatsMetrics { messages, errors, envoys }
    }
}
