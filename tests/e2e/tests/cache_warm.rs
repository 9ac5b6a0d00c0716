//! Warming, end to end (both hosts; `make test` runs it again with `AURELIS_FILTER=native`):
//! hits served from Envoy A's L1 are reported to the cache service and make an entry hot; Redis
//! restarted empty is refilled from L3 by the service; Envoy A restarted (a new process) warms
//! its L1 from the hottest entries, so its first repeated request is an L1 HIT with no upstream
//! call, and an entry that was refilled but not hot enough to warm is an L2 hit. With the cache
//! service gone, a restarted Envoy counts the failed warming and answers every request.
//! Synchronised on counters only.
mod common;
use aurelis_devstack::{Fleet, FleetOptions, L3Store};
use common::*;
use std::time::{Duration, Instant};

const WARM_MODEL: &str = "
listener: { address: 127.0.0.1, port: 0 }
providers:
  - { name: mock, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: mock, weight: 1 }] }
cache_service: { endpoints: ['{{cache_service}}'] }
filter:
  auth: { anonymous: {} }
  # Generous: this suite checks which level answers, not how fast, on a shared 2-core machine.
  l2: { enabled: true, timeout_ms: 1000 }
  # Two hits make an entry hot here (the default is 10).
  warm: { min_hits: 2 }
";

/// Waits until `condition` holds (an event the test is waiting on), at most 15 s.
fn wait_for(fleet: &Fleet, what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(15), "{what} never happened\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn service(fleet: &Fleet, name: &str, label: &str) -> f64 {
    fleet.cache_service_metric(name, &[label])
}

fn filter(fleet: &Fleet, name: &str) -> u64 {
    fleet.envoys[0].counter(&format!("wasmcustom.{name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_envoy_serves_its_hot_entries_from_a_warmed_l1_and_redis_is_refilled_from_l3() {
    let options = FleetOptions {
        model: Some(WARM_MODEL.into()),
        cache_service: true,
        l3: Some(L3Store::Embedded),
        cache_service_env: vec![
            ("AURELIS_L3_TIMEOUT_MS".into(), "500".into()),
            // Checked every second (default 10 s); every L3 entry goes back, hot or not.
            ("AURELIS_L2_REFILL_CHECK_SECONDS".into(), "1".into()),
            ("AURELIS_L2_REFILL_MIN_HITS".into(), "0".into()),
        ],
        ..FleetOptions::default()
    };
    let mut fleet = start_fleet(options);
    let gw = fleet.envoys[0].gateway_url.clone();
    let (hot, cold) = (chat("warm me up after a restart"), chat("stored once, never repeated"));

    // Filled through A, both into Redis and L3; the hot one then hit twice from A's L1.
    let first = post_chat_to(&gw, &hot, &[]).await;
    assert_eq!((first.status, first.cache()), (200, "MISS"));
    assert_eq!(post_chat_to(&gw, &cold, &[]).await.cache(), "MISS");
    wait_for(&fleet, "both L3 writes", || service(&fleet, "aurelis_l3_operations_total", r#"outcome="stored""#) >= 2.0);
    for _ in 0..2 {
        let hit = post_chat_to(&gw, &hot, &[]).await;
        assert_eq!((hit.cache(), hit.header("x-aurelis-cache-level")), ("HIT", Some("L1")));
    }
    // The L1 hits reach the service in a batched report (no call per hit).
    wait_for(&fleet, "the L1 hit report", || service(&fleet, "aurelis_l3_hot_hits_total", r#"level="L1""#) >= 2.0);
    assert!(filter(&fleet, "aurelis_l1_hit_reports_total.result.ok") >= 1);

    // Redis restarted empty: the service notices and refills it from L3.
    let refilled = service(&fleet, "aurelis_l2_refill_entries_total", r#"outcome="stored""#);
    fleet.stop_redis();
    fleet.start_redis().unwrap();
    wait_for(&fleet, "the refill", || {
        service(&fleet, "aurelis_l2_refill_entries_total", r#"outcome="stored""#) >= refilled + 2.0
    });

    // A restarted: a new process, an empty L1, warmed with the one hot entry.
    fleet.restart_envoy(0).unwrap();
    let gw = fleet.envoys[0].gateway_url.clone();
    wait_for(&fleet, "the warming", || filter(&fleet, "aurelis_l1_warm_total.result.loaded") == 1);
    assert_eq!(filter(&fleet, "aurelis_l1_warm_entries_total.result.loaded"), 1, "only the hot entry");
    assert_eq!(filter(&fleet, "aurelis_l1_warm_entries_total.result.forged"), 0);
    let upstream_calls = fleet.mocks[0].request_count();
    let warmed = post_chat_to(&gw, &hot, &[]).await;
    assert_eq!((warmed.status, warmed.cache(), warmed.header("x-aurelis-cache-level")), (200, "HIT", Some("L1")));
    assert_eq!(warmed.json()["id"], first.json()["id"], "the answer stored before the restart");
    // The cold entry was not warmed, but the refill put it back into Redis.
    let from_redis = post_chat_to(&gw, &cold, &[]).await;
    assert_eq!((from_redis.cache(), from_redis.header("x-aurelis-cache-level")), ("HIT", Some("L2")));
    assert_eq!(fleet.mocks[0].request_count(), upstream_calls, "no upstream call after the restart");

    // Without the cache service a restarted Envoy does not warm, says so, and still answers.
    fleet.stop_cache_service();
    fleet.restart_envoy(0).unwrap();
    let gw = fleet.envoys[0].gateway_url.clone();
    wait_for(&fleet, "the failed warming", || filter(&fleet, "aurelis_l1_warm_total.result.error") == 1);
    let answered = post_chat_to(&gw, &chat("asked while the cache service is down"), &[]).await;
    assert_eq!((answered.status, answered.cache()), (200, "MISS"));
}
