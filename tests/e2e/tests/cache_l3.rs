//! L3 through the filter: the cache service's persistent level (embedded SQLite file, or a
//! private PostgreSQL) answers what Redis forgot, the filter tells the client `L3`, promotes
//! the answer into its L1 and counts it per level; L3 dying mid-traffic costs no client error;
//! an admin purge reaches L3, L2 and the L1 of every Envoy.
mod common;
use aurelis_devstack::fleet::ADMIN_TOKEN;
use aurelis_devstack::{Fleet, FleetOptions, L3Store, Postgres};
use common::*;
use std::time::{Duration, Instant};

const L3_MODEL: &str = "
listener: { address: 127.0.0.1, port: 0 }
providers:
  - { name: mock, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: mock, weight: 1 }] }
cache_service: { endpoints: ['{{cache_service}}'] }
filter:
  auth: { anonymous: {} }
  # Generous: this suite checks which level answers, not how fast (that is the bench's job),
  # on a 2-core machine shared with other builds.
  l2: { enabled: true, timeout_ms: 1000 }
";

fn l3_fleet(store: L3Store, envoys: usize) -> Fleet {
    l3_fleet_with(L3_MODEL.to_string(), store, envoys)
}

fn l3_fleet_with(model: String, store: L3Store, envoys: usize) -> Fleet {
    let options = FleetOptions {
        model: Some(model),
        cache_service: true,
        l3: Some(store),
        cache_service_env: vec![("AURELIS_L3_TIMEOUT_MS".into(), "500".into())],
        ..FleetOptions::default()
    };
    let mut fleet = start_fleet(options);
    for _ in 1..envoys {
        if let Err(e) = fleet.add_envoy() {
            panic!("another envoy: {e:#}");
        }
    }
    fleet
}

/// Waits until `condition` holds (an event the test is waiting on), at most 10 s.
fn wait_for(fleet: &Fleet, what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what} never happened\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn filter_stores(fleet: &Fleet, result: &str) -> u64 {
    fleet.envoys[0].counter(&format!("wasmcustom.aurelis_l2_stores_total.result.{result}"))
}

fn l3_puts(fleet: &Fleet, outcome: &str) -> f64 {
    fleet.cache_service_metric("aurelis_l3_operations_total", &[r#"op="put""#, &format!(r#"outcome="{outcome}""#)])
}

/// Fills `wanted` answers through Envoy 0 whose store the cache service confirmed, each waited
/// for in turn (a store refused under load on this shared machine is replaced by another
/// prompt), then waits until the service wrote them to L3 too (in the background, after Redis).
/// Returns the prompts and their first answers.
async fn fill_stored(fleet: &Fleet, prefix: &str, wanted: usize) -> Vec<(String, Reply)> {
    let gw = fleet.envoys[0].gateway_url.clone();
    let mut kept = Vec::new();
    for i in 0..wanted * 4 {
        if kept.len() == wanted {
            break;
        }
        let (ok, failed) = (filter_stores(fleet, "ok"), filter_stores(fleet, "error"));
        let prompt = format!("{prefix} {i}");
        let reply = post_chat_to(&gw, &chat(&prompt), &[]).await;
        assert_eq!((reply.status, reply.cache()), (200, "MISS"));
        wait_for(fleet, "the L2 store", || filter_stores(fleet, "ok") + filter_stores(fleet, "error") > ok + failed);
        if filter_stores(fleet, "ok") > ok {
            kept.push((prompt, reply));
        }
    }
    assert_eq!(kept.len(), wanted, "stores confirmed by the cache service");
    let confirmed = filter_stores(fleet, "ok") as f64;
    wait_for(fleet, "the L3 writes", || l3_puts(fleet, "stored") + l3_puts(fleet, "timeout") >= confirmed);
    assert_eq!(l3_puts(fleet, "stored"), confirmed, "every value Redis took is in L3");
    kept
}

/// Redis forgets everything (restarted empty) and the cache service restarts: only L3 remains.
fn forget_all_but_l3(fleet: &mut Fleet) {
    fleet.stop_cache_service();
    fleet.stop_redis();
    fleet.start_redis().unwrap();
    assert_eq!(fleet.redis_keys(), 0, "Redis starts empty");
    fleet.start_cache_service().unwrap();
}

fn hits(fleet: &Fleet, envoy: usize, level: &str) -> u64 {
    fleet.envoys[envoy].counter(&format!("wasmcustom.aurelis_cache_hits_total.level.{level}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn what_only_l3_remembers_is_an_l3_hit_then_l2_then_l1() {
    let mut fleet = l3_fleet(L3Store::Embedded, 3);
    // Envoy 0 (A) fills; B and C start with empty L1s.
    let [b, c] = [1, 2].map(|i| fleet.envoys[i].gateway_url.clone());
    let filled = fill_stored(&fleet, "remembered by the persistent level", 1).await;
    let (body, first) = filled.first().map(|(p, r)| (chat(p), r)).unwrap();
    let upstream_calls = fleet.mocks[0].request_count();
    forget_all_but_l3(&mut fleet);

    let on_b = post_chat_to(&b, &body, &[]).await;
    assert_eq!((on_b.status, on_b.cache(), on_b.header("x-aurelis-cache-level")), (200, "HIT", Some("L3")));
    assert_eq!(on_b.json()["id"], first.json()["id"], "the answer stored through A");
    assert_eq!(on_b.json()["choices"], first.json()["choices"]);
    // The service promotes the L3 hit to Redis in the background: C then finds it in L2.
    wait_for(&fleet, "the promotion to Redis", || fleet.redis_entries() > 0);
    let on_c = post_chat_to(&c, &body, &[]).await;
    assert_eq!((on_c.cache(), on_c.header("x-aurelis-cache-level")), ("HIT", Some("L2")));
    let again = post_chat_to(&c, &body, &[]).await;
    assert_eq!((again.cache(), again.header("x-aurelis-cache-level")), ("HIT", Some("L1")), "promoted into C's L1");
    let on_b_again = post_chat_to(&b, &body, &[]).await;
    assert_eq!(on_b_again.header("x-aurelis-cache-level"), Some("L1"), "the L3 hit was promoted into B's L1");

    assert_eq!(fleet.mocks[0].request_count(), upstream_calls, "no upstream call after the fill");
    assert_eq!((hits(&fleet, 1, "L3"), hits(&fleet, 1, "L1"), hits(&fleet, 1, "L2")), (1, 1, 0), "B per level");
    assert_eq!((hits(&fleet, 2, "L3"), hits(&fleet, 2, "L2"), hits(&fleet, 2, "L1")), (0, 1, 1), "C per level");
    let hit_l3 = fleet.cache_service_metric("aurelis_l3_operations_total", &[r#"op="get""#, r#"outcome="hit""#]);
    assert_eq!(hit_l3, 1.0, "L3 was asked once: everything after came from Redis or an L1");
}

#[tokio::test(flavor = "multi_thread")]
async fn l3_dying_mid_traffic_costs_no_client_error() {
    let mut postgres = Postgres::start().unwrap();
    postgres.create_database("l3").unwrap();
    let mut fleet = l3_fleet(L3Store::Url(postgres.url("l3")), 1);
    let kept = fill_stored(&fleet, "kept in postgres", 10).await;
    forget_all_but_l3(&mut fleet);
    // A new Envoy (empty L1) asks for them: the first half come from L3, then L3 dies.
    let fresh = fleet.add_envoy().unwrap();
    let gw = fleet.envoys[fresh].gateway_url.clone();
    let mut levels = Vec::new();
    for (i, (prompt, _)) in kept.iter().enumerate() {
        if i == kept.len() / 2 {
            postgres.stop();
        }
        let r = post_chat_to(&gw, &chat(prompt), &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}\n{}", String::from_utf8_lossy(&r.body), fleet.logs());
        levels.push(r.header("x-aurelis-cache-level").map(str::to_string));
    }
    let (before, after) = levels.split_at(kept.len() / 2);
    assert!(before.iter().all(|l| l.as_deref() == Some("L3")), "served by L3 while it was up: {before:?}");
    assert!(after.iter().all(Option::is_none), "answered upstream once L3 was gone: {after:?}");
    let failed_l3 = fleet.cache_service_metric("aurelis_l3_operations_total", &[r#"op="get""#, r#"outcome="error""#])
        + fleet.cache_service_metric("aurelis_l3_operations_total", &[r#"op="get""#, r#"outcome="timeout""#]);
    assert!(failed_l3 >= 1.0, "the failed L3 lookups are counted by the service");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_purge_reaches_l3() {
    let mut fleet = l3_fleet(L3Store::Embedded, 2);
    let b = fleet.envoys[1].gateway_url.clone();
    let filled = fill_stored(&fleet, "purged from every level", 1).await;
    let body = filled.first().map(|(p, _)| chat(p)).unwrap();
    let (status, answer) = fleet
        .control_plane
        .send("POST", "/v1/cache:purge", &serde_json::json!({ "model": "gpt-4o-mini" }), Some(ADMIN_TOKEN))
        .unwrap();
    assert_eq!((status, answer["purged"].as_u64(), answer["l3_purged"].as_u64()), (200, Some(1), Some(1)), "{answer}");
    // Only L3 could still have it: it does not.
    forget_all_but_l3(&mut fleet);
    let on_b = post_chat_to(&b, &body, &[]).await;
    assert_eq!((on_b.status, on_b.cache()), (200, "MISS"), "purged from L3 too");
    let asked = fleet.cache_service_metric("aurelis_l3_operations_total", &[r#"op="get""#, r#"outcome="miss""#]);
    assert_eq!(asked, 1.0, "L3 was asked and had nothing");
}

/// Two tenants, each a consumer with its own API key (client headers never pick a tenant).
fn two_tenants_model() -> String {
    let consumer = |name: &str, key: &str| {
        format!("{{ name: {name}, tenant: tenant-{name}, key_sha256: ['{}'] }}", aurelis_core::auth::key_sha256(key))
    };
    L3_MODEL.replace(
        "auth: { anonymous: {} }",
        &format!("auth: {{ consumers: [{}, {}] }}", consumer("x", "sk-tenant-x"), consumer("y", "sk-tenant-y")),
    )
}

/// Every Envoy acked the filter configuration the control plane serves now.
fn wait_ecds_acked(fleet: &Fleet) {
    wait_for(fleet, "the ECDS ack of every Envoy", || {
        let status = fleet.control_plane.get("/v1/status").unwrap_or_default();
        let want = &status["versions"]["ecds"];
        let clients = status["clients"].as_array().cloned().unwrap_or_default();
        clients.len() == fleet.envoys.len() && clients.iter().all(|c| &c["types"]["ecds"]["acked_version"] == want)
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_purge_reaches_the_l1_of_every_envoy_and_l2_and_l3() {
    let fleet = l3_fleet_with(two_tenants_model(), L3Store::Embedded, 2);
    let (x, y) = ("Bearer sk-tenant-x", "Bearer sk-tenant-y");
    // Each Envoy fills one entry per tenant (prompts of its own, so the other Envoy's fill is
    // no L2 hit) and serves it again from its L1.
    let prompt = |tenant: &str, envoy: usize| chat(&format!("{tenant}'s question through envoy {envoy}"));
    for (e, envoy) in fleet.envoys.iter().enumerate() {
        for (name, key) in [("x", x), ("y", y)] {
            let first = post_chat_to(&envoy.gateway_url, &prompt(name, e), &[("authorization", key)]).await;
            assert_eq!((first.status, first.cache()), (200, "MISS"), "{}", String::from_utf8_lossy(&first.body));
        }
        wait_for(&fleet, "the L2 stores", || envoy.counter("wasmcustom.aurelis_l2_stores_total.result.ok") == 2);
        for (name, key) in [("x", x), ("y", y)] {
            let again = post_chat_to(&envoy.gateway_url, &prompt(name, e), &[("authorization", key)]).await;
            assert_eq!(again.header("x-aurelis-cache-level"), Some("L1"), "envoy {e} holds {name}'s entry");
        }
    }
    wait_for(&fleet, "the L3 writes", || l3_puts(&fleet, "stored") >= 4.0);
    let upstream = fleet.mocks[0].request_count();

    let scope_x = aurelis_core::key::TenantIdentity::Tenant("tenant-x".into()).scope().key_part();
    let body = serde_json::json!({ "tenant": scope_x });
    let (status, answer) = fleet.control_plane.send("POST", "/v1/cache:purge", &body, Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["purged"].as_u64(), answer["l3_purged"].as_u64()),
        (Some(2), Some(2)),
        "X's two entries left L2 and L3: {answer}"
    );
    assert!(answer["l1_rule"].as_u64().is_some(), "{answer}");
    wait_ecds_acked(&fleet);

    for (e, envoy) in fleet.envoys.iter().enumerate() {
        let purged = post_chat_to(&envoy.gateway_url, &prompt("x", e), &[("authorization", x)]).await;
        // A MISS, not an L2 or L3 hit: gone from every level.
        assert_eq!((purged.status, purged.cache()), (200, "MISS"), "envoy {e}: X's entry was purged");
        let kept = post_chat_to(&envoy.gateway_url, &prompt("y", e), &[("authorization", y)]).await;
        assert_eq!((kept.cache(), kept.header("x-aurelis-cache-level")), ("HIT", Some("L1")), "envoy {e}: Y's stays");
        wait_for(&fleet, "the purge counted", || envoy.counter("wasmcustom.aurelis_l1_purged_total") == 1);
    }
    assert_eq!(fleet.mocks[0].request_count(), upstream + 2, "one upstream call per purged entry, none for Y");
}
