//! The state-of-the-world ADS protocol state machine, driven by hand-written requests: no sockets, no Envoy.
use super::*;
use crate::model::Model;
use crate::xds::test_support::{snapshot, snapshot_with};
use crate::xds::{EXTENSION_CONFIG, LISTENER, ROUTE};
use aurelis_core::config::FilterConfig;
use envoy_types::pb::google::rpc::Status;
use std::collections::BTreeSet;

fn request(type_url: &str, version: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

fn nack(type_url: &str, version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        error_detail: Some(Status { code: 3, message: "rejected: bad config".into(), details: vec![] }),
        ..request(type_url, version, nonce, &[])
    }
}

fn types(responses: &[DiscoveryResponse]) -> Vec<&str> {
    responses.iter().map(|r| crate::xds::short_name(&r.type_url)).collect()
}

/// Plays Envoy's start-up: CDS+LDS, then EDS, RDS and ECDS as they are discovered, ACKing all.
fn converge(sotw: &mut SotwState, snap: &Snapshot) -> Vec<String> {
    let mut log = Vec::new();
    let mut queue = Vec::new();
    for t in [CLUSTER, LISTENER] {
        queue.extend(sotw.handle_request(&request(t, "", "", &[]), snap).1);
    }
    while let Some(response) = queue.pop() {
        log.push(crate::xds::short_name(&response.type_url).to_string());
        let names: &[&str] = match response.type_url.as_str() {
            ENDPOINT => &["mock"],
            ROUTE => &["aurelis_routes"],
            EXTENSION_CONFIG => &["aurelis.filter"],
            _ => &[],
        };
        queue.extend(
            sotw.handle_request(&request(&response.type_url, &response.version_info, &response.nonce, names), snap).1,
        );
        // Discovering clusters subscribes endpoints; the listener, its routes and filter config.
        if response.type_url == CLUSTER {
            queue.extend(sotw.handle_request(&request(ENDPOINT, "", "", &["mock"]), snap).1);
        }
        if response.type_url == LISTENER {
            queue.extend(sotw.handle_request(&request(ROUTE, "", "", &["aurelis_routes"]), snap).1);
            queue.extend(sotw.handle_request(&request(EXTENSION_CONFIG, "", "", &["aurelis.filter"]), snap).1);
        }
    }
    log
}

#[test]
fn listener_waits_for_clusters_and_endpoints() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    let (_, r) = sotw.handle_request(&request(CLUSTER, "", "", &[]), &snap);
    assert_eq!(types(&r), ["cds"]);
    let (_, r) = sotw.handle_request(&request(LISTENER, "", "", &[]), &snap);
    assert!(r.is_empty(), "no listener before the clusters are acked");
    let cds_nonce = sotw.type_state(CLUSTER).unwrap().in_flight.clone().unwrap().nonce;
    let (outcome, r) = sotw.handle_request(&request(CLUSTER, &snap.version(CLUSTER), &cds_nonce, &[]), &snap);
    assert!(matches!(outcome, Outcome::Ack { .. }));
    assert!(r.is_empty(), "clusters acked, but their endpoints are not yet");
    let (_, r) = sotw.handle_request(&request(ENDPOINT, "", "", &["mock"]), &snap);
    assert_eq!(types(&r), ["eds"]);
    let (_, r) = sotw.handle_request(&request(ENDPOINT, &snap.version(ENDPOINT), &r[0].nonce, &["mock"]), &snap);
    assert_eq!(types(&r), ["lds"], "endpoints acked: now the listener");
}

#[test]
fn a_full_start_up_converges_and_then_sends_nothing() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    let log = converge(&mut sotw, &snap);
    let sorted: BTreeSet<_> = log.iter().map(String::as_str).collect();
    assert_eq!(sorted, BTreeSet::from(["cds", "eds", "ecds", "lds", "rds"]), "{log:?}");
    assert_eq!(log.len(), 5, "each type sent exactly once: {log:?}");
    assert!(sotw.pending(&snap).is_empty());
}

#[test]
fn a_change_sends_only_the_changed_type() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    converge(&mut sotw, &snap);
    let mut model = Model::embedded_default();
    model.models[0].providers[0].weight = 7;
    let next = snapshot_with(&model, &FilterConfig::default());
    assert_eq!(types(&sotw.pending(&next)), ["rds"]);
    let mut filter = FilterConfig::default();
    filter.cache.ttl_seconds = 42;
    let third = snapshot_with(&model, &filter);
    assert_eq!(types(&sotw.pending(&third)), ["ecds"], "rds is in flight (unanswered): only ecds goes");
}

#[test]
fn a_nacked_version_is_not_resent_until_it_changes() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    converge(&mut sotw, &snap);
    let mut filter = FilterConfig::default();
    filter.cache.ttl_seconds = 42;
    let bad = snapshot_with(&Model::embedded_default(), &filter);
    let r = sotw.pending(&bad);
    assert_eq!(types(&r), ["ecds"]);
    let (outcome, again) =
        sotw.handle_request(&nack(EXTENSION_CONFIG, &snap.version(EXTENSION_CONFIG), &r[0].nonce), &bad);
    assert_eq!(
        outcome,
        Outcome::Nack { version: bad.version(EXTENSION_CONFIG), message: "rejected: bad config".into() }
    );
    assert!(again.is_empty(), "the rejected version is not sent again");
    assert!(sotw.pending(&bad).is_empty());
    assert_eq!(sotw.type_state(EXTENSION_CONFIG).unwrap().rejected, Some(bad.version(EXTENSION_CONFIG)));
    filter.cache.ttl_seconds = 43;
    let fixed = snapshot_with(&Model::embedded_default(), &filter);
    assert_eq!(types(&sotw.pending(&fixed)), ["ecds"], "a new version is sent");
}

/// Envoy re-requests a cluster's endpoints after CDS replaced the cluster (the new one warms
/// until an EDS response arrives): the request carries the latest, already acked, nonce at the
/// same version, and must be answered even though nothing changed.
#[test]
fn a_re_request_after_an_ack_is_answered_at_the_same_version() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    converge(&mut sotw, &snap);
    let acked = sotw.type_state(ENDPOINT).unwrap().last_nonce.clone();
    let again = request(ENDPOINT, &snap.version(ENDPOINT), &acked, &["mock"]);
    let (outcome, r) = sotw.handle_request(&again, &snap);
    assert_eq!(outcome, Outcome::Resubscribed);
    assert_eq!(types(&r), ["eds"]);
    assert_eq!(r[0].version_info, snap.version(ENDPOINT));
    assert_eq!(r[0].resources.len(), 1);
    // Its ACK settles it; nothing more is sent (no loop).
    let (outcome, more) = sotw.handle_request(&request(ENDPOINT, &r[0].version_info, &r[0].nonce, &["mock"]), &snap);
    assert_eq!(outcome, Outcome::Ack { version: snap.version(ENDPOINT) });
    assert!(more.is_empty() && sotw.pending(&snap).is_empty());
}

#[test]
fn a_subscription_change_after_an_ack_is_served() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    converge(&mut sotw, &snap);
    let acked = sotw.type_state(ENDPOINT).unwrap().last_nonce.clone();
    // Envoy drops its only EDS cluster, then asks for it again: both are answered.
    let (outcome, r) = sotw.handle_request(&request(ENDPOINT, &snap.version(ENDPOINT), &acked, &["gone"]), &snap);
    assert_eq!(outcome, Outcome::Resubscribed);
    assert_eq!((types(&r), r[0].resources.len()), (vec!["eds"], 0), "only the names asked for, none exist");
    assert_eq!(sotw.type_state(ENDPOINT).unwrap().names, BTreeSet::from(["gone".to_string()]));
}

#[test]
fn no_names_means_all_clusters_but_no_endpoints() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    converge(&mut sotw, &snap);
    let acked = sotw.type_state(ENDPOINT).unwrap().last_nonce.clone();
    // Envoy dropped its last EDS cluster: an empty list unsubscribes, it is not a wildcard.
    let (_, r) = sotw.handle_request(&request(ENDPOINT, &snap.version(ENDPOINT), &acked, &[]), &snap);
    assert_eq!((types(&r), r[0].resources.len()), (vec!["eds"], 0));
    let (_, r) = SotwState::default().handle_request(&request(CLUSTER, "", "", &[]), &snap);
    assert_eq!(r[0].resources.len(), snap.names(CLUSTER).len(), "clusters: empty is the legacy wildcard");
}

#[test]
fn a_re_request_never_brings_back_a_rejected_version() {
    let mut filter = FilterConfig::default();
    filter.cache.ttl_seconds = 42;
    let bad = snapshot_with(&Model::embedded_default(), &filter);
    let mut sotw = SotwState::default();
    converge(&mut sotw, &snapshot());
    let r = sotw.pending(&bad);
    sotw.handle_request(&nack(EXTENSION_CONFIG, "", &r[0].nonce), &bad);
    let (_, again) = sotw.handle_request(&request(EXTENSION_CONFIG, "", &r[0].nonce, &["aurelis.filter"]), &bad);
    assert!(again.is_empty(), "the rejected version is not sent again");
}

/// One provider per model: no failover clusters, so CDS holds exactly the two providers.
fn two_cluster_model(second: &str) -> Model {
    Model::from_yaml(&format!(
        "providers:\n\
         - {{ name: mock, base_url: 'http://127.0.0.1:8000/v1' }}\n\
         - {{ name: {second}, base_url: 'http://127.0.0.1:8001/v1' }}\n\
         models:\n\
         - {{ name: m, providers: [{{ provider: mock, weight: 1 }}] }}\n\
         - {{ name: n, providers: [{{ provider: {second}, weight: 1 }}] }}\n"
    ))
    .unwrap()
}

fn cluster_names(response: &DiscoveryResponse) -> Vec<String> {
    let mut names: Vec<String> = response
        .resources
        .iter()
        .map(|any| {
            <envoy_types::pb::envoy::config::cluster::v3::Cluster as prost::Message>::decode(any.value.as_slice())
                .unwrap()
                .name
        })
        .collect();
    names.sort();
    names
}

/// Renaming a provider: the old cluster stays until the routes that use it are replaced, so
/// no request is routed to a cluster Envoy no longer has.
#[test]
fn a_removed_cluster_goes_only_after_the_routes_stop_using_it() {
    let old = snapshot_with(&two_cluster_model("old"), &FilterConfig::default());
    let new = snapshot_with(&two_cluster_model("renamed"), &FilterConfig::default());
    let mut sotw = SotwState::default();
    // Converge on the old model (its EDS names are mock and old).
    let mut queue = Vec::new();
    for t in [CLUSTER, LISTENER] {
        queue.extend(sotw.handle_request(&request(t, "", "", &[]), &old).1);
    }
    queue.extend(sotw.handle_request(&request(ENDPOINT, "", "", &["mock", "old"]), &old).1);
    queue.extend(sotw.handle_request(&request(ROUTE, "", "", &["aurelis_routes"]), &old).1);
    queue.extend(sotw.handle_request(&request(EXTENSION_CONFIG, "", "", &["aurelis.filter"]), &old).1);
    while let Some(r) = queue.pop() {
        let names: Vec<String> = sotw.type_state(&r.type_url).unwrap().names.iter().cloned().collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        queue.extend(sotw.handle_request(&request(&r.type_url, &r.version_info, &r.nonce, &names), &old).1);
    }
    assert!(sotw.pending(&old).is_empty(), "converged");

    // Phase 1: clusters old + renamed (endpoints may change alongside); routes wait for them.
    let first = sotw.pending(&new);
    let cds = first.iter().find(|r| r.type_url == CLUSTER).unwrap();
    assert_eq!(cluster_names(cds), ["mock", "old", "renamed"]);
    assert!(!types(&first).contains(&"rds"), "routes only after the clusters are held");
    let mut owed = first.clone();
    let mut cds_after = Vec::new();
    let mut resubscribed = false;
    while let Some(response) = owed.pop() {
        if response.type_url == CLUSTER && response.nonce != cds.nonce {
            cds_after.push(response.clone());
        }
        let names: Vec<String> = sotw.type_state(&response.type_url).unwrap().names.iter().cloned().collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        owed.extend(
            sotw.handle_request(&request(&response.type_url, &response.version_info, &response.nonce, &names), &new).1,
        );
        if response.type_url == CLUSTER && !resubscribed {
            // Envoy follows the new cluster's endpoints.
            resubscribed = true;
            let last = sotw.type_state(ENDPOINT).unwrap().last_nonce.clone();
            if sotw.type_state(ENDPOINT).unwrap().in_flight.is_none() {
                owed.extend(sotw.handle_request(&request(ENDPOINT, "", &last, &["mock", "old", "renamed"]), &new).1);
            }
        }
    }
    // Phase 2: once the routes of the new model are held, the old cluster goes.
    assert_eq!(cds_after.len(), 1, "one more cluster response");
    assert_eq!(cluster_names(&cds_after[0]), ["mock", "renamed"]);
    assert_eq!(cds_after[0].version_info, new.version(CLUSTER));
    assert_eq!(sotw.type_state(ROUTE).unwrap().acked.as_ref().unwrap().version, new.version(ROUTE));
    assert!(sotw.pending(&new).is_empty(), "converged on the new model");
}

#[test]
fn stale_nonces_are_ignored() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    let (_, r) = sotw.handle_request(&request(CLUSTER, "", "", &[]), &snap);
    let (outcome, again) = sotw.handle_request(&request(CLUSTER, "", "999", &[]), &snap);
    assert_eq!(outcome, Outcome::Stale);
    assert!(again.is_empty());
    assert!(sotw.type_state(CLUSTER).unwrap().in_flight.is_some(), "still waiting for {}", r[0].nonce);
    let (outcome, _) = sotw.handle_request(&request("type.googleapis.com/unknown", "", "", &[]), &snap);
    assert_eq!(outcome, Outcome::Stale, "types we do not serve are ignored");
}

#[test]
fn a_client_resuming_at_our_versions_is_sent_nothing() {
    let snap = snapshot();
    let mut sotw = SotwState::default();
    for (t, names) in [
        (CLUSTER, vec![]),
        (ENDPOINT, vec!["mock"]),
        (LISTENER, vec![]),
        (ROUTE, vec!["aurelis_routes"]),
        (EXTENSION_CONFIG, vec!["aurelis.filter"]),
    ] {
        let (outcome, r) = sotw.handle_request(&request(t, &snap.version(t), "", &names), &snap);
        assert_eq!(outcome, Outcome::Subscribed { resumed: true });
        assert!(r.is_empty(), "{t}: nothing to send");
    }
    // A client holding an older version gets the current one.
    let mut other = SotwState::default();
    let (outcome, r) = other.handle_request(&request(CLUSTER, "old", "", &[]), &snap);
    assert_eq!(outcome, Outcome::Subscribed { resumed: false });
    assert_eq!(types(&r), ["cds"]);
}

#[test]
fn versions_are_content_hashes() {
    assert_eq!(snapshot(), snapshot(), "same inputs, same versions and bytes");
    let mut model = Model::embedded_default();
    model.models[0].providers[0].weight = 7;
    let changed = snapshot_with(&model, &FilterConfig::default());
    let base = snapshot();
    assert_ne!(changed.version(ROUTE), base.version(ROUTE));
    for t in [CLUSTER, ENDPOINT, LISTENER, EXTENSION_CONFIG] {
        assert_eq!(changed.version(t), base.version(t), "{t} unchanged");
    }
}
