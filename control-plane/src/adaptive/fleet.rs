//! The adaptive loops' side of the fleet's Envoy stats: each tuning cycle's evidence, the
//! scaling inputs, and the memory-pressure loop that moves the L1 budget over ECDS. Reads
//! `fleetstats` snapshots, decides with the pure `evidence` and `memory` code, and pushes
//! through the same `ConfigStore` as every other change.
use super::evidence::{self, Pressure};
use super::{apply, MemoryEvent, Tunable, TuningEvidence};
use crate::state::AppState;
use std::time::Duration;
use tokio::sync::watch;

/// The tuning evidence of the cycle ending now: counter growth since the previous cycle.
pub fn cycle_evidence(state: &AppState, requests: u64, now_ms: i64) -> TuningEvidence {
    let now = state.fleet_stats.snapshot(now_ms);
    let before = state.adaptive.swap_stats_seen(now.clone());
    evidence::evidence(requests, &before, &now)
}

/// Heap, CPU and queueing as the Envoys last reported them.
pub fn pressure(state: &AppState, now_ms: i64) -> Pressure {
    evidence::pressure(&state.fleet_stats.snapshot(now_ms))
}

/// One step of the memory-pressure loop: reads the fleet's heap, moves the L1 budget one step
/// if it must (validated and pushed like an operator's change), records the event.
pub fn relieve_memory(state: &AppState, now_ms: i64) -> Option<MemoryEvent> {
    let fleet = pressure(state, now_ms);
    let metrics = &state.adaptive.metrics;
    if let Some((_, heap)) = &fleet.heap {
        metrics.heap_pressure.set(*heap);
    }
    let desired = state.config.desired();
    let current = desired.filter.cache.max_bytes;
    let settings = &desired.model.adaptive.memory;
    let heap = fleet.heap.as_ref().map(|(envoy, p)| (envoy.as_str(), *p));
    let event = state.adaptive.memory().governor.decide(settings, heap, current);
    let budget = match &event {
        Some(event) => {
            let applied = state.config.try_update(|d| apply::set(d, Tunable::L1MaxBytes, event.after() as f64));
            if let Err(error) = applied {
                tracing::warn!(?event, %error, "L1 budget step refused by validation");
                return None;
            }
            let direction = match event {
                MemoryEvent::L1BudgetLowered { .. } => "lowered",
                MemoryEvent::L1BudgetRaised { .. } => "raised",
            };
            metrics.memory_steps.with_label_values(&[direction]).inc();
            tracing::info!(?event, "L1 budget moved for heap pressure");
            state.adaptive.record_memory(now_ms, event.clone());
            event.after()
        }
        None => current,
    };
    metrics.l1_budget_bytes.set(i64::try_from(budget).unwrap_or(i64::MAX));
    event
}

/// Runs `relieve_memory` every `adaptive.memory.interval_ms` (read again each time) until
/// `stop` fires.
pub async fn run_memory(state: AppState, mut stop: watch::Receiver<()>, now_ms: impl Fn() -> i64 + Send) {
    loop {
        let interval = state.config.desired().model.adaptive.memory.interval_ms;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(interval)) => {
                relieve_memory(&state, now_ms());
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::resources::HEAP_MONITOR;

    fn heap(state: &AppState, percent: f64, at_ms: i64) {
        let name = format!("overload.{HEAP_MONITOR}.pressure");
        state.fleet_stats.report("envoy-0", [(name, percent)], at_ms);
    }

    #[test]
    fn reported_cpu_and_queueing_feed_the_scaling_recommendation() {
        use crate::xds::resources::CPU_MONITOR;
        let state = AppState::with_filter_config(aurelis_core::config::FilterConfig::default(), None);
        let report = |node: &str, cpu: f64, pending: f64| {
            let stats = [
                (format!("overload.{CPU_MONITOR}.pressure"), cpu),
                ("cluster.mock.upstream_rq_pending_active".to_string(), pending),
            ];
            state.fleet_stats.report(node, stats, 0);
        };
        report("a", 90.0, 0.0);
        report("b", 70.0, 0.0);
        assert_eq!(super::super::driver::recommend_replicas(&state, &[], 4, 0), 5, "mean CPU 80 % > 70 %");
        report("a", 10.0, 60.0);
        report("b", 10.0, 60.0);
        assert_eq!(super::super::driver::recommend_replicas(&state, &[], 4, 0), 5, "120 queued > 100");
        report("a", 10.0, 0.0);
        report("b", 10.0, 0.0);
        assert_eq!(
            super::super::driver::recommend_replicas(&state, &[], 4, 0),
            4,
            "quiet CPU and queue, but no p95 without windows: never down on an unknown"
        );
        assert!(state.metrics.render().contains("aurelis_cp_desired_replicas 4"));
    }

    #[test]
    fn heap_pressure_lowers_the_l1_budget_over_ecds_and_relief_raises_it_back() {
        let state = AppState::with_filter_config(aurelis_core::config::FilterConfig::default(), None);
        let start = state.config.desired().filter.cache.max_bytes;
        let ecds = |s: &AppState| s.config.current().version(crate::xds::EXTENSION_CONFIG).to_string();
        let before = ecds(&state);
        heap(&state, 120.0, 0);
        let lowered = relieve_memory(&state, 0);
        assert!(
            matches!(&lowered, Some(MemoryEvent::L1BudgetLowered { envoy, .. }) if envoy == "envoy-0"),
            "{lowered:?}"
        );
        assert_eq!(state.config.desired().filter.cache.max_bytes, start - start / 4);
        assert_ne!(ecds(&state), before, "the lower budget went out over ECDS");
        heap(&state, 10.0, 1_000);
        assert!(matches!(relieve_memory(&state, 1_000), Some(MemoryEvent::L1BudgetRaised { .. })));
        assert_eq!(state.config.desired().filter.cache.max_bytes, start);
        assert_eq!(relieve_memory(&state, 2_000), None);
        let text = state.metrics.render();
        for name in [
            "aurelis_cp_l1_budget_bytes",
            "aurelis_cp_fleet_heap_pressure",
            "aurelis_cp_memory_steps_total{direction=\"lowered\"} 1",
            "aurelis_cp_memory_steps_total{direction=\"raised\"} 1",
            "aurelis_cp_desired_replicas",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert_eq!(state.adaptive.memory().events.len(), 2);
    }
}
