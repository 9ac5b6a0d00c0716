//! Envoy's own stats in the control plane, end to end: every Envoy's metrics-service sink
//! streams to the control plane over the ADS cluster, and the adaptive loops act on it.
//! - The filter's L1 evictions (its own counters, under either host's stat names) make a
//!   tuning candidate; in `auto` mode its first step goes out over ECDS, the mock provider is
//!   then made slow, and the next windows' p95 rolls the step back, with the reason in
//!   `GET /v1/tuning` (2 s telemetry windows, `telemetry.window_secs`).
//! - An Envoy whose overload-manager heap budget is tiny reports heap pressure, and the control
//!   plane lowers the fleet's L1 budget over ECDS (acked by Envoy) and names it in
//!   `GET /v1/tuning`.
mod common;
use aurelis_devstack::fleet::{default_model, ANONYMOUS};
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// Whether every Envoy acked the current ECDS version.
fn ecds_acked(fleet: &Fleet) -> bool {
    let status = get(fleet, "/v1/status");
    let clients = status["clients"].as_array().cloned().unwrap_or_default();
    !clients.is_empty() && clients.iter().all(|c| c["types"]["ecds"]["acked_version"] == status["versions"]["ecds"])
}

/// The tuning events of `kind` so far.
fn tuning_events(fleet: &Fleet, kind: &str) -> Vec<Value> {
    let events = get(fleet, "/v1/tuning")["events"].as_array().cloned().unwrap_or_default();
    events.into_iter().filter(|e| e["event"] == kind).collect()
}

/// A request every 25 ms, each prompt new and cacheable (so a small L1 keeps evicting).
fn storing_traffic(gateway: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        let mut in_flight = tokio::task::JoinSet::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            n += 1;
            let body = chat(&format!("fill {n}"));
            let gateway = gateway.clone();
            in_flight.spawn(async move {
                let reply = post_chat_to(&gateway, &body, &[]).await;
                assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            });
            while let Some(done) = in_flight.try_join_next() {
                done.unwrap();
            }
        }
        while let Some(done) = in_flight.join_next().await {
            done.unwrap();
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tuning_step_that_slows_the_fleet_is_rolled_back_and_says_why() {
    let filter = r#"{ "auth": { "anonymous": {} }, "cache": { "max_entries": 20 } }"#;
    let model = format!(
        "{}telemetry: {{ window_secs: 2 }}\n\
         adaptive:\n\
         \x20 tuning: {{ mode: auto, step_interval_s: 600, max_p95_increase: 0.5 }}\n",
        default_model(filter)
    );
    let fleet = start_fleet(FleetOptions { model: Some(model), stats_flush_ms: Some(200), ..FleetOptions::default() });
    // A steady 50 ms upstream: the guard's p95 baseline does not move by itself.
    fleet.mocks[0].set_latency_ms(50);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = storing_traffic(fleet.url(""), stop.clone());

    // Evictions while full (counted by the filter, streamed by Envoy's stats sink) make the
    // L1 candidate; its first step is applied.
    let started = Instant::now();
    let apply = loop {
        if let Some(apply) = tuning_events(&fleet, "apply").into_iter().next() {
            break apply;
        }
        let evictions = fleet.envoy().counter("wasmcustom.aurelis_l1_evictions_total");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no tuning step within 20 s ({evictions} evictions in Envoy, {} windows closed): {}",
            fleet.control_plane.metric("aurelis_cp_telemetry_windows_closed_total", &[]),
            get(&fleet, "/v1/tuning")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("applied: {apply}");
    assert_eq!(apply["setting"], "l1_max_entries", "{apply}");
    assert_eq!((apply["before"].as_f64(), apply["step"].as_u64()), (Some(20.0), Some(1)), "{apply}");
    let candidates = get(&fleet, "/v1/tuning")["candidates"].clone();
    assert!(candidates.to_string().contains("L1 evictions"), "the evidence is named: {candidates}");

    // The step "made it slow": the guard sees p95 go up 8x and puts the start value back.
    fleet.mocks[0].set_latency_ms(400);
    let rolled_back =
        wait_for("the rollback", Duration::from_secs(15), || tuning_events(&fleet, "rolled_back").into_iter().next());
    eprintln!("rolled back: {rolled_back}");
    assert_eq!(rolled_back["setting"], "l1_max_entries", "{rolled_back}");
    assert_eq!(rolled_back["after"].as_f64(), Some(20.0), "{rolled_back}");
    assert!(rolled_back["reason"].as_str().is_some_and(|r| r.starts_with("p95")), "{rolled_back}");
    wait_for("the rollback acked over ECDS", Duration::from_secs(5), || {
        let entries = get(&fleet, "/v1/filter-config")["cache"]["max_entries"].as_u64();
        (entries == Some(20) && ecds_acked(&fleet)).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    fleet.mocks[0].set_latency_ms(0);
    traffic.await.unwrap();
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
    // The filter's default L1 budget (the model sets none); pressure may lower it at once.
    let start: u64 = 64 << 20;

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
        let pushed = get(&fleet, "/v1/filter-config")["cache"]["max_bytes"].as_u64().unwrap_or(u64::MAX);
        (pushed < start && ecds_acked(&fleet)).then_some(pushed)
    });
    assert!(lowered >= start / 4, "never below the floor: {lowered} of {start}");
    assert!(fleet.control_plane.metric("aurelis_cp_memory_steps_total", &[r#"direction="lowered""#]) >= 1.0);
    assert!(fleet.control_plane.metric("aurelis_cp_fleet_heap_pressure", &[]) >= 0.9);
    assert_eq!(fleet.control_plane.metric("aurelis_cp_fleet_stats_errors_total", &[]), 0.0);
}
