//! Adaptive routing end to end: real Envoy, two mock providers of one model, the control plane
//! reading Envoy's access log stream. A provider made slow loses its share of the traffic within
//! a minute and regains it once it recovers; a provider that answers 429 with `retry-after`
//! gets no new traffic until then. Each change reaches Envoy over RDS like an operator's.
mod common;
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODEL: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers:
  - { name: fast, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
  - { name: flaky, base_url: 'http://127.0.0.1:{{mock1}}/v1', protocol: http2 }
models:
  - name: gpt-4o-mini
    providers: [{ provider: fast, weight: 50 }, { provider: flaky, weight: 50 }]
filter: { auth: { anonymous: {} } }
adaptive:
  routing: { enabled: true, observe_windows: 1, max_step: 40, min_weight: 5, deadband: 5, min_requests: 10 }
";

/// `/v1/routing`'s entry for the model.
fn routing(fleet: &Fleet) -> Value {
    let body = fleet.control_plane.get("/v1/routing").unwrap_or(Value::Null);
    body["models"].as_array().and_then(|m| m.first().cloned()).unwrap_or(Value::Null)
}

/// Polls `/v1/routing` until `done` holds for the model's entry; returns it and how long.
fn wait_routing(fleet: &Fleet, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let entry = routing(fleet);
        if done(&entry) {
            return (entry, started.elapsed());
        }
        assert!(started.elapsed() < timeout, "{what} not within {timeout:?}: {entry}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every Envoy acked the current RDS version.
fn wait_rds_acked(fleet: &Fleet) {
    let started = Instant::now();
    loop {
        let status = fleet.control_plane.get("/v1/status").unwrap_or(Value::Null);
        let want = &status["versions"]["rds"];
        let clients = status["clients"].as_array().cloned().unwrap_or_default();
        if !clients.is_empty() && clients.iter().all(|c| &c["types"]["rds"]["acked_version"] == want) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "rds not acked: {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn weight(entry: &Value, provider: &str) -> u64 {
    entry["weights"][provider].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_provider_loses_traffic_and_regains_it_and_exhausted_quota_gets_none_until_its_reset() {
    let fleet = start_fleet(FleetOptions {
        model: Some(MODEL.into()),
        mocks: vec![Default::default(), Default::default()],
        ..FleetOptions::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = steady_traffic(fleet.url(""), &["gpt-4o-mini"], stop.clone());

    // Slow: 600 ms against a few ms. Within a minute it is down to the probe share.
    fleet.mocks[1].set_latency_ms(600);
    let (slow, took) =
        wait_routing(&fleet, "the slow provider losing weight", Duration::from_secs(60), |e| weight(e, "flaky") <= 10);
    eprintln!("slow provider down to {} after {took:?}: {slow}", weight(&slow, "flaky"));
    assert_eq!(slow["reasons"]["flaky"], "adaptive");
    assert!(slow["inputs"]["flaky"]["p95_ms"].as_f64().unwrap_or(0.0) > 400.0, "{slow}");
    assert!(weight(&slow, "flaky") >= 5, "keeps the probe share: {slow}");

    // Recovered: back to the file's even split.
    fleet.mocks[1].set_latency_ms(0);
    let (back, took) = wait_routing(&fleet, "the recovered provider regaining weight", Duration::from_secs(60), |e| {
        weight(e, "flaky") >= 45
    });
    eprintln!("recovered provider back to {} after {took:?}", weight(&back, "flaky"));
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();

    // Quota: the provider answers 429 with retry-after 60 s. One client sees it; the record
    // reaches the control plane within Envoy's 1 s flush and the provider's weight drops to 0.
    fleet.mocks[1].set_retry_after_s(60);
    fleet.mocks[1].fail_next(429, 10_000);
    let body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "quota" }] });
    let mut saw_429 = false;
    for _ in 0..50 {
        let reply = post_chat_to(&fleet.url(""), &body, &[("cache-control", "no-store")]).await;
        if reply.status == 429 {
            saw_429 = true;
            break;
        }
    }
    assert!(saw_429, "the provider's 429 reached a client at least once");
    let (out, took) = wait_routing(&fleet, "the exhausted provider losing all traffic", Duration::from_secs(10), |e| {
        weight(e, "flaky") == 0
    });
    eprintln!("provider out of quota taken out after {took:?}");
    assert_eq!(out["reasons"]["flaky"], "quota_exhausted");
    wait_rds_acked(&fleet);
    let flaky_before = fleet.mocks[1].request_count();
    for _ in 0..40 {
        let reply = post_chat_to(&fleet.url(""), &body, &[("cache-control", "no-store")]).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    }
    assert_eq!(fleet.mocks[1].request_count(), flaky_before, "no request reached the provider out of quota");
}
