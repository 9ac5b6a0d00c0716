//! The control plane drives Envoy over ADS: weighted routing by model, endpoint health (probes
//! and admin overrides), all with real Envoy and two mock providers.
mod common;
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TWO_PROVIDERS: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers:
  - { name: alpha, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
  - { name: beta, base_url: 'http://127.0.0.1:{{mock1}}/v1', protocol: http2 }
models:
  - name: gpt-4o-mini
    providers: [{ provider: alpha, weight: 100 }, { provider: beta, weight: 0 }]
  - name: only-beta
    providers: [{ provider: beta, weight: 1 }]
filter: { auth: { anonymous: {} } }
";

fn two_provider_fleet(model: &str) -> Fleet {
    start_fleet(FleetOptions {
        model: Some(model.into()),
        mocks: vec![Default::default(), Default::default()],
        envoy_workers: 2,
        ..FleetOptions::default()
    })
}

/// Waits until every connected Envoy acked the current version of `kind`; returns how long.
fn wait_acked(fleet: &Fleet, kind: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = fleet.control_plane.get("/v1/status").unwrap_or(Value::Null);
        let want = &status["versions"][kind];
        let clients = status["clients"].as_array().cloned().unwrap_or_default();
        if !clients.is_empty() && clients.iter().all(|c| &c["types"][kind]["acked_version"] == want) {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "{kind} not acked within {timeout:?}: {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `n` uncached requests for `model` (no-store: routing only), 32 at a time.
async fn send_many(gateway: &str, model: &str, n: usize) {
    let body = json!({ "model": model, "messages": [{ "role": "user", "content": "route me" }] });
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(32);
        let replies = futures::future::join_all(
            (0..batch).map(|_| post_chat_to(gateway, &body, &[("cache-control", "no-store")])),
        )
        .await;
        for r in &replies {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        sent += batch;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_in_the_body_picks_the_route() {
    let fleet = two_provider_fleet(TWO_PROVIDERS);
    let gw = fleet.envoy().gateway_url.clone();
    send_many(&gw, "gpt-4o-mini", 20).await;
    send_many(&gw, "only-beta", 10).await;
    assert_eq!((fleet.mocks[0].request_count(), fleet.mocks[1].request_count()), (20, 10));
    // A client cannot steer routing with the header: the filter replaces it with the body's model.
    let body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "x" }] });
    let r = post_chat_to(&gw, &body, &[("x-aurelis-model", "only-beta"), ("cache-control", "no-store")]).await;
    assert_eq!(r.status, 200);
    assert_eq!((fleet.mocks[0].request_count(), fleet.mocks[1].request_count()), (21, 10));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_weight_change_reaches_envoy_within_a_second_and_splits_traffic() {
    let fleet = two_provider_fleet(TWO_PROVIDERS);
    let gw = fleet.envoy().gateway_url.clone();
    let before = fleet.control_plane.get("/v1/status").unwrap()["versions"]["rds"].clone();
    let (status, body) = fleet
        .control_plane
        .put("/v1/models/gpt-4o-mini/weights", &json!({ "weights": { "alpha": 30, "beta": 70 } }))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let took = wait_acked(&fleet, "rds", Duration::from_secs(5));
    assert_ne!(fleet.control_plane.get("/v1/status").unwrap()["versions"]["rds"], before);
    assert!(took < Duration::from_secs(1), "the new weights took {took:?} to be acked");
    eprintln!("weight change acked by Envoy after {took:?}");
    send_many(&gw, "gpt-4o-mini", 1000).await;
    let (alpha, beta) = (fleet.mocks[0].request_count(), fleet.mocks[1].request_count());
    eprintln!("1000 requests split alpha={alpha} beta={beta} (weights 30/70)");
    assert_eq!(alpha + beta, 1000);
    assert!((250..=350).contains(&alpha), "alpha got {alpha} of 1000, expected 300 ± 50");
    // Admin errors are JSON and name the problem; nothing changes.
    let (status, body) =
        fleet.control_plane.put("/v1/models/gpt-4o-mini/weights", &json!({ "weights": { "gamma": 1 } })).unwrap();
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("`gamma` is not a defined provider"), "{body}");
    let (status, _) =
        fleet.control_plane.put("/v1/models/nope/weights", &json!({ "weights": { "alpha": 1 } })).unwrap();
    assert_eq!(status, 404);
    let (status, _) = fleet
        .control_plane
        .send("PUT", "/v1/models/gpt-4o-mini/weights", &json!({ "weights": { "alpha": 1 } }), None)
        .unwrap();
    assert_eq!(status, 401, "writes need the token");
}

const ONE_POOL: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers:
  - name: pool
    base_url: 'http://127.0.0.1:{{mock0}}/v1'
    protocol: http2
    endpoints: [{ address: '127.0.0.1:{{mock0}}' }, { address: '127.0.0.1:{{mock1}}' }, { address: '127.0.0.1:{{dead}}' }]
    health_check: { path: /v1/models, interval_ms: 200, timeout_ms: 150 }
    # No panic mode: with two of three endpoints out, the last one still takes everything.
    limits: { healthy_panic_threshold_percent: 0 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: pool, weight: 1 }] }
filter: { auth: { anonymous: {} } }
";

#[tokio::test(flavor = "multi_thread")]
async fn unhealthy_endpoints_get_no_traffic() {
    let dead = aurelis_devstack::process::free_port().unwrap();
    let fleet = two_provider_fleet(&ONE_POOL.replace("{{dead}}", &dead.to_string()));
    let gw = fleet.envoy().gateway_url.clone();
    let (a, b) = (fleet.mocks[0].port(), fleet.mocks[1].port());
    // The probes find the dead endpoint and EDS marks it unhealthy.
    let started = Instant::now();
    loop {
        let endpoints = fleet.control_plane.get("/v1/endpoints").unwrap();
        let dead_entry = endpoints["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["address"] == format!("127.0.0.1:{dead}"))
            .cloned();
        if dead_entry.is_some_and(|e| e["healthy"] == false) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "dead endpoint never marked unhealthy: {endpoints}");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_acked(&fleet, "eds", Duration::from_secs(5));
    let clusters = aurelis_devstack::stack::http_get(&format!("{}/clusters", fleet.envoy().admin_url)).unwrap();
    assert!(clusters.contains(&format!("pool::127.0.0.1:{dead}::health_flags::/failed_eds_health")), "{clusters}");
    // An operator takes a live endpoint out: it gets nothing.
    let path = format!("/v1/endpoints/pool/127.0.0.1:{b}/health");
    let (status, body) = fleet.control_plane.put(&path, &json!({ "override": "unhealthy" })).unwrap();
    assert_eq!(status, 200, "{body}");
    wait_acked(&fleet, "eds", Duration::from_secs(5));
    send_many(&gw, "gpt-4o-mini", 200).await;
    assert_eq!((fleet.mocks[0].request_count(), fleet.mocks[1].request_count()), (200, 0), "a={a} b={b}");
    // Handing it back to the probes restores its traffic.
    let (status, _) = fleet.control_plane.put(&path, &json!({ "override": null })).unwrap();
    assert_eq!(status, 200);
    wait_acked(&fleet, "eds", Duration::from_secs(5));
    send_many(&gw, "gpt-4o-mini", 200).await;
    assert!(fleet.mocks[1].request_count() > 50, "b got {}", fleet.mocks[1].request_count());
    let (status, _) =
        fleet.control_plane.put("/v1/endpoints/pool/10.9.9.9:1/health", &json!({ "override": "unhealthy" })).unwrap();
    assert_eq!(status, 404, "unknown endpoints are refused");
}

const FAILING_POOL: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers:
  - name: pool
    base_url: 'http://127.0.0.1:{{mock0}}/v1'
    protocol: http2
    endpoints: [{ address: '127.0.0.1:{{mock0}}' }, { address: '127.0.0.1:{{mock1}}' }]
models:
  - { name: gpt-4o-mini, providers: [{ provider: pool, weight: 1 }] }
filter: { auth: { anonymous: {} } }
";

/// The pushed retry policy and outlier detection at work (default limits, no probes): an
/// endpoint answering 503 costs clients nothing, and after 5 consecutive errors it is ejected.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_endpoint_is_retried_elsewhere_then_ejected() {
    let fleet = two_provider_fleet(FAILING_POOL);
    let gw = fleet.envoy().gateway_url.clone();
    fleet.mocks[1].fail_next(503, 1_000_000);
    send_many(&gw, "gpt-4o-mini", 200).await; // asserts every answer is a 200
    let envoy = fleet.envoy();
    let retries = envoy.counter("cluster.pool.upstream_rq_retry");
    let ejections = envoy.counter("cluster.pool.outlier_detection.ejections_enforced_consecutive_5xx");
    assert!(retries >= 5, "the 503s were retried: {retries} retries");
    assert_eq!(ejections, 1, "the failing endpoint was ejected once");
    let failed = fleet.mocks[1].request_count();
    // Five consecutive errors eject it; what reached it beyond that was already in flight then
    // (send_many keeps 32 requests in flight, round robin sends it about half of them).
    assert!((5..=32).contains(&failed), "the failing endpoint saw {failed} requests");
    send_many(&gw, "gpt-4o-mini", 100).await;
    assert_eq!(fleet.mocks[1].request_count(), failed, "an ejected endpoint gets no traffic");
    assert_eq!(fleet.mocks[0].request_count(), 300, "each request was answered once, by the healthy one");
    assert_eq!(retries, failed, "each failure was retried once, on the other endpoint (previous_hosts)");
}

/// Two providers with injected credentials, and the one consumer allowed to use them.
fn credentials_model() -> String {
    let digest = aurelis_core::auth::key_sha256("client-key");
    format!("{CREDENTIALS}filter: {{ auth: {{ consumers: [{{ name: client, key_sha256: ['{digest}'] }}] }} }}\n")
}

const CREDENTIALS: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers:
  - name: alpha
    base_url: 'http://127.0.0.1:{{mock0}}/v1'
    protocol: http2
    headers: [{ name: authorization, value_from_env: E2E_CP_SECRET, prefix: 'Bearer ' }]
  - name: beta
    base_url: 'http://127.0.0.1:{{mock1}}/v1'
    protocol: http2
    headers: [{ name: api-key, envoy_env: E2E_ENVOY_SECRET }]
models:
  - { name: via-alpha, providers: [{ provider: alpha, weight: 1 }] }
  - { name: via-beta, providers: [{ provider: beta, weight: 1 }] }
";

#[tokio::test(flavor = "multi_thread")]
async fn provider_credentials_are_injected_and_kept_out_of_logs() {
    let fleet = start_fleet(FleetOptions {
        model: Some(credentials_model()),
        mocks: vec![Default::default(), Default::default()],
        cp_env: vec![("E2E_CP_SECRET".into(), "cp-secret-%41".into())],
        envoy_env: vec![("E2E_ENVOY_SECRET".into(), "envoy-only-secret".into())],
        ..FleetOptions::default()
    });
    let gw = fleet.envoy().gateway_url.clone();
    let header = |mock: &aurelis_mock_upstream::MockUpstream, name: &str| {
        let request = mock.last_request().expect("the provider saw the request");
        request.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let body = json!({ "model": "via-alpha", "messages": [{ "role": "user", "content": "x" }] });
    let r = post_chat_to(&gw, &body, &[("authorization", "Bearer client-key")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&fleet.mocks[0], "authorization").as_deref(),
        Some("Bearer cp-secret-%41"),
        "the provider's key replaces the client's, verbatim"
    );
    let body = json!({ "model": "via-beta", "messages": [{ "role": "user", "content": "y" }] });
    assert_eq!(post_chat_to(&gw, &body, &[("api-key", "client-key")]).await.status, 200);
    assert_eq!(header(&fleet.mocks[1], "api-key").as_deref(), Some("envoy-only-secret"));
    // The Envoy-side secret is not in Envoy's config (only its variable name); no secret is in a log.
    let dump = aurelis_devstack::stack::http_get(&format!("{}/config_dump", fleet.envoy().admin_url)).unwrap();
    assert!(!dump.contains("envoy-only-secret") && dump.contains("%ENVIRONMENT(E2E_ENVOY_SECRET)%"));
    let logs = fleet.logs();
    assert!(!logs.contains("cp-secret") && !logs.contains("envoy-only-secret"), "a secret reached a log");
}
