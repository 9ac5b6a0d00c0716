//! Envoy's own stats in the control plane, end to end: every Envoy's metrics-service sink
//! streams to the control plane over the ADS cluster, and the adaptive loops act on it. An
//! Envoy whose overload-manager heap budget is tiny reports heap pressure, and the control
//! plane lowers the fleet's L1 budget over ECDS (acked by Envoy) and says why in
//! `GET /v1/tuning`.
mod common;
use aurelis_devstack::fleet::{default_model, ANONYMOUS};
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn get(fleet: &Fleet, path: &str) -> Value {
    fleet.control_plane.get(path).unwrap_or(Value::Null)
}

/// Polls until `check` returns something; panics with `what` after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn heap_pressure_lowers_the_l1_budget_over_ecds_and_the_event_names_it() {
    let model = format!("{}adaptive:\n  memory: {{ interval_ms: 200 }}\n", default_model(ANONYMOUS));
    let fleet = start_fleet(FleetOptions {
        model: Some(model),
        // Far below what Envoy itself uses: its heap monitor reports pressure at once.
        envoy_max_heap_bytes: Some(4 << 20),
        stats_flush_ms: Some(200),
        ..FleetOptions::default()
    });
    let start = get(&fleet, "/v1/tuning")["memory"]["l1_budget_bytes"].as_u64().unwrap_or(0);
    assert!(start > 0);

    // Stats arrive over the xDS connection, named by the Envoy's node.
    wait_for("Envoy's stats at the control plane", Duration::from_secs(10), || {
        (fleet.control_plane.metric("aurelis_cp_fleet_stats_envoys", &[]) >= 1.0).then_some(())
    });

    let event = wait_for("an L1 budget lowered for heap pressure", Duration::from_secs(10), || {
        let events = get(&fleet, "/v1/tuning")["memory"]["events"].as_array().cloned().unwrap_or_default();
        events.into_iter().find(|e| e["event"] == "l1_budget_lowered")
    });
    eprintln!("memory event: {event}");
    assert_eq!(event["envoy"], "envoy-0", "{event}");
    assert!(event["heap_pressure"].as_f64().unwrap_or(0.0) >= 0.9, "{event}");
    assert_eq!(event["before"].as_u64(), Some(start), "{event}");
    assert!(event["after"].as_u64().unwrap_or(u64::MAX) < start, "{event}");

    // The lower budget is what the Envoy runs: the ECDS version carrying it is acked.
    let lowered = wait_for("the lowered budget acked over ECDS", Duration::from_secs(10), || {
        let status = get(&fleet, "/v1/status");
        let acked = status["clients"][0]["types"]["ecds"]["acked_version"] == status["versions"]["ecds"];
        let pushed = get(&fleet, "/v1/filter-config")["cache"]["max_bytes"].as_u64().unwrap_or(u64::MAX);
        (acked && pushed < start).then_some(pushed)
    });
    assert!(lowered >= start / 4, "never below the floor: {lowered} of {start}");
    assert!(fleet.control_plane.metric("aurelis_cp_memory_steps_total", &[r#"direction="lowered""#]) >= 1.0);
    assert!(fleet.control_plane.metric("aurelis_cp_fleet_heap_pressure", &[]) >= 0.9);
    assert_eq!(fleet.control_plane.metric("aurelis_cp_fleet_stats_errors_total", &[]), 0.0);
}
