//! The authenticated control plane against real Envoys: xDS over TLS with client certificates
//! from the fleet's throw-away CA. Only an Envoy presenting a certificate for its own node id
//! (URI SAN `spiffe://aurelis/node/<id>`) gets configuration; one without a certificate, or
//! with a valid certificate for another node, gets nothing, and both refusals are counted.
//! Sensitive admin reads need the token. Every wait is on an event (a counter, a listener).
mod common;
use aurelis_devstack::fleet::{default_model, ClientCert, ADMIN_TOKEN, ANONYMOUS};
use aurelis_devstack::process::wait_until;
use aurelis_devstack::stack::{http_get, stat};
use aurelis_devstack::{Fleet, FleetOptions};
use common::*;
use serde_json::Value;
use std::time::Duration;

const REFUSED: &str = "aurelis_cp_xds_refused_streams_total";
const FLEET_STATS_ERRORS: &str = "aurelis_cp_fleet_stats_errors_total";
const HANDSHAKE_FAILURES: &str = "aurelis_cp_xds_tls_handshake_failures_total";
const WAIT: Duration = Duration::from_secs(30);

fn tls_fleet() -> Fleet {
    tls_fleet_speaking(false)
}

/// `Fleet::start` adds `envoy-0` with its own certificate and returns once its gateway
/// listener, pushed over TLS, is bound.
fn tls_fleet_speaking(delta: bool) -> Fleet {
    start_fleet(FleetOptions { model: Some(default_model(ANONYMOUS)), xds_tls: true, delta, ..FleetOptions::default() })
}

/// The node ids the control plane lists as connected.
fn connected_nodes(fleet: &Fleet) -> Vec<String> {
    let status = fleet.control_plane.get("/v1/status").unwrap_or(Value::Null);
    let clients = status["clients"].as_array().cloned().unwrap_or_default();
    clients.iter().filter_map(|c| c["node_id"].as_str().map(String::from)).collect()
}

/// Envoy's own view: which listeners it has (none, for an Envoy that got no configuration).
fn listener_names(admin_url: &str) -> Vec<String> {
    let text = http_get(&format!("{admin_url}/listeners?format=json")).unwrap_or_default();
    let listeners: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let statuses = listeners["listener_statuses"].as_array().cloned().unwrap_or_default();
    statuses.iter().filter_map(|l| l["name"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_envoy_with_its_own_certificate_is_configured_over_tls() {
    // Both flavours: state of the world and incremental (delta) ADS.
    for delta in [false, true] {
        let fleet = tls_fleet_speaking(delta);
        let reply = post_chat_to(&fleet.envoy().gateway_url, &chat("over tls"), &[]).await;
        assert_eq!(
            (reply.status, reply.cache()),
            (200, "MISS"),
            "the listener pushed over TLS serves (delta: {delta})"
        );
        assert_eq!(connected_nodes(&fleet), ["envoy-0"]);
        assert_eq!(stat(&fleet.envoy().admin_url, "control_plane.connected_state"), 1);
        for kind in ["cds", "eds", "ecds", "lds", "rds"] {
            let acks = fleet.control_plane.metric("aurelis_cp_xds_acks_total", &[&format!("type=\"{kind}\"")]);
            assert!(acks >= 1.0, "{kind} acknowledged over TLS (delta: {delta})");
        }
        assert_eq!(fleet.control_plane.metric(REFUSED, &[]), 0.0, "nothing refused");
        assert_eq!(fleet.control_plane.metric(HANDSHAKE_FAILURES, &[]), 0.0, "no failed handshake");
    }
}

#[test]
fn an_envoy_with_another_nodes_certificate_gets_nothing_and_is_counted() {
    let mut fleet = tls_fleet();
    let index = fleet.add_envoy_presenting(&ClientCert::OfNode("envoy-9".into())).unwrap_or_else(|e| panic!("{e:#}"));
    let admin = fleet.envoys[index].admin_url.clone();
    // Refused on its first stream and again on its reconnect: the refusal is stable, not a race.
    wait_until("two node_mismatch refusals", WAIT, || {
        Ok(fleet.control_plane.metric(REFUSED, &["reason=\"node_mismatch\""]) >= 2.0)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.logs()));
    assert!(listener_names(&admin).is_empty(), "no listener reached the refused Envoy");
    assert_eq!(stat(&admin, "cluster_manager.cds.update_success"), 0, "no clusters either");
    assert_eq!(connected_nodes(&fleet), ["envoy-0"], "only the genuine Envoy is listed");
    // Its stats stream (metrics-service sink, same identity rule) is refused too; the genuine
    // Envoy's is taken.
    wait_until("the refused Envoy's stats stream counted", WAIT, || {
        let refused = fleet.control_plane.metric(FLEET_STATS_ERRORS, &["reason=\"node_mismatch\""]);
        Ok(refused >= 1.0 && fleet.control_plane.metric("aurelis_cp_fleet_stats_envoys", &[]) == 1.0)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.logs()));
    let logs = fleet.logs();
    assert!(logs.contains("node id `envoy-1` does not match the client certificate"), "the refusal says why:\n{logs}");
}

#[test]
fn an_envoy_without_a_certificate_gets_nothing() {
    let mut fleet = tls_fleet();
    let index = fleet.add_envoy_presenting(&ClientCert::Missing).unwrap_or_else(|e| panic!("{e:#}"));
    let admin = fleet.envoys[index].admin_url.clone();
    // The handshake is refused (and counted), Envoy tries again and is refused again.
    wait_until("two refused handshakes", WAIT, || {
        Ok(fleet.control_plane.metric(HANDSHAKE_FAILURES, &["reason=\"no_certificate\""]) >= 2.0)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", fleet.logs()));
    assert_eq!(stat(&admin, "control_plane.connected_state"), 0);
    assert!(listener_names(&admin).is_empty(), "no listener reached the Envoy without a certificate");
    assert_eq!(stat(&admin, "cluster_manager.cds.update_success"), 0, "no clusters either");
    assert_eq!(connected_nodes(&fleet), ["envoy-0"]);
    assert_eq!(fleet.control_plane.metric("aurelis_cp_xds_connected_clients", &[]), 1.0);
}

#[test]
fn sensitive_admin_reads_need_the_token() {
    let fleet = tls_fleet();
    let admin = &fleet.control_plane.admin_url;
    for path in ["/v1/filter-config", "/v1/status", "/v1/models", "/v1/endpoints"] {
        for token in [None, Some("wrong-token-wrong-token-wrong-token")] {
            let mut request = ureq::get(&format!("{admin}{path}")).timeout(Duration::from_secs(5));
            if let Some(token) = token {
                request = request.set("authorization", &format!("Bearer {token}"));
            }
            match request.call() {
                Err(ureq::Error::Status(status, _)) => assert_eq!(status, 401, "{path} {token:?}"),
                other => panic!("{path} {token:?}: expected 401, got {other:?}"),
            }
        }
        let answer = ureq::get(&format!("{admin}{path}"))
            .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .map(|r| r.status());
        assert_eq!(answer.ok(), Some(200), "{path} with the token");
    }
    assert!(http_get(&format!("{admin}/healthz")).is_ok(), "probes stay open");
    assert!(http_get(&format!("{admin}/readyz")).is_ok(), "probes stay open");
}
