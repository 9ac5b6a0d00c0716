//! L2: one Redis behind the cache service, shared by two Envoys with their own L1s; settings
//! pushed by the control plane over ECDS. Fail-open when Redis or the cache service dies.
mod common;
use aurelis_e2e::{Fleet, FleetOptions};
use common::*;
use std::time::{Duration, Instant};

const L2_MODEL: &str = "
listener: { address: 127.0.0.1, port: 0 }
providers:
  - { name: mock, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: mock, weight: 1 }] }
cache_service: { endpoints: ['{{cache_service}}'] }
filter:
  l2: { enabled: true, timeout_ms: 50 }
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
    let fleet = l2_fleet_with(&L2_MODEL.replace("timeout_ms: 50 }", "timeout_ms: 50, ttl_seconds: 3 }"), 2);
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
        fleet.control_plane.send("POST", "/v1/cache:purge", &body, Some(aurelis_e2e::fleet::ADMIN_TOKEN)).unwrap();
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
            Some(aurelis_e2e::fleet::ADMIN_TOKEN),
        )
        .unwrap();
    assert_eq!(status, 400, "{answer}");
}
