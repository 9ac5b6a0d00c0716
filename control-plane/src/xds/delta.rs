//! Incremental (delta) ADS for one stream, without sockets, beside the state-of-the-world
//! `sotw`. The client tells us what it has (`initial_resource_versions` on reconnect), what it
//! subscribes to and unsubscribes from; we send only resources whose content changed (each has
//! its own content-hash version) and the names of removed ones. The same rules as SotW apply:
//! nonces per stream, ACK/NACK by nonce, a rejected resource version is not sent again, one
//! response per type in flight, and the filter config, listener and routes wait until the
//! client has the current clusters and endpoints.
use super::snapshot::Snapshot;
use super::{Outcome, CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, PUSH_ORDER, ROUTE};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use std::collections::{BTreeMap, BTreeSet};

/// A response awaiting its ACK: per name, the version sent, or `None` for a removal.
#[derive(Debug, Clone)]
struct InFlight {
    nonce: String,
    system_version: String,
    changes: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Default, Clone)]
struct TypeState {
    /// Everything of this type (listeners and clusters, when no names are given).
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client holds: name → version.
    known: BTreeMap<String, String>,
    in_flight: Option<InFlight>,
    /// Resource versions the client refused, and the type's system version when it did: not
    /// sent again while that version stands. A NACK does not say which resource failed, so
    /// once anything of the type changes, everything the client lacks is offered again.
    rejected: BTreeMap<String, String>,
    rejected_at: String,
}

#[derive(Debug, Default)]
pub struct DeltaState {
    types: BTreeMap<String, TypeState>,
    nonces: u64,
}

impl DeltaState {
    pub fn handle_request(
        &mut self,
        request: &DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> (Outcome, Vec<DeltaDiscoveryResponse>) {
        let type_url = request.type_url.as_str();
        if !PUSH_ORDER.contains(&type_url) {
            return (Outcome::Stale, Vec::new());
        }
        let first = !self.types.contains_key(type_url);
        let state = self.types.entry(type_url.to_string()).or_default();
        let mut outcome = Outcome::Subscribed { resumed: false };
        if first {
            state.known = request.initial_resource_versions.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let wildcard_type = type_url == CLUSTER || type_url == LISTENER;
            state.wildcard = wildcard_type && request.resource_names_subscribe.iter().all(|n| n == "*");
            let current = snapshot.get(type_url).map(|t| &t.resource_versions);
            let resumed =
                !state.known.is_empty() && state.known.iter().all(|(n, v)| current.and_then(|c| c.get(n)) == Some(v));
            outcome = Outcome::Subscribed { resumed };
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.names.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            }
            state.names.remove(name);
            // The client drops what it unsubscribed from.
            state.known.remove(name);
        }
        if !request.response_nonce.is_empty() {
            match state.in_flight.take() {
                Some(sent) if sent.nonce == request.response_nonce => match &request.error_detail {
                    Some(status) => {
                        state.rejected =
                            sent.changes.iter().filter_map(|(n, v)| Some((n.clone(), v.clone()?))).collect();
                        state.rejected_at = sent.system_version.clone();
                        outcome = Outcome::Nack { version: sent.system_version, message: status.message.clone() };
                    }
                    None => {
                        for (name, version) in sent.changes {
                            match version {
                                Some(v) => state.known.insert(name, v),
                                None => state.known.remove(&name),
                            };
                        }
                        outcome = Outcome::Ack { version: sent.system_version };
                    }
                },
                Some(other) => {
                    // Answers an older response while a newer one is out: ignore.
                    state.in_flight = Some(other);
                    return (Outcome::Stale, Vec::new());
                }
                // Nothing out: a subscription change (applied above); answer it.
                None => outcome = Outcome::Resubscribed,
            }
        }
        (outcome, self.pending(snapshot))
    }

    pub fn pending(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let mut responses = Vec::new();
        for type_url in PUSH_ORDER {
            if !self.ready(type_url, snapshot) {
                continue;
            }
            // Only the cluster response needs it.
            let users_settled = type_url != CLUSTER || self.cluster_users_settled(snapshot);
            let Some(state) = self.types.get_mut(type_url) else { continue };
            let (changed, mut removed) = diff(state, snapshot, type_url);
            if type_url == CLUSTER && !users_settled {
                // Make-before-break for removals: a cluster goes only once the listener,
                // routes and filter config that used it are replaced.
                removed.clear();
            }
            if changed.is_empty() && removed.is_empty() {
                continue;
            }
            self.nonces += 1;
            let nonce = self.nonces.to_string();
            let system_version = snapshot.version(type_url);
            let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
            let mut resources = Vec::new();
            for (name, version, any) in changed {
                changes.insert(name.clone(), Some(version.clone()));
                resources.push(Resource { name, version, resource: Some(any), ..Default::default() });
            }
            for name in &removed {
                changes.insert(name.clone(), None);
            }
            state.in_flight = Some(InFlight { nonce: nonce.clone(), system_version: system_version.clone(), changes });
            responses.push(DeltaDiscoveryResponse {
                system_version_info: system_version,
                resources,
                type_url: type_url.to_string(),
                removed_resources: removed,
                nonce,
                ..Default::default()
            });
        }
        responses
    }

    /// Whether the client follows and holds the current listener, routes and filter config.
    /// One not subscribed yet counts as unsettled: a reconnecting Envoy asks for clusters
    /// before routes, and a removal must wait for them.
    fn cluster_users_settled(&self, snapshot: &Snapshot) -> bool {
        [LISTENER, ROUTE, EXTENSION_CONFIG].iter().all(|type_url| {
            self.types.get(*type_url).is_some_and(|state| {
                state.in_flight.is_none()
                    && snapshot.get(type_url).is_none_or(|t| {
                        t.resources
                            .keys()
                            .filter(|n| state.wildcard || state.names.contains(*n))
                            .all(|n| t.resource_versions.get(n).is_some_and(|v| state.known.get(n) == Some(v)))
                    })
            })
        })
    }

    /// Same ordering rule as state of the world (see `sotw::SotwState::ready`).
    fn ready(&self, type_url: &str, snapshot: &Snapshot) -> bool {
        let Some(state) = self.types.get(type_url) else { return false };
        if state.in_flight.is_some() {
            return false;
        }
        if type_url == CLUSTER || type_url == ENDPOINT {
            return true;
        }
        let Some(clusters) = self.types.get(CLUSTER) else { return true };
        let holds_all = |state: &TypeState, type_url: &str| {
            state.in_flight.is_none()
                && snapshot
                    .get(type_url)
                    .is_none_or(|t| t.resource_versions.iter().all(|(n, v)| state.known.get(n) == Some(v)))
        };
        if !holds_all(clusters, CLUSTER) {
            return false;
        }
        let endpoints_needed = snapshot.get(ENDPOINT).is_some_and(|t| !t.resources.is_empty());
        !endpoints_needed || self.types.get(ENDPOINT).is_some_and(|e| holds_all(e, ENDPOINT))
    }
}

type Changed = Vec<(String, String, envoy_types::pb::google::protobuf::Any)>;

/// Subscribed resources whose version differs from the client's (and was not refused), and
/// names the client holds that no longer exist.
fn diff(state: &TypeState, snapshot: &Snapshot, type_url: &str) -> (Changed, Vec<String>) {
    let Some(current) = snapshot.get(type_url) else {
        return (Vec::new(), state.known.keys().cloned().collect());
    };
    let wanted = |name: &String| state.wildcard || state.names.contains(name);
    let rejected = |name: &String, version: &String| {
        state.rejected_at == current.version && state.rejected.get(name) == Some(version)
    };
    let changed = current
        .resources
        .iter()
        .filter(|(name, _)| wanted(name))
        .filter_map(|(name, any)| {
            let version = current.resource_versions.get(name)?;
            let fresh = state.known.get(name) != Some(version) && !rejected(name, version);
            fresh.then(|| (name.clone(), version.clone(), any.clone()))
        })
        .collect();
    let removed = state.known.keys().filter(|name| !current.resources.contains_key(*name)).cloned().collect();
    (changed, removed)
}

#[cfg(test)]
mod tests;
