//! Adaptive routing end to end: real Envoy, two mock providers of one model, the control plane
//! reading Envoy's access log stream. A provider made slow loses its share of the traffic within
//! a minute and regains it once it recovers; a provider that answers 429 with `retry-after`
//! costs clients nothing (the request fails over to the other provider, with that provider's
//! own credential) and gets no new traffic until then; when both refuse, the client gets one
//! 429 and each provider was asked once. Each change reaches Envoy over RDS like an operator's.
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
async fn a_slow_provider_loses_traffic_and_regains_it() {
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
}

const FAILOVER_MODEL: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers:
  - name: main
    base_url: 'http://127.0.0.1:{{mock0}}/v1'
    protocol: http2
    headers: [{ name: authorization, envoy_env: E2E_MAIN_KEY, prefix: 'Bearer ' }]
  - name: spare
    base_url: 'http://127.0.0.1:{{mock1}}/v1'
    protocol: http2
    headers: [{ name: api-key, envoy_env: E2E_SPARE_KEY }]
models:
  - name: gpt-4o-mini
    providers: [{ provider: main, weight: 50 }, { provider: spare, weight: 50 }]
adaptive:
  routing: { enabled: true }
  balancing: { enabled: true, min_requests: 1 }
";

/// The model with a consumer (a provider credential is never relayed for anonymous clients).
fn failover_model() -> String {
    let digest = aurelis_core::auth::key_sha256(CLIENT_KEY);
    format!("{FAILOVER_MODEL}filter: {{ auth: {{ consumers: [{{ name: client, key_sha256: ['{digest}'] }}] }} }}\n")
}
const CLIENT_KEY: &str = "client-key";

fn header(request: &Option<aurelis_mock_upstream::RecordedRequest>, name: &str) -> Option<String> {
    request.as_ref()?.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

/// `n` distinct uncached requests; returns each answer's status and `x-aurelis-provider`.
async fn send(fleet: &Fleet, tag: &str, n: usize) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": format!("{tag} {i}") }] });
        let auth = format!("Bearer {CLIENT_KEY}");
        let reply =
            post_chat_to(&fleet.url(""), &body, &[("cache-control", "no-store"), ("authorization", &auth)]).await;
        let provider = reply.headers.get("x-aurelis-provider").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        out.push((reply.status, provider));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_fails_over_to_the_other_provider_once_and_the_refusing_one_rests_until_its_reset() {
    let fleet = start_fleet(FleetOptions {
        model: Some(failover_model()),
        mocks: vec![Default::default(), Default::default()],
        envoy_env: vec![("E2E_MAIN_KEY".into(), "main-secret".into()), ("E2E_SPARE_KEY".into(), "spare-secret".into())],
        ..FleetOptions::default()
    });
    let (main, spare) = (&fleet.mocks[0], &fleet.mocks[1]);

    // Both healthy: both serve, each with its own credential only, and the answer names it.
    let answers = send(&fleet, "healthy", 20).await;
    assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    for name in ["main", "spare"] {
        assert!(answers.iter().any(|(_, p)| p == name), "{name} served none of {answers:?}");
    }
    let (to_main, to_spare) = (main.last_request(), spare.last_request());
    assert_eq!(header(&to_main, "authorization").as_deref(), Some("Bearer main-secret"));
    assert_eq!(header(&to_main, "api-key"), None, "spare's credential never reaches main");
    assert_eq!(header(&to_spare, "api-key").as_deref(), Some("spare-secret"));
    assert_eq!(header(&to_spare, "authorization"), None, "neither main's credential nor the client's reaches spare");

    // main out of quota (429, retry-after 30 s): no client sees a 429, spare answers them all,
    // and every request main refused was sent once more, to spare, with spare's credential.
    main.set_retry_after_s(30);
    main.fail_next(429, 10_000);
    let (main_before, spare_before) = (main.request_count(), spare.request_count());
    let mut retried = 0;
    for i in 0..20 {
        let main_seen = main.request_count();
        // Every other request streams: a failover happens before any byte reaches the client.
        let stream = i % 2 == 1;
        let body = json!({ "model": "gpt-4o-mini", "stream": stream,
                           "messages": [{ "role": "user", "content": format!("main refuses {i}") }] });
        let auth = format!("Bearer {CLIENT_KEY}");
        let reply =
            post_chat_to(&fleet.url(""), &body, &[("cache-control", "no-store"), ("authorization", &auth)]).await;
        let text = String::from_utf8_lossy(&reply.body);
        assert_eq!(reply.status, 200, "request {i}: {text}");
        assert_eq!(reply.headers.get("x-aurelis-provider").and_then(|v| v.to_str().ok()), Some("spare"));
        assert!(!stream || text.trim_end().ends_with("data: [DONE]"), "request {i}: a whole stream: {text}");
        retried += main.request_count() - main_seen;
        // Checked on every request: a retried one must not carry main's credential along.
        let to_spare = spare.last_request();
        assert_eq!(header(&to_spare, "api-key").as_deref(), Some("spare-secret"), "request {i}");
        assert_eq!(header(&to_spare, "authorization"), None, "request {i}: main's credential reached spare");
    }
    eprintln!("{retried} of 20 requests were refused by main and failed over");
    assert!(retried > 0, "main refused none: the failover was not exercised");
    assert_eq!(spare.request_count() - spare_before, 20, "spare answered every request once");
    assert!(main.request_count() - main_before <= 20, "main asked at most once per request");

    // The refusals the clients never saw reach the control plane (the router's attempts log):
    // main gets no new traffic until its reset.
    let (out, took) =
        wait_routing(&fleet, "main losing all traffic", Duration::from_secs(10), |e| weight(e, "main") == 0);
    eprintln!("main out of quota taken out after {took:?}");
    assert_eq!(out["reasons"]["main"], "quota_exhausted");
    wait_rds_acked(&fleet);
    let main_before = main.request_count();
    let answers = send(&fleet, "main rests", 20).await;
    assert!(answers.iter().all(|(status, p)| *status == 200 && p == "spare"), "{answers:?}");
    assert_eq!(main.request_count(), main_before, "no request reached main while out of quota");

    // Both out of quota: the client gets one 429; spare was asked once, main once (the retry).
    // The same request again (cacheable this time) is asked again: a 429 is never stored.
    spare.set_retry_after_s(30);
    spare.fail_next(429, 10_000);
    let (main_before, spare_before) = (main.request_count(), spare.request_count());
    let body = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "both refuse" }] });
    let auth = format!("Bearer {CLIENT_KEY}");
    for round in 1..=2 {
        let reply = post_chat_to(&fleet.url(""), &body, &[("authorization", &auth)]).await;
        assert_eq!(reply.status, 429, "round {round}: {}", String::from_utf8_lossy(&reply.body));
        let asked = (main.request_count() - main_before, spare.request_count() - spare_before);
        assert_eq!(asked, (round, round), "round {round}: each provider asked once per request");
    }

    // The balancing inputs: per provider endpoint (the upstream host in the access log
    // records), each attributed to the provider that answered, over the balancing window.
    let (entry, took) = wait_routing(&fleet, "per-endpoint inputs", Duration::from_secs(20), |e| {
        let clusters = e["clusters"].as_array().cloned().unwrap_or_default();
        clusters.len() == 2 && clusters.iter().all(|c| c["inputs"].as_object().is_some_and(|i| !i.is_empty()))
    });
    eprintln!("per-endpoint inputs after {took:?}: {}", entry["clusters"]);
    for (i, cluster) in entry["clusters"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let endpoint = format!("127.0.0.1:{}", fleet.mocks[if cluster["cluster"] == "main" { 0 } else { 1 }].port());
        assert!(cluster["inputs"][&endpoint]["requests"].as_u64().unwrap_or(0) > 0, "{i}: {cluster}");
        assert_eq!(
            cluster["route_cluster"],
            format!("failover:gpt-4o-mini:{}", cluster["cluster"].as_str().unwrap_or(""))
        );
    }
}
