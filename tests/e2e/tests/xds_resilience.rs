//! The fleet survives its control plane: stopped, Envoys keep serving their last config;
//! restarted, they reconnect and are sent nothing (versions are content hashes); a restarted
//! Envoy receives the whole configuration.
mod common;
use aurelis_devstack::fleet::{default_model, ANONYMOUS};
use aurelis_devstack::FleetOptions;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_and_envoy_restarts() {
    let mut fleet = start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), ..FleetOptions::default() });
    let gw = fleet.envoy().gateway_url.clone();
    assert_eq!(post_chat_to(&gw, &chat("before the outage"), &[]).await.cache(), "MISS");

    // 1. Control plane down: Envoy serves its last configuration (cache and upstream).
    fleet.stop_control_plane();
    assert_eq!(post_chat_to(&gw, &chat("before the outage"), &[]).await.cache(), "HIT");
    let during = post_chat_to(&gw, &chat("during the outage"), &[]).await;
    assert_eq!((during.status, during.cache()), (200, "MISS"));

    // 2. Back with the same model: Envoy reconnects, resumes at the same versions, gets nothing.
    fleet.start_control_plane().unwrap();
    let started = Instant::now();
    loop {
        let status = fleet.control_plane.get("/v1/status").unwrap_or(Value::Null);
        let client = &status["clients"][0];
        let resumed = ["cds", "eds", "ecds", "lds", "rds"].iter().all(|t| {
            !client["types"][*t]["acked_version"].is_null()
                && client["types"][*t]["acked_version"] == status["versions"][*t]
        });
        if resumed {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "Envoy did not reconnect: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("Envoy reconnected after {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[]), 0.0, "nothing re-pushed");
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_connected_clients", &[]), 1.0);
    assert_eq!(post_chat_to(&gw, &chat("during the outage"), &[]).await.cache(), "HIT");

    // 3. Envoy restarted: a fresh process gets the full configuration and serves.
    fleet.restart_envoy(0).unwrap();
    let gw = fleet.envoy().gateway_url.clone();
    for kind in ["cds", "eds", "ecds", "lds", "rds"] {
        let pushed = fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[&format!("type=\"{kind}\"")]);
        assert!(pushed >= 1.0, "{kind} pushed to the new Envoy");
    }
    let reply = post_chat_to(&gw, &chat("after the envoy restart"), &[]).await;
    assert_eq!((reply.status, reply.cache()), (200, "MISS"));
    // Converged means quiet: re-requests are answered, but nothing ping-pongs.
    let pushes = fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_pushes_total", &[]), pushes, "no pushes once converged");
}

const RENAMED: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers: [{ name: upstream-before, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }]
models: [{ name: gpt-4o-mini, providers: [{ provider: upstream-before, weight: 1 }] }]
filter: { auth: { anonymous: {} } }
";

/// A model file that renames a provider, applied by restarting the control plane: Envoy gets
/// the new cluster first, then the routes, and only then loses the old cluster, so requests
/// sent all along never meet a route to a cluster Envoy no longer has. Delta ADS: a restarted
/// control plane learns from `initial_resource_versions` which clusters Envoy holds and can
/// hold back their removal; over state of the world it never saw them, and cannot.
#[tokio::test(flavor = "multi_thread")]
async fn renaming_a_provider_loses_no_request() {
    let mut fleet = start_fleet(FleetOptions { model: Some(RENAMED.into()), delta: true, ..FleetOptions::default() });
    let gw = fleet.envoy().gateway_url.clone();
    let clusters_url = format!("{}/clusters", fleet.envoy().admin_url);
    let path = fleet.dir().join("model.yaml");
    let renamed = std::fs::read_to_string(&path).unwrap().replace("upstream-before", "upstream-after");
    fleet.stop_control_plane();
    std::fs::write(&path, renamed).unwrap();
    fleet.start_control_plane().unwrap();
    let body = chat("keep flowing");
    let started = Instant::now();
    loop {
        let replies =
            futures::future::join_all((0..8).map(|_| post_chat_to(&gw, &body, &[("cache-control", "no-store")]))).await;
        for r in &replies {
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        let clusters = aurelis_devstack::stack::http_get(&clusters_url).unwrap_or_default();
        if clusters.contains("upstream-after::") && !clusters.contains("upstream-before::") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "not converged: {clusters}");
    }
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_nacks_total", &[]), 0.0, "Envoy accepted every step");
}
