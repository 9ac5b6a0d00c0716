//! Envoy's own stats, streamed by every managed Envoy's metrics-service sink
//! (`xds/resources/stats_sink.rs`) to the control plane's `MetricsService` (`ingest`), kept as
//! per-Envoy latest values (`latest`). The adaptive loops read a snapshot each cycle: filter
//! counters for tuning evidence, cluster queueing and the overload manager's CPU and heap
//! pressure.
pub mod ingest;
pub mod latest;
mod metrics;

use latest::{EnvoyStats, Latest};
use metrics::FleetStatsMetrics;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// An Envoy silent this long is forgotten (a dozen default flushes: it went away).
pub const EXPIRE_AFTER_MS: i64 = 60_000;

/// Every Envoy's latest wanted values, by node id.
pub type Snapshot = BTreeMap<String, EnvoyStats>;

/// A handle on the fleet's stats; cheap to clone.
#[derive(Clone)]
pub struct FleetStats {
    latest: Arc<Mutex<Latest>>,
    metrics: Arc<FleetStatsMetrics>,
}

impl FleetStats {
    pub fn new(metrics: &crate::metrics::Metrics) -> FleetStats {
        FleetStats { latest: Arc::default(), metrics: Arc::new(FleetStatsMetrics::new(metrics)) }
    }

    fn lock(&self) -> MutexGuard<'_, Latest> {
        // Each critical section is a few map writes: a panic cannot leave it half-written.
        self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One message of `node`'s stream: the stats as `(full name, value)`.
    pub fn report(&self, node: &str, stats: impl IntoIterator<Item = (String, f64)>, now_ms: i64) {
        let values: Vec<(String, f64)> = stats
            .into_iter()
            .filter_map(|(name, value)| latest::wanted(&name).map(|n| (n.to_string(), value)))
            .collect();
        let dropped = self.lock().report(node, values, now_ms);
        self.metrics.messages.inc();
        if dropped.envoy {
            self.error("too_many_envoys");
        }
        if dropped.stats > 0 {
            self.metrics.errors.with_label_values(&["too_many_stats"]).inc_by(dropped.stats);
        }
        self.publish_envoys();
    }

    /// Counts an ingest error by `reason`: an admission refusal's (`no_certificate`,
    /// `node_mismatch`, ...), `no_node`, `stream`, `too_many_envoys`, `too_many_stats`.
    pub fn error(&self, reason: &str) {
        self.metrics.errors.with_label_values(&[reason]).inc();
    }

    /// The stream of `node` ended: it is forgotten at once (it reports again on reconnect).
    pub fn gone(&self, node: &str) {
        self.lock().remove(node);
        self.publish_envoys();
    }

    /// The latest values of every Envoy heard from within `EXPIRE_AFTER_MS` (older ones are
    /// forgotten here).
    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let snapshot = {
            let mut latest = self.lock();
            latest.expire(now_ms, EXPIRE_AFTER_MS);
            latest.envoys().clone()
        };
        self.publish_envoys();
        snapshot
    }

    fn publish_envoys(&self) {
        let envoys = self.lock().envoys().len();
        self.metrics.envoys.set(i64::try_from(envoys).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests and dashboards read these names: renaming one must fail here first.
    #[test]
    fn the_fleet_stats_metric_names_are_stable() {
        let metrics = crate::metrics::Metrics::new();
        let stats = FleetStats::new(&metrics);
        stats.report("envoy-0", [("wasmcustom.aurelis_l1_entries".to_string(), 3.0)], 0);
        stats.error("stream");
        let text = metrics.render();
        for line in [
            "aurelis_cp_fleet_stats_messages_total 1",
            "aurelis_cp_fleet_stats_envoys 1",
            "aurelis_cp_fleet_stats_errors_total{reason=\"stream\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(stats.snapshot(0)["envoy-0"].values["aurelis_l1_entries"], 3.0);
        stats.gone("envoy-0");
        assert!(stats.snapshot(0).is_empty());
    }
}
