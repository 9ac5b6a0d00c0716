//! The state-of-the-world ADS protocol for one stream, without sockets: requests and snapshot
//! changes go in, responses come out. The rules it keeps:
//! - nonces are per stream; a request whose nonce is not the one in flight is stale and ignored;
//! - a request answering the in-flight nonce is an ACK, or a NACK when it has `error_detail`;
//! - a rejected version is not sent again: the next push waits for a new version;
//! - one response per type in flight at a time (the next waits for the ACK);
//! - a client that (re)connects already holding the current version is sent nothing;
//! - make-before-break: the filter config, listener and routes wait until the client has acked
//!   the current clusters and endpoints, so a route never points at a cluster Envoy lacks.
use super::snapshot::Snapshot;
use super::{Outcome, CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, PUSH_ORDER, ROUTE};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq)]
struct Sent {
    version: String,
    names: BTreeSet<String>,
    nonce: String,
    /// The clusters themselves (clusters only): what to keep sending while the routes that
    /// used a removed one are replaced.
    clusters: BTreeMap<String, Any>,
}

#[derive(Debug, Default, Clone)]
struct TypeState {
    subscribed: bool,
    /// Requested resource names; empty (or `*`) means all of them.
    names: BTreeSet<String>,
    in_flight: Option<Sent>,
    acked: Option<Sent>,
    /// The version the client refused last.
    rejected: Option<String>,
    /// The nonce of the latest response of this type (in flight or settled).
    last_nonce: String,
}

#[derive(Debug, Default)]
pub struct SotwState {
    types: BTreeMap<String, TypeState>,
    nonces: u64,
}

impl SotwState {
    #[cfg(test)]
    fn type_state(&self, type_url: &str) -> Option<&TypeState> {
        self.types.get(type_url)
    }

    pub fn handle_request(
        &mut self,
        request: &DiscoveryRequest,
        snapshot: &Snapshot,
    ) -> (Outcome, Vec<DiscoveryResponse>) {
        if !PUSH_ORDER.contains(&request.type_url.as_str()) {
            return (Outcome::Stale, Vec::new());
        }
        let state = self.types.entry(request.type_url.clone()).or_default();
        let names: BTreeSet<String> = request.resource_names.iter().cloned().collect();
        let outcome = if request.response_nonce.is_empty() {
            // A new subscription: first contact, or a reconnect after a control plane restart,
            // in which case the client says which version it holds.
            state.subscribed = true;
            state.names = names;
            state.in_flight = None;
            let resumed =
                !request.version_info.is_empty() && request.version_info == snapshot.version(&request.type_url);
            if resumed {
                let names = wanted_names(state, snapshot, &request.type_url);
                let version = request.version_info.clone();
                state.acked = Some(Sent { version, names, nonce: String::new(), clusters: BTreeMap::new() });
            }
            Outcome::Subscribed { resumed }
        } else if state.in_flight.is_none() && request.response_nonce == state.last_nonce {
            // Envoy asks again this way when it changes its subscription, and for a cluster's
            // endpoints after CDS replaced the cluster: the new cluster keeps warming until an
            // EDS response arrives, even an unchanged one. So answer, even at the same version
            // (never with a version the client rejected).
            state.names = names;
            state.acked = None;
            Outcome::Resubscribed
        } else if state.in_flight.as_ref().is_none_or(|sent| sent.nonce != request.response_nonce) {
            return (Outcome::Stale, Vec::new());
        } else {
            state.names = names;
            let sent = state.in_flight.take();
            let version = sent.as_ref().map(|s| s.version.clone()).unwrap_or_default();
            match &request.error_detail {
                Some(status) => {
                    state.rejected = Some(version.clone());
                    Outcome::Nack { version, message: status.message.clone() }
                }
                None => {
                    state.acked = sent;
                    Outcome::Ack { version }
                }
            }
        };
        (outcome, self.pending(snapshot))
    }

    /// Responses owed after the snapshot changed (or after any request).
    pub fn pending(&mut self, snapshot: &Snapshot) -> Vec<DiscoveryResponse> {
        let mut responses = Vec::new();
        for type_url in PUSH_ORDER {
            if !self.ready(type_url, snapshot) {
                continue;
            }
            // Only the cluster response needs it.
            let users_settled = type_url != CLUSTER || self.cluster_users_settled(snapshot);
            let Some(state) = self.types.get_mut(type_url) else { continue };
            let names = wanted_names(state, snapshot, type_url);
            let mut resources: BTreeMap<String, Any> = snapshot
                .get(type_url)
                .map(|t| {
                    t.resources
                        .iter()
                        .filter(|(n, _)| names.contains(*n))
                        .map(|(n, r)| (n.clone(), r.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let mut version = snapshot.version(type_url);
            if type_url == CLUSTER && !users_settled {
                // Make-before-break for removals: clusters the client holds and the new
                // snapshot drops stay until its listener, routes and filter config no longer
                // use them; then the real version follows.
                let kept: Vec<(String, Any)> = state
                    .acked
                    .iter()
                    .flat_map(|a| a.clusters.iter())
                    .filter(|(n, _)| !resources.contains_key(*n))
                    .map(|(n, r)| (n.clone(), r.clone()))
                    .collect();
                if !kept.is_empty() {
                    version = kept_version(&version);
                    resources.extend(kept);
                }
            }
            let names: BTreeSet<String> = resources.keys().cloned().collect();
            let up_to_date = state.acked.as_ref().is_some_and(|a| a.version == version && a.names == names);
            if up_to_date || state.rejected.as_deref() == Some(version.as_str()) {
                continue;
            }
            self.nonces += 1;
            let nonce = self.nonces.to_string();
            let clusters = if type_url == CLUSTER { resources.clone() } else { BTreeMap::new() };
            state.in_flight = Some(Sent { version: version.clone(), names, nonce: nonce.clone(), clusters });
            state.last_nonce = nonce.clone();
            responses.push(DiscoveryResponse {
                version_info: version,
                resources: resources.into_values().collect(),
                type_url: type_url.to_string(),
                nonce,
                ..Default::default()
            });
        }
        responses
    }

    /// Whether every type that names clusters (listener, routes, filter config) is followed and
    /// holds this snapshot's version. One not subscribed yet counts as unsettled: a
    /// reconnecting Envoy asks for clusters before routes, and a removal must wait for them.
    fn cluster_users_settled(&self, snapshot: &Snapshot) -> bool {
        [LISTENER, ROUTE, EXTENSION_CONFIG].iter().all(|type_url| {
            self.types.get(*type_url).is_some_and(|s| s.subscribed && settled(s, &snapshot.version(type_url)))
        })
    }

    /// Subscribed, nothing in flight, and (for everything but clusters and endpoints) the
    /// client has accepted the clusters and endpoints of this snapshot.
    fn ready(&self, type_url: &str, snapshot: &Snapshot) -> bool {
        let Some(state) = self.types.get(type_url) else { return false };
        if !state.subscribed || state.in_flight.is_some() {
            return false;
        }
        if type_url == CLUSTER || type_url == ENDPOINT {
            return true;
        }
        let Some(clusters) = self.types.get(CLUSTER).filter(|s| s.subscribed) else {
            // Not an Envoy that follows clusters (e.g. a listener-only client): no ordering.
            return true;
        };
        let cluster_version = snapshot.version(CLUSTER);
        if !settled(clusters, &cluster_version) && !settled(clusters, &kept_version(&cluster_version)) {
            return false;
        }
        let endpoint_names: BTreeSet<String> = snapshot.names(ENDPOINT).into_iter().collect();
        if endpoint_names.is_empty() {
            return true;
        }
        self.types.get(ENDPOINT).is_some_and(|endpoints| {
            settled(endpoints, &snapshot.version(ENDPOINT))
                && endpoints.acked.as_ref().is_some_and(|a| a.names.is_superset(&endpoint_names))
        })
    }
}

/// The version of a cluster response that still carries clusters being removed.
fn kept_version(version: &str) -> String {
    format!("{version}+kept")
}

fn settled(state: &TypeState, version: &str) -> bool {
    state.in_flight.is_none() && state.acked.as_ref().is_some_and(|a| a.version == version)
}

/// The names a response for this subscription carries: all for a wildcard, else the requested
/// ones that exist. No names is a wildcard only for clusters and listeners (the spec's legacy
/// wildcard); for the other types it means the client wants none of them.
fn wanted_names(state: &TypeState, snapshot: &Snapshot, type_url: &str) -> BTreeSet<String> {
    let all = snapshot.names(type_url);
    let legacy_wildcard = state.names.is_empty() && (type_url == CLUSTER || type_url == LISTENER);
    if legacy_wildcard || state.names.contains("*") {
        all.into_iter().collect()
    } else {
        all.into_iter().filter(|n| state.names.contains(n)).collect()
    }
}

#[cfg(test)]
mod tests;
