//! Incremental ADS, driven by hand-written requests: no sockets, no Envoy.
use super::*;
use crate::model::Model;
use crate::xds::test_support::{snapshot, snapshot_with};
use crate::xds::{EXTENSION_CONFIG, ROUTE};
use aurelis_core::config::FilterConfig;
use envoy_types::pb::google::rpc::Status;

fn subscribe(type_url: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }
}

fn short(responses: &[DeltaDiscoveryResponse]) -> Vec<&str> {
    responses.iter().map(|r| crate::xds::short_name(&r.type_url)).collect()
}

/// Plays Envoy: wildcard CDS and LDS, then EDS/RDS/ECDS by name, ACKing everything.
fn converge(state: &mut DeltaState, snap: &Snapshot) -> Vec<String> {
    let mut log = Vec::new();
    let mut queue = Vec::new();
    for t in [CLUSTER, LISTENER] {
        queue.extend(state.handle_request(&subscribe(t, &[]), snap).1);
    }
    while let Some(response) = queue.pop() {
        log.push(crate::xds::short_name(&response.type_url).to_string());
        queue.extend(state.handle_request(&ack(&response), snap).1);
        if response.type_url == CLUSTER && !state.types.contains_key(ENDPOINT) {
            // Envoy follows the endpoints of every EDS cluster it was given.
            let names = snap.names(ENDPOINT);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            queue.extend(state.handle_request(&subscribe(ENDPOINT, &names), snap).1);
        }
        if response.type_url == LISTENER {
            queue.extend(state.handle_request(&subscribe(ROUTE, &["aurelis_routes"]), snap).1);
            queue.extend(state.handle_request(&subscribe(EXTENSION_CONFIG, &["aurelis.filter"]), snap).1);
        }
    }
    log
}

#[test]
fn start_up_converges_in_make_before_break_order() {
    let snap = snapshot();
    let mut state = DeltaState::default();
    let (_, first) = state.handle_request(&subscribe(CLUSTER, &[]), &snap);
    assert_eq!(short(&first), ["cds"]);
    let (_, r) = state.handle_request(&subscribe(LISTENER, &[]), &snap);
    assert!(r.is_empty(), "no listener before clusters and endpoints are held");
    let log = converge(&mut DeltaState::default(), &snap);
    assert_eq!(log.len(), 5, "{log:?}");
    let mut state = DeltaState::default();
    converge(&mut state, &snap);
    assert!(state.pending(&snap).is_empty());
}

#[test]
fn only_changed_resources_are_sent() {
    let snap = snapshot();
    let mut state = DeltaState::default();
    converge(&mut state, &snap);
    let mut model = Model::embedded_default();
    model.models[0].providers[0].weight = 7;
    let next = snapshot_with(&model, &FilterConfig::default());
    let r = state.pending(&next);
    assert_eq!(short(&r), ["rds"]);
    assert_eq!(r[0].resources.len(), 1);
    assert_eq!(r[0].resources[0].name, "aurelis_routes");
    assert_eq!(r[0].resources[0].version, next.get(ROUTE).unwrap().resource_versions["aurelis_routes"]);
}

#[test]
fn a_removed_cluster_is_named_in_removed_resources() {
    let mut model = Model::embedded_default();
    model.providers.push(crate::model::Provider { name: "extra".into(), ..model.providers[0].clone() });
    let with_extra = snapshot_with(&model, &FilterConfig::default());
    let mut state = DeltaState::default();
    converge(&mut state, &with_extra);
    // Nothing uses `extra`: its removal goes at once (renames wait: see the e2e test
    // `renaming_a_provider_loses_no_request`).
    let r = state.pending(&snapshot());
    let cds = r.iter().find(|r| r.type_url == CLUSTER).unwrap();
    assert_eq!(cds.removed_resources, vec!["extra".to_string()]);
    assert!(cds.resources.is_empty());
}

#[test]
fn a_nacked_resource_version_is_not_resent() {
    let snap = snapshot();
    let mut state = DeltaState::default();
    converge(&mut state, &snap);
    let mut filter = FilterConfig::default();
    filter.cache.ttl_seconds = 42;
    let bad = snapshot_with(&Model::embedded_default(), &filter);
    let r = state.pending(&bad);
    assert_eq!(short(&r), ["ecds"]);
    let nack = DeltaDiscoveryRequest {
        error_detail: Some(Status { code: 3, message: "no".into(), details: vec![] }),
        ..ack(&r[0])
    };
    let (outcome, again) = state.handle_request(&nack, &bad);
    assert!(matches!(outcome, Outcome::Nack { .. }));
    assert!(again.is_empty());
    assert!(state.pending(&bad).is_empty(), "not resent");
    filter.cache.ttl_seconds = 43;
    assert_eq!(short(&state.pending(&snapshot_with(&Model::embedded_default(), &filter))), ["ecds"]);
}

#[test]
fn a_reconnect_with_current_versions_gets_nothing() {
    let snap = snapshot();
    let mut state = DeltaState::default();
    for (t, names) in [
        (CLUSTER, vec![]),
        (ENDPOINT, vec!["mock"]),
        (LISTENER, vec![]),
        (ROUTE, vec!["aurelis_routes"]),
        (EXTENSION_CONFIG, vec!["aurelis.filter"]),
    ] {
        let mut request = subscribe(t, &names);
        request.initial_resource_versions =
            snap.get(t).unwrap().resource_versions.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let (outcome, r) = state.handle_request(&request, &snap);
        assert_eq!(outcome, Outcome::Subscribed { resumed: true }, "{t}");
        assert!(r.is_empty(), "{t}: nothing to send");
    }
}

/// A NACK does not say which resource failed: once the operator changes anything of the type,
/// every resource the client lacks is offered again, not only the changed one, so one bad
/// cluster cannot keep a good one (and everything gated on it) away for good.
#[test]
fn after_a_nack_a_new_version_offers_everything_the_client_lacks() {
    let model = |timeout: u64| {
        Model::from_yaml(&format!(
            "providers:\n\
             - {{ name: mock, base_url: 'http://127.0.0.1:8000/v1' }}\n\
             - {{ name: extra, base_url: 'http://127.0.0.1:8001/v1', limits: {{ connect_timeout_ms: {timeout} }} }}\n\
             models:\n\
             - {{ name: m, providers: [{{ provider: mock, weight: 1 }}] }}\n\
             - {{ name: n, providers: [{{ provider: extra, weight: 1 }}] }}\n"
        ))
        .unwrap()
    };
    let mut state = DeltaState::default();
    let (_, r) = state.handle_request(&subscribe(CLUSTER, &[]), &snapshot_with(&model(1000), &FilterConfig::default()));
    assert_eq!(r[0].resources.len(), 2);
    let nack = DeltaDiscoveryRequest {
        error_detail: Some(Status { code: 3, message: "extra: bad".into(), details: vec![] }),
        ..ack(&r[0])
    };
    let (_, again) = state.handle_request(&nack, &snapshot_with(&model(1000), &FilterConfig::default()));
    assert!(again.is_empty(), "not resent at the same version");
    let fixed = state.pending(&snapshot_with(&model(2000), &FilterConfig::default()));
    let names: Vec<&str> = fixed[0].resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["extra", "mock"], "the unchanged cluster comes along");
}
