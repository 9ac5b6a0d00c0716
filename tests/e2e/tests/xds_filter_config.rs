//! The filter's configuration over ECDS: changes apply without restarting Envoy or emptying the
//! L1 cache; configs the filter would reject never leave the control plane; a config Envoy
//! rejects anyway (NACK) is reported and the previous one keeps serving.
mod common;
use aurelis_devstack::fleet::{default_model, ANONYMOUS};
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn status(fleet: &Fleet) -> Value {
    fleet.control_plane.get("/v1/status").unwrap_or(Value::Null)
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ecds_acked(fleet: &Fleet) -> bool {
    let s = status(fleet);
    s["clients"][0]["types"]["ecds"]["acked_version"] == s["versions"]["ecds"]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_setting_changes_live_and_keeps_the_cache() {
    let fleet = start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), ..FleetOptions::default() });
    let gw = fleet.envoy().gateway_url.clone();
    let pid = fleet.envoy().process.pid();
    assert_eq!(post_chat_to(&gw, &chat("kept across config changes"), &[]).await.cache(), "MISS");
    assert_eq!(post_chat_to(&gw, &chat("kept across config changes"), &[]).await.cache(), "HIT");

    // Refused before any push: the control plane runs the filter's own validation.
    let pushes = fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[r#"type="ecds""#]);
    let (code, body) = fleet
        .control_plane
        .put("/v1/filter-config", &json!({ "auth": { "anonymous": {} }, "cache": { "ttl_seconds": 0 } }))
        .unwrap();
    assert_eq!(code, 400);
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("cache.ttl_seconds"), "{body}");
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[r#"type="ecds""#]), pushes);

    let (code, body) = fleet
        .control_plane
        .put("/v1/filter-config", &json!({ "auth": { "anonymous": {} }, "cache": { "ttl_seconds": 1 } }))
        .unwrap();
    assert_eq!(code, 200, "{body}");
    wait_for("the new filter config acked", Duration::from_secs(5), || ecds_acked(&fleet));
    assert_eq!(fleet.envoy().process.pid(), pid, "same Envoy process");
    assert_eq!(
        post_chat_to(&gw, &chat("kept across config changes"), &[]).await.cache(),
        "HIT",
        "the L1 cache survived the config change"
    );
    // The new TTL is in effect for new entries.
    assert_eq!(post_chat_to(&gw, &chat("short lived"), &[]).await.cache(), "MISS");
    assert_eq!(post_chat_to(&gw, &chat("short lived"), &[]).await.cache(), "HIT");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(post_chat_to(&gw, &chat("short lived"), &[]).await.cache(), "MISS", "expired after 1 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_envoy_nack_is_reported_and_the_previous_config_keeps_serving() {
    // The module file on the Envoy host is broken after start-up (a bad deploy): Envoy cannot
    // build the next filter config, NACKs it, and keeps the running one.
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("aurelis_filter.wasm");
    std::fs::copy(aurelis_devstack::paths::wasm().unwrap(), &module).unwrap();
    let fleet = start_fleet(FleetOptions {
        model: Some(default_model(ANONYMOUS)),
        wasm_path: Some(module.clone()),
        ..FleetOptions::default()
    });
    let gw = fleet.envoy().gateway_url.clone();
    assert_eq!(post_chat_to(&gw, &chat("served before the nack"), &[]).await.cache(), "MISS");
    std::fs::write(&module, b"this is not a wasm module").unwrap();
    let (code, _) = fleet
        .control_plane
        .put("/v1/filter-config", &json!({ "auth": { "anonymous": {} }, "cache": { "ttl_seconds": 120 } }))
        .unwrap();
    assert_eq!(code, 200);
    wait_for("the NACK in the admin status", Duration::from_secs(10), || {
        !status(&fleet)["clients"][0]["types"]["ecds"]["last_nack"].is_null()
    });
    let s = status(&fleet);
    let nack = &s["clients"][0]["types"]["ecds"]["last_nack"];
    eprintln!("NACK as shown by the admin status: {nack}");
    assert_eq!(nack["version"], s["versions"]["ecds"], "the rejected version is the current one");
    assert!(!nack["message"].as_str().unwrap_or("").is_empty());
    assert_ne!(s["clients"][0]["types"]["ecds"]["acked_version"], s["versions"]["ecds"]);
    assert!(fleet.control_plane.metric("aurelis_cp_xds_nacks_total", &[r#"type="ecds""#]) >= 1.0);
    // The previous configuration (with its cache) still serves.
    let reply = post_chat_to(&gw, &chat("served before the nack"), &[]).await;
    assert_eq!((reply.status, reply.cache()), (200, "HIT"));
    // Not resent: the pushes stay put while nothing changes.
    let pushes = fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[r#"type="ecds""#]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[r#"type="ecds""#]), pushes);
    // Fixed module + a new version: accepted.
    std::fs::copy(aurelis_devstack::paths::wasm().unwrap(), &module).unwrap();
    let (code, _) = fleet
        .control_plane
        .put("/v1/filter-config", &json!({ "auth": { "anonymous": {} }, "cache": { "ttl_seconds": 121 } }))
        .unwrap();
    assert_eq!(code, 200);
    wait_for("the fixed config acked", Duration::from_secs(10), || ecds_acked(&fleet));
}
