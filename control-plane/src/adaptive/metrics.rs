//! The adaptive loops' metrics: what an autoscaler and a dashboard read.
use crate::metrics::{unreachable_metric, Metrics};
use prometheus::{Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts};

pub struct AdaptiveMetrics {
    /// The weight pushed for each provider of each model (adaptive, pinned or the file's).
    pub routing_weight: IntGaugeVec,
    /// Weight changes by `cause` (`adaptive`, `pin`, `unpin`).
    pub weight_changes: IntCounterVec,
    /// Load-balancing switches pushed, by the policy switched to.
    pub balancing_changes: IntCounterVec,
    /// The scaling recommendation: how many gateway replicas the fleet should run.
    pub desired_replicas: IntGauge,
    /// The L1 budget (`filter.cache.max_bytes`) pushed now, lowered under heap pressure.
    pub l1_budget_bytes: IntGauge,
    /// The highest heap pressure an Envoy reported (share of its overload-manager budget).
    pub heap_pressure: Gauge,
    /// L1 budget steps by `direction` (`lowered`, `raised`).
    pub memory_steps: IntCounterVec,
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
        let l1_budget_bytes =
            IntGauge::new("aurelis_cp_l1_budget_bytes", "L1 budget pushed to the fleet (lowered under heap pressure)")
                .unwrap_or_else(|_| unreachable_metric());
        let heap_pressure = Gauge::new(
            "aurelis_cp_fleet_heap_pressure",
            "Highest heap pressure an Envoy reported (share of its overload-manager heap budget)",
        )
        .unwrap_or_else(|_| unreachable_metric());
        let memory_steps = IntCounterVec::new(
            Opts::new("aurelis_cp_memory_steps_total", "L1 budget steps for heap pressure, by direction"),
            &["direction"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        metrics.register(Box::new(l1_budget_bytes.clone()));
        metrics.register(Box::new(heap_pressure.clone()));
        metrics.register(Box::new(memory_steps.clone()));
        metrics.register(Box::new(routing_weight.clone()));
        metrics.register(Box::new(weight_changes.clone()));
        metrics.register(Box::new(desired_replicas.clone()));
        metrics.register(Box::new(balancing_changes.clone()));
        AdaptiveMetrics {
            routing_weight,
            weight_changes,
            balancing_changes,
            desired_replicas,
            l1_budget_bytes,
            heap_pressure,
            memory_steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dashboards and autoscalers read these names: renaming one must fail here first.
    #[test]
    fn the_adaptive_metric_names_are_stable() {
        let metrics = Metrics::new();
        let adaptive = AdaptiveMetrics::new(&metrics);
        adaptive.routing_weight.with_label_values(&["m", "p"]).set(50);
        adaptive.weight_changes.with_label_values(&["adaptive"]).inc();
        adaptive.balancing_changes.with_label_values(&["round_robin"]).inc();
        adaptive.desired_replicas.set(2);
        let text = metrics.render();
        for line in [
            r#"aurelis_cp_routing_weight{model="m",provider="p"} 50"#,
            r#"aurelis_cp_routing_weight_changes_total{cause="adaptive"} 1"#,
            r#"aurelis_cp_balancing_changes_total{policy="round_robin"} 1"#,
            "aurelis_cp_desired_replicas 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
