//! The adaptive loops' metrics: what an autoscaler and a dashboard read.
use crate::metrics::{unreachable_metric, Metrics};
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};

pub struct AdaptiveMetrics {
    /// The weight pushed for each provider of each model (adaptive, pinned or the file's).
    pub routing_weight: IntGaugeVec,
    /// Weight changes by `cause` (`adaptive`, `pin`, `unpin`).
    pub weight_changes: IntCounterVec,
    /// Load-balancing switches pushed, by the policy switched to.
    pub balancing_changes: IntCounterVec,
    /// The scaling recommendation: how many gateway replicas the fleet should run.
    pub desired_replicas: IntGauge,
}

impl AdaptiveMetrics {
    pub fn new(metrics: &Metrics) -> AdaptiveMetrics {
        let routing_weight = IntGaugeVec::new(
            Opts::new("aurelis_cp_routing_weight", "Weight pushed to Envoy per model and provider"),
            &["model", "provider"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let weight_changes = IntCounterVec::new(
            Opts::new("aurelis_cp_routing_weight_changes_total", "Provider weight changes pushed, by cause"),
            &["cause"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let balancing_changes = IntCounterVec::new(
            Opts::new("aurelis_cp_balancing_changes_total", "Load-balancing policy switches pushed, by policy"),
            &["policy"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let desired_replicas = IntGauge::new(
            "aurelis_cp_desired_replicas",
            "Recommended number of gateway replicas (CPU, queueing and p95 against the scaling thresholds)",
        )
        .unwrap_or_else(|_| unreachable_metric());
        metrics.register(Box::new(routing_weight.clone()));
        metrics.register(Box::new(weight_changes.clone()));
        metrics.register(Box::new(desired_replicas.clone()));
        metrics.register(Box::new(balancing_changes.clone()));
        AdaptiveMetrics { routing_weight, weight_changes, balancing_changes, desired_replicas }
    }
}
