//! The same control plane over incremental (delta) ADS: Envoys configured with `DELTA_GRPC` get
//! the whole configuration, then only what changes; a reconnect with current versions gets
//! nothing.
mod common;
use aurelis_devstack::fleet::{default_model, ANONYMOUS};
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn acked_everything(fleet: &Fleet) -> bool {
    let status = fleet.control_plane.get("/v1/status").unwrap_or(Value::Null);
    let client = &status["clients"][0];
    ["cds", "eds", "ecds", "lds", "rds"].iter().all(|t| {
        !client["types"][*t]["acked_version"].is_null()
            && client["types"][*t]["acked_version"] == status["versions"][*t]
    })
}

fn wait(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_xds_configures_updates_and_resumes() {
    let mut fleet =
        start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), delta: true, ..FleetOptions::default() });
    let gw = fleet.envoy().gateway_url.clone();
    assert_eq!(post_chat_to(&gw, &chat("over delta"), &[]).await.cache(), "MISS");
    assert_eq!(post_chat_to(&gw, &chat("over delta"), &[]).await.cache(), "HIT");
    wait("everything acked", || acked_everything(&fleet));

    // Control plane restart: Envoy reconnects with its resource versions and is sent nothing.
    fleet.stop_control_plane();
    fleet.start_control_plane().unwrap();
    wait("Envoy resumed", || acked_everything(&fleet));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[]), 0.0, "nothing re-pushed");
    assert_eq!(post_chat_to(&gw, &chat("after the restart"), &[]).await.status, 200);

    // A filter setting: only the extension config is sent, and the cache survives.
    let pushes = fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[]);
    let (code, _) = fleet
        .control_plane
        .put("/v1/filter-config", &json!({ "auth": { "anonymous": {} }, "cache": { "ttl_seconds": 120 } }))
        .unwrap();
    assert_eq!(code, 200);
    wait("the new filter config acked", || acked_everything(&fleet));
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[]), pushes + 1.0, "one response");
    assert_eq!(post_chat_to(&gw, &chat("over delta"), &[]).await.cache(), "HIT");
}
