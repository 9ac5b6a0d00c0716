//! Fleet telemetry end to end: a known traffic mix through a real Envoy configured by the
//! control plane, whose gRPC access log streams every request to the control plane; the
//! report's counts are exact and its latency percentiles within the sketch's relative error
//! of the true ones. Synchronised on the control plane's ingested-records counter, never on
//! sleeps.
mod common;
use aurelis_devstack::fleet::{default_model, ADMIN_TOKEN, ANONYMOUS};
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The sketch's relative error (`telemetry::stats::SKETCH_RELATIVE_ERROR`).
const ALPHA: f64 = aurelis_control_plane::telemetry::stats::SKETCH_RELATIVE_ERROR;

/// Waits until the control plane has ingested at least `n` records; returns the count.
fn wait_ingested(fleet: &Fleet, n: f64, timeout: Duration) -> f64 {
    let started = Instant::now();
    loop {
        let got = fleet.control_plane.metric("aurelis_cp_telemetry_records_total", &[]);
        if got >= n {
            return got;
        }
        assert!(started.elapsed() < timeout, "{got} of {n} records ingested within {timeout:?}\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request: what the mock was told to wait (a lower bound of the latency Envoy measures)
/// and what the client measured (an upper bound).
struct Sent {
    model: &'static str,
    floor_ms: f64,
    client_ms: f64,
}

async fn send(gateway: &str, model: &'static str, body: Value, delay_ms: u64, expect_cache: &str) -> Sent {
    let started = Instant::now();
    let reply = post_chat_to(gateway, &body, &[("x-mock-latency-ms", &delay_ms.to_string())]).await;
    let client_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.cache(), expect_cache, "{body}");
    let floor_ms = if expect_cache == "HIT" { 0.0 } else { delay_ms as f64 };
    Sent { model, floor_ms, client_ms }
}

/// The q-quantile of `values` under any usual rank convention: (lowest, highest) candidate.
fn quantile_bounds(values: &mut [f64], q: f64) -> (f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = q * (values.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, (rank.ceil() as usize + 1).min(values.len() - 1));
    (values[lo], values[hi])
}

/// The report's quantile lies between the quantile of the lower bounds and that of the upper
/// bounds, each widened by the sketch's relative error.
fn assert_within_sketch_error(report_ms: Option<f64>, sent: &[&Sent], q: f64, what: &str) {
    let Some(got) = report_ms else { panic!("{what}: no p{q} in the report") };
    let (low, _) = quantile_bounds(&mut sent.iter().map(|s| s.floor_ms).collect::<Vec<_>>(), q);
    let (_, high) = quantile_bounds(&mut sent.iter().map(|s| s.client_ms).collect::<Vec<_>>(), q);
    assert!(
        got >= low * (1.0 - ALPHA) && got <= high * (1.0 + ALPHA),
        "{what}: p{q} {got} ms outside [{low}, {high}] ms ± {ALPHA}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_a_known_traffic_mix_exactly() {
    let model = format!(
        "{}telemetry: {{ prices: {{ gpt-4o-mini: {{ input_per_million: 1.0, output_per_million: 4.0 }} }} }}\n",
        default_model(ANONYMOUS)
    );
    let fleet = start_fleet(FleetOptions { model: Some(model), ..FleetOptions::default() });
    let gateway = fleet.envoy().gateway_url.clone();
    let mut sent = Vec::new();
    // 30 misses in three latency bands, then 20 hits on the first 20 prompts, then 15
    // non-deterministic requests (no temperature: the filter bypasses the cache) to gpt-4o.
    for i in 0..30u64 {
        let delay = [40, 120, 360][(i / 10) as usize];
        sent.push(send(&gateway, "gpt-4o-mini", chat(&format!("telemetry prompt {i}")), delay, "MISS").await);
    }
    for i in 0..20u64 {
        sent.push(send(&gateway, "gpt-4o-mini", chat(&format!("telemetry prompt {i}")), 0, "HIT").await);
    }
    for i in 0..15 {
        let body = json!({ "model": "gpt-4o", "messages": [{ "role": "user", "content": format!("free {i}") }] });
        sent.push(send(&gateway, "gpt-4o", body, 80, "BYPASS").await);
    }
    wait_ingested(&fleet, 65.0, Duration::from_secs(20));

    let report = fleet.control_plane.get("/v1/report?period=1h").expect("GET /v1/report");
    assert_eq!(report["requests"], 65, "{report:#}");
    assert_eq!(report["counts_exact"], true);
    assert_eq!(report["hits"], 20);
    assert_eq!(report["hits_by_level"][0]["level"], "L1");
    assert_eq!(report["hits_by_level"][0]["hits"], 20);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["bypass_reasons"]["non_deterministic"], 15);
    let rows = |list: &str, model: &str, provider: &str| {
        report[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["model"] == model && m["provider"] == provider)
            .cloned()
    };
    let row = |model: &str| rows("models", model, "all").unwrap_or(Value::Null);
    assert_eq!(row("gpt-4o-mini")["requests"], 50, "{report:#}");
    assert_eq!(row("gpt-4o")["requests"], 15);
    assert_eq!(row("gpt-4o")["hit_rate"], 0.0);
    // Per provider: the misses went to the mock, the hits were answered by the cache.
    let misses = rows("series", "gpt-4o-mini", "mock").unwrap_or(Value::Null);
    let hits = rows("series", "gpt-4o-mini", "cache").unwrap_or(Value::Null);
    assert_eq!((misses["requests"].as_u64(), hits["requests"].as_u64()), (Some(30), Some(20)), "{report:#}");
    // Tokens come from the filter's facts (the mock's usage); a hit saves its stored answer's.
    let (saved_in, saved_out) = (hits["tokens_in"].as_u64().unwrap_or(0), hits["tokens_out"].as_u64().unwrap_or(0));
    assert!(misses["tokens_in"].as_u64() > Some(0) && saved_in > 0 && saved_out > 0, "{report:#}");
    assert_eq!(report["tokens_saved"].as_u64(), Some(saved_in + saved_out));
    let money = report["money_saved"].as_f64().unwrap_or(0.0);
    let expected = (saved_in as f64 * 1.0 + saved_out as f64 * 4.0) / 1e6;
    assert!((money - expected).abs() < 1e-12, "money saved {money}, expected {expected}");

    let all: Vec<&Sent> = sent.iter().collect();
    for (q, field) in [(0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")] {
        assert_within_sketch_error(report["latency"][field].as_f64(), &all, q, "all requests");
    }
    let mini: Vec<&Sent> = sent.iter().filter(|s| s.model == "gpt-4o-mini").collect();
    assert_within_sketch_error(row("gpt-4o-mini")["latency"]["p95_ms"].as_f64(), &mini, 0.95, "gpt-4o-mini");
    assert_within_sketch_error(row("gpt-4o-mini")["latency"]["p50_ms"].as_f64(), &mini, 0.5, "gpt-4o-mini");
    // Under a third of the answers came from the cache: under the 70 % target, so the report says
    // what to change.
    let rules: Vec<&str> =
        report["recommendations"].as_array().into_iter().flatten().filter_map(|r| r["rule"].as_str()).collect();
    assert!(rules.contains(&"low_hit_rate"), "{rules:?}");
    assert!(rules.contains(&"non_deterministic_bypasses"), "{rules:?}");

    // The command-line report reads the same numbers through the admin API.
    let out = std::process::Command::new(aurelis_devstack::paths::control_plane().expect("control plane binary"))
        .args(["report", "--period", "1h", "--admin-url", &fleet.control_plane.admin_url])
        .env("AURELIS_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("running report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("requests") && text.contains("65"), "{text}");
    assert!(text.contains("gpt-4o-mini") && text.contains("low_hit_rate"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_needs_the_admin_token_and_a_known_period() {
    let fleet = start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), ..FleetOptions::default() });
    let (status, _) = fleet.control_plane.send("GET", "/v1/report?period=1h", &Value::Null, None).expect("GET");
    assert_eq!(status, 401);
    let (status, body) =
        fleet.control_plane.send("GET", "/v1/report?period=2h", &Value::Null, Some(ADMIN_TOKEN)).expect("GET");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("`2h`"), "{body}");
}

/// Sends `n` distinct misses through `fleet`'s Envoy and waits until this control plane
/// process has ingested `expected` records in all.
async fn misses(fleet: &Fleet, tag: &str, n: usize, expected: f64) {
    let gateway = fleet.envoy().gateway_url.clone();
    for i in 0..n {
        send(&gateway, "gpt-4o-mini", chat(&format!("restart {tag} {i}")), 5, "MISS").await;
    }
    wait_ingested(fleet, expected, Duration::from_secs(20));
}

/// History survives a control-plane restart: the windows written before the stop (the open
/// one is written on the way out) are in the report of the next process, which adds its own.
async fn history_survives_a_restart(history: Option<String>) {
    let mut fleet =
        start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), history, ..FleetOptions::default() });
    misses(&fleet, "before", 5, 5.0).await;
    fleet.stop_control_plane();
    fleet.start_control_plane().expect("control plane restarts");
    let report = fleet.control_plane.get("/v1/report?period=1h").expect("GET /v1/report");
    assert_eq!(report["requests"], 5, "before the restart, from history: {report:#}");
    // Envoy's access log stream reconnects to the new process on its next record.
    misses(&fleet, "after", 3, 3.0).await;
    let report = fleet.control_plane.get("/v1/report?period=24h").expect("GET /v1/report");
    assert_eq!(report["requests"], 8, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_in_the_embedded_store() {
    history_survives_a_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_in_postgresql() {
    let postgres = aurelis_devstack::postgres::Postgres::start().expect("a private PostgreSQL");
    postgres.create_database("telemetry").expect("createdb");
    history_survives_a_restart(Some(postgres.url("telemetry"))).await;
}

/// With xDS over TLS, the access log stream rides the same connection settings: Envoy's
/// client certificate, checked against the node id it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_over_the_authenticated_xds_connection() {
    let fleet =
        start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), xds_tls: true, ..FleetOptions::default() });
    misses(&fleet, "tls", 3, 3.0).await;
    assert_eq!(fleet.control_plane.metric("aurelis_cp_telemetry_refused_streams_total", &[]), 0.0);
    let report = fleet.control_plane.get("/v1/report?period=1h").expect("GET /v1/report");
    assert_eq!(report["requests"], 3, "{report:#}");
}
