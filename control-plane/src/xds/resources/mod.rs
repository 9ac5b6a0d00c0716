//! The compile step: model + filter settings + observed endpoint health → every xDS resource.
//! Pure and deterministic: the same inputs give byte-identical resources, hence the same
//! content-hash versions on every replica and after every restart.
mod access_log;
mod answers;
mod bootstrap;
mod cel;
mod clusters;
mod failover;
mod filter;
mod jwt;
mod listener;
mod overload;
mod proto;
mod routes;
mod stats_sink;
mod telemetry;

use super::snapshot::Snapshot;
use crate::model::{Model, Secrets};
use aurelis_core::config::FilterConfig;
use std::collections::BTreeSet;

pub use access_log::{access_logs, json_fields as access_log_fields, ENVOY_FIELDS as ACCESS_LOG_ENVOY_FIELDS};
pub use bootstrap::{
    ads_bootstrap, buffer_filter, direct_response_routes, static_bootstrap, stats_config, AdsBootstrap, AdsTls, Answer,
    StaticBootstrap, ADS_CLUSTER,
};
pub use clusters::{PROVIDER_METADATA, SYSTEM_CA_BUNDLE};
pub use failover::{cluster_name as failover_cluster_name, is_failover_cluster, PROVIDER_HEADER};
pub use filter::FILTER_NAME;
pub use filter::{failure_policy, native_filter, typed_filter, wasm_plugin, NATIVE_MODULE};
pub use jwt::JWT_FILTER_NAME;
pub use listener::{reserved_request_headers, LISTENER_NAME};
pub use listener::{FilterSource, ListenerParts, Routes};
pub use overload::{heap_budget, CPU_MONITOR, HEAP_MONITOR, SHRINK_HEAP, SHRINK_HEAP_AT, STOP_ACCEPTING_REQUESTS};
pub use routes::{CLIENT_CREDENTIAL_HEADERS, MODEL_HEADER};
pub use stats_sink::{DEFAULT_STATS_FLUSH_MS, STATS_INCLUDED_PREFIXES};
pub use telemetry::{fleet_access_log, fleet_attempt_log, ATTEMPTS_LOG_NAME, SAMPLE_RUNTIME_KEY, TELEMETRY_LOG_NAME};

/// The route configuration's name (one for the gateway listener).
pub const ROUTE_CONFIG_NAME: &str = "aurelis_routes";

/// One endpoint of one provider, as the health checker and the admin API name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct EndpointId {
    pub provider: String,
    /// `ip:port`.
    pub address: String,
}

impl EndpointId {
    pub fn new(provider: &str, host: &str, port: u16) -> EndpointId {
        let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        EndpointId { provider: provider.to_string(), address }
    }
}

pub struct Inputs<'a> {
    pub model: &'a Model,
    pub filter: &'a FilterConfig,
    pub secrets: &'a Secrets,
    /// Endpoints currently unhealthy (probes or admin override): sent as UNHEALTHY over EDS.
    pub unhealthy: &'a BTreeSet<EndpointId>,
    /// Where the filter module is on the Envoy hosts.
    pub wasm_path: &'a str,
}

pub fn compile(inputs: &Inputs<'_>) -> Snapshot {
    let mut snapshot = Snapshot::builder();
    for provider in &inputs.model.providers {
        snapshot.add(super::CLUSTER, &provider.name, &clusters::cluster(provider));
        if provider.uses_eds() {
            snapshot.add(super::ENDPOINT, &provider.name, &clusters::load_assignment(provider, inputs.unhealthy));
        }
    }
    for aggregate in failover::clusters(inputs.model, inputs.secrets) {
        snapshot.add(super::CLUSTER, &aggregate.name.clone(), &aggregate);
    }
    if let Some(l2) = inputs.model.cache_service_upstream(&inputs.filter.l2.cluster) {
        snapshot.add(super::CLUSTER, &l2.name, &clusters::cluster(&l2));
        if l2.uses_eds() {
            snapshot.add(super::ENDPOINT, &l2.name, &clusters::load_assignment(&l2, &BTreeSet::new()));
        }
    }
    snapshot.add(
        super::EXTENSION_CONFIG,
        FILTER_NAME,
        &filter::extension_config(inputs.filter, inputs.model.listener.filter, inputs.wasm_path),
    );
    snapshot.add(
        super::LISTENER,
        LISTENER_NAME,
        &listener::ads_listener(
            &inputs.model.listener,
            inputs.model.jwt.as_ref(),
            jwt::native_claim_headers(inputs.model.listener.filter, inputs.filter.auth.jwt.as_ref()),
            ROUTE_CONFIG_NAME,
            vec![telemetry::fleet_access_log(&inputs.model.telemetry)],
            vec![telemetry::fleet_attempt_log()],
        ),
    );
    snapshot.add(
        super::ROUTE,
        ROUTE_CONFIG_NAME,
        &routes::route_configuration(ROUTE_CONFIG_NAME, inputs.model, inputs.secrets),
    );
    snapshot.build()
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod tests;
