//! L2: one Redis behind the cache service, shared by two Envoys with their own L1s; settings
//! pushed by the control plane over ECDS. Fail-open when Redis or the cache service dies. The
//! fleet gives the cache service and every Envoy a fresh API token and signing key
//! (`Fleet::l2`); `integrity` proves entries cannot be forged.
mod common;
#[path = "cache_l2/integrity.rs"]
mod integrity;
use aurelis_devstack::{Fleet, FleetOptions, L2Credentials};
use common::*;
use std::time::{Duration, Instant};

const L2_MODEL: &str = "
listener: { address: 127.0.0.1, port: 0 }
providers:
  - { name: mock, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: mock, weight: 1 }] }
  # The purge test's second model: an undeclared model is a 404, not the first model's route.
  - { name: gpt-4o, providers: [{ provider: mock, weight: 1 }] }
cache_service: { endpoints: ['{{cache_service}}'] }
filter:
  auth: { anonymous: {} }
  # Generous for a loaded machine: a lookup slower than this is a miss and fails the test.
  l2: { enabled: true, timeout_ms: 250 }
";

fn l2_fleet(envoys: usize) -> Fleet {
    l2_fleet_with(L2_MODEL, envoys)
}

fn l2_fleet_with(model: &str, envoys: usize) -> Fleet {
    let mut fleet =
        start_fleet(FleetOptions { model: Some(model.into()), cache_service: true, ..FleetOptions::default() });
    for _ in 1..envoys {
        if let Err(e) = fleet.add_envoy() {
            panic!("second envoy: {e:#}");
        }
    }
    fleet
}

/// The L2 store is asynchronous (after the answer): wait until Envoy counted it.
fn wait_stored(fleet: &Fleet, envoy: usize, count: u64) {
    let started = Instant::now();
    while fleet.envoys[envoy].counter("wasmcustom.aurelis_l2_stores_total.result.ok") < count {
        assert!(started.elapsed() < Duration::from_secs(5), "L2 store not confirmed\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fill_through_one_envoy_is_an_l2_hit_through_another() {
    let fleet = l2_fleet(2);
    let (a, b) = (fleet.envoys[0].gateway_url.clone(), fleet.envoys[1].gateway_url.clone());
    let first = post_chat_to(&a, &chat("shared across the fleet"), &[]).await;
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    wait_stored(&fleet, 0, 1);
    let on_b = post_chat_to(&b, &chat("shared across the fleet"), &[]).await;
    assert_eq!((on_b.status, on_b.cache(), on_b.header("x-aurelis-cache-level")), (200, "HIT", Some("L2")));
    assert_eq!(on_b.json()["id"], first.json()["id"], "the same stored answer");
    let again = post_chat_to(&b, &chat("shared across the fleet"), &[]).await;
    assert_eq!(again.header("x-aurelis-cache-level"), Some("L1"), "promoted into B's L1");
    assert_eq!(fleet.mocks[0].request_count(), 1);
    assert_eq!(fleet.envoys[1].counter("wasmcustom.aurelis_l2_lookups_total.result.hit"), 1);
    // Identical concurrent misses on a fresh Envoy wait on one L2 lookup (coalescing).
    let body = chat("concurrent l2");
    let replies = futures::future::join_all((0..8).map(|_| post_chat_to(&a, &body, &[]))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(fleet.mocks[0].request_count(), 2, "one upstream call for eight identical requests");
}

/// Promotion does not extend an answer's life: promoted from L2 with 1.5 s left there, it
/// leaves B's L1 with it, not a full L1 TTL (300 s) later.
#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_answer_expires_with_its_l2_ttl() {
    let fleet = l2_fleet_with(&L2_MODEL.replace("timeout_ms: 250 }", "timeout_ms: 250, ttl_seconds: 3 }"), 2);
    let (a, b) = (fleet.envoys[0].gateway_url.clone(), fleet.envoys[1].gateway_url.clone());
    let body = chat("short-lived in l2");
    let filled_at = Instant::now();
    assert_eq!(post_chat_to(&a, &body, &[]).await.cache(), "MISS");
    wait_stored(&fleet, 0, 1);
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(filled_at.elapsed())).await;
    assert_eq!(post_chat_to(&b, &body, &[]).await.header("x-aurelis-cache-level"), Some("L2"));
    assert_eq!(post_chat_to(&b, &body, &[]).await.header("x-aurelis-cache-level"), Some("L1"));
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(filled_at.elapsed())).await;
    let late = post_chat_to(&b, &body, &[]).await;
    assert_eq!((late.status, late.cache()), (200, "MISS"), "expired in B's L1 together with L2");
    assert_eq!(fleet.mocks[0].request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_dying_mid_traffic_costs_no_errors_and_l2_resumes() {
    let mut fleet = l2_fleet(2);
    let (a, b) = (fleet.envoys[0].gateway_url.clone(), fleet.envoys[1].gateway_url.clone());
    post_chat_to(&a, &chat("before redis dies"), &[]).await;
    wait_stored(&fleet, 0, 1);
    fleet.stop_redis();
    for i in 0..30 {
        let r = post_chat_to(&b, &chat(&format!("while redis is down {i}")), &[]).await;
        assert_eq!((r.status, r.cache()), (200, "MISS"), "answered by the upstream");
    }
    let errors = fleet.envoys[1].counter("wasmcustom.aurelis_l2_lookups_total.result.error")
        + fleet.envoys[1].counter("wasmcustom.aurelis_l2_lookups_total.result.timeout");
    assert!(errors > 0, "L2 errors are counted");
    fleet.start_redis().unwrap();
    // Back without restarting anything: fills reach L2 again and B hits them.
    let started = Instant::now();
    loop {
        let prompt = format!("after redis is back {}", started.elapsed().as_millis());
        post_chat_to(&a, &chat(&prompt), &[]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = post_chat_to(&b, &chat(&prompt), &[]).await;
        assert_eq!(r.status, 200);
        if r.header("x-aurelis-cache-level") == Some("L2") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "L2 hits never resumed\n{}", fleet.logs());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_cache_service_costs_almost_nothing() {
    let mut fleet = l2_fleet(1);
    let gw = fleet.envoys[0].gateway_url.clone();
    let timed = |prompt: String| {
        let gw = gw.clone();
        async move {
            let started = Instant::now();
            let r = post_chat_to(&gw, &chat(&prompt), &[("cache-control", "no-cache")]).await;
            assert_eq!(r.status, 200);
            started.elapsed()
        }
    };
    let mut up = Vec::new();
    for i in 0..40 {
        up.push(timed(format!("up {i}")).await);
    }
    fleet.stop_cache_service();
    let mut down = Vec::new();
    for i in 0..40 {
        down.push(timed(format!("down {i}")).await);
    }
    up.sort();
    down.sort();
    eprintln!("miss latency p50 with the cache service up {:?}, down {:?}", up[20], down[20]);
    assert!(down[20] < up[20] + Duration::from_millis(20), "a dead L2 must not add its timeout to every miss");
    fleet.start_cache_service().unwrap();
    let started = Instant::now();
    loop {
        let prompt = format!("service back {}", started.elapsed().as_millis());
        post_chat_to(&gw, &chat(&prompt), &[]).await;
        if fleet.envoys[0].counter("wasmcustom.aurelis_l2_stores_total.result.ok") > 40 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "L2 stores never resumed\n{}", fleet.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_purges_one_model_from_l2() {
    let fleet = l2_fleet(2);
    let (a, b) = (fleet.envoys[0].gateway_url.clone(), fleet.envoys[1].gateway_url.clone());
    let other =
        serde_json::json!({ "model": "gpt-4o", "temperature": 0, "messages": [{ "role": "user", "content": "kept" }] });
    post_chat_to(&a, &chat("purged"), &[]).await;
    post_chat_to(&a, &other, &[]).await;
    wait_stored(&fleet, 0, 2);
    let body = serde_json::json!({ "model": "gpt-4o-mini" });
    let (status, _) = fleet.control_plane.send("POST", "/v1/cache:purge", &body, None).unwrap();
    assert_eq!(status, 401, "purges need the token");
    let (status, answer) =
        fleet.control_plane.send("POST", "/v1/cache:purge", &body, Some(aurelis_devstack::fleet::ADMIN_TOKEN)).unwrap();
    assert_eq!((status, answer["purged"].as_u64()), (200, Some(1)), "{answer}");
    let purged = post_chat_to(&b, &chat("purged"), &[]).await;
    assert_eq!(purged.cache(), "MISS", "gone from L2");
    let kept = post_chat_to(&b, &other, &[]).await;
    assert_eq!(kept.header("x-aurelis-cache-level"), Some("L2"), "another model's entry stays");
    let (status, answer) = fleet
        .control_plane
        .send(
            "POST",
            "/v1/cache:purge",
            &serde_json::json!({ "model": "a", "tenant": "b" }),
            Some(aurelis_devstack::fleet::ADMIN_TOKEN),
        )
        .unwrap();
    assert_eq!(status, 400, "{answer}");
}

/// Distinctive, so a leak anywhere is found by a plain substring search.
const L2_TOKEN: &str = "e2e-l2-t0ken-5c1f7a-0123456789abcdef";
const L2_SIGNING_KEY: &str = "e2e-l2-signing-key-9d2e4b-0123456789abcdef";

/// Waits until Envoy counted `count` L2 stores with `result` (they are sent after the answer).
fn wait_stores(fleet: &Fleet, envoy: usize, result: &str, count: u64) {
    let started = Instant::now();
    let stat = format!("wasmcustom.aurelis_l2_stores_total.result.{result}");
    while fleet.envoys[envoy].counter(&stat) < count {
        assert!(started.elapsed() < Duration::from_secs(5), "{stat} < {count} on envoy {envoy}\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The cache service requires its API token; Envoys get it from their own environment
/// (`AURELIS_L2_TOKEN`, read by the filter through `host_env_keys`), never from xDS. Envoys
/// without it, or with a wrong one, still answer everything from upstream (fail open), and
/// cannot write into L2. Neither the token nor the signing key shows in a config dump or a log.
#[tokio::test(flavor = "multi_thread")]
async fn with_an_api_token_only_envoys_holding_it_share_l2_and_the_others_fail_open() {
    let mut fleet = start_fleet(FleetOptions {
        model: Some(L2_MODEL.into()),
        cache_service: true,
        l2_credentials: Some(L2Credentials { token: L2_TOKEN.into(), signing_key: L2_SIGNING_KEY.into() }),
        // Info level everywhere: the start-up and configuration lines are printed, and searched.
        // (At `debug`, Envoy itself prints the L2 calls' headers, token included.)
        cache_service_env: vec![("RUST_LOG".into(), "info".into())],
        envoy_log_level: "info".into(),
        ..FleetOptions::default()
    });
    let start = |fleet: &mut Fleet, env: &[(&str, &str)]| match fleet.add_envoy_with_env(env) {
        Ok(i) => i,
        Err(e) => panic!("envoy with {env:?}: {e:#}"),
    };
    let a = 0; // started by the fleet, with its token
    let b = start(&mut fleet, &[]);
    let missing = start(&mut fleet, &[("AURELIS_L2_TOKEN", "")]); // empty = unset
    let wrong = start(&mut fleet, &[("AURELIS_L2_TOKEN", "not-the-token")]);
    let url = |i: usize| fleet.envoys[i].gateway_url.clone();

    // Envoys holding the token share L2 as without one.
    let first = post_chat_to(&url(a), &chat("shared with the token"), &[]).await;
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    wait_stored(&fleet, a, 1);
    let on_b = post_chat_to(&url(b), &chat("shared with the token"), &[]).await;
    assert_eq!((on_b.status, on_b.cache(), on_b.header("x-aurelis-cache-level")), (200, "HIT", Some("L2")));
    assert_eq!(on_b.json()["id"], first.json()["id"], "the same stored answer");
    assert_eq!(fleet.mocks[0].request_count(), 1);

    // The service itself refuses callers without the token.
    let service = format!("http://127.0.0.1:{}/v1/entries/some-key", fleet.cache_service_port.unwrap_or_default());
    let http = reqwest::Client::new();
    let resp = http.get(&service).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 401, "a direct GET without the token");
    let body = resp.text().await.unwrap_or_default();
    assert!(body.contains("API token") && !body.contains(L2_TOKEN), "{body}");
    let resp = http.get(&service).bearer_auth(L2_TOKEN).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 404, "with the token: an ordinary miss");

    // Without the token, or with a wrong one: every request answered from upstream, every L2
    // lookup counted as an error, and no fill reaches L2.
    let mut upstream_calls = 1;
    for envoy in [missing, wrong] {
        let shared = post_chat_to(&url(envoy), &chat("shared with the token"), &[]).await;
        assert_eq!((shared.status, shared.cache()), (200, "MISS"), "envoy {envoy}: no L2 hit without the token");
        for i in 0..5 {
            let r = post_chat_to(&url(envoy), &chat(&format!("envoy {envoy} request {i}")), &[]).await;
            assert_eq!((r.status, r.cache()), (200, "MISS"), "envoy {envoy} request {i}");
        }
        upstream_calls += 6;
        assert_eq!(fleet.mocks[0].request_count(), upstream_calls, "envoy {envoy}: answered by the upstream");
        let lookups =
            |result: &str| fleet.envoys[envoy].counter(&format!("wasmcustom.aurelis_l2_lookups_total.result.{result}"));
        // 401 is an error; a slow machine may turn one into a timeout, never into a hit or miss.
        let failed = lookups("error") + lookups("timeout");
        assert_eq!((failed, lookups("hit"), lookups("miss")), (6, 0, 0), "envoy {envoy}");
        assert!(lookups("error") > 0, "envoy {envoy}: refusals are counted as errors");
        wait_stores(&fleet, envoy, "error", 6);
        assert_eq!(fleet.envoys[envoy].counter("wasmcustom.aurelis_l2_stores_total.result.ok"), 0);
    }
    let poisoned = post_chat_to(&url(b), &chat(&format!("envoy {wrong} request 0")), &[]).await;
    assert_eq!(poisoned.cache(), "MISS", "a fill through the wrong token never reached L2");

    // The token travels in no configuration and is printed by no process.
    for (i, envoy) in fleet.envoys.iter().enumerate() {
        let dump = aurelis_devstack::stack::http_get(&format!("{}/config_dump", envoy.admin_url))
            .unwrap_or_else(|e| panic!("{e:#}"));
        if fleet.filter_host() == aurelis_devstack::FilterHost::Wasm {
            // The Wasm VM is told which variables it may read; the native module reads Envoy's
            // environment directly, so its filter block names none.
            assert!(dump.contains("AURELIS_L2_TOKEN"), "envoy {i}: the filter's vm_config is in the dump");
            assert!(dump.contains("AURELIS_L2_SIGNING_KEY"), "envoy {i}: the filter's vm_config is in the dump");
        }
        assert!(!dump.contains(L2_TOKEN), "envoy {i}: the token is in /config_dump");
        assert!(!dump.contains(L2_SIGNING_KEY), "envoy {i}: the signing key is in /config_dump");
    }
    let logs = fleet.logs();
    assert!(logs.contains("api_tokens=1 namespaces=aurelis"), "the service's settings line is in the logs\n{logs}");
    assert!(logs.contains("API token set") && logs.contains("API token unset"), "the filters' lines\n{logs}");
    assert!(logs.contains("signing key set"), "the filters' lines\n{logs}");
    assert!(!logs.contains(L2_TOKEN), "the token is in a log\n{logs}");
    assert!(!logs.contains(L2_SIGNING_KEY), "the signing key is in a log\n{logs}");
}
