//! CDS and EDS: one cluster per provider, with Envoy's own connection pooling, HTTP/2, TLS,
//! circuit breakers and outlier detection configured (never reimplemented), and its endpoints
//! with the health the control plane observed.
use super::proto::{ads, any, millis, seconds, socket_address, u32v};
use super::EndpointId;
use crate::adaptive::LbPolicy;
use crate::model::{Provider, UpstreamLimits, UpstreamProtocol};
use envoy_types::pb::envoy::config::cluster::v3::{
    circuit_breakers::{thresholds::RetryBudget, Thresholds},
    cluster::CommonLbConfig,
    cluster::LbPolicy as ClusterLbPolicy,
    cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, EdsClusterConfig},
    CircuitBreakers, Cluster, OutlierDetection,
};
use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::config::core::v3::{
    transport_socket, HealthStatus, Http1ProtocolOptions, Http2ProtocolOptions, Metadata, RoutingPriority,
    TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType, CertificateValidationContext,
    CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{
        explicit_http_config::ProtocolConfig, AutoHttpConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
    },
    HttpProtocolOptions,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use std::collections::{BTreeSet, HashMap};

/// Debian's (and most distributions') CA bundle, for verifying providers' certificates.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The cluster the control plane pushes: IP endpoints over EDS (with observed health).
pub fn cluster(provider: &Provider) -> Cluster {
    cluster_with(provider, false)
}

/// The cluster of a static rendering: IP endpoints inline (`STATIC`), host names resolved by
/// Envoy (`STRICT_DNS`) as over xDS; everything else identical.
pub fn static_cluster(provider: &Provider) -> Cluster {
    cluster_with(provider, true)
}

fn cluster_with(provider: &Provider, inline_endpoints: bool) -> Cluster {
    let limits = &provider.limits;
    let base = provider.base();
    let (discovery, load_assignment, eds) = if provider.uses_eds() && inline_endpoints {
        (DiscoveryType::Static, Some(load_assignment(provider, &BTreeSet::new())), None)
    } else if provider.uses_eds() {
        let eds = EdsClusterConfig { eds_config: Some(ads()), service_name: String::new() };
        (DiscoveryType::Eds, None, Some(eds))
    } else {
        // Host names: Envoy resolves them itself and follows DNS changes.
        (DiscoveryType::StrictDns, Some(load_assignment(provider, &BTreeSet::new())), None)
    };
    Cluster {
        name: provider.name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        eds_cluster_config: eds,
        load_assignment,
        dns_lookup_family: DnsLookupFamily::V4Preferred as i32,
        connect_timeout: millis(limits.connect_timeout_ms),
        circuit_breakers: Some(circuit_breakers(limits)),
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx: u32v(limits.consecutive_5xx),
            interval: seconds(limits.outlier_interval_s),
            base_ejection_time: seconds(limits.base_ejection_time_s),
            max_ejection_percent: u32v(limits.max_ejection_percent),
            ..Default::default()
        }),
        lb_policy: match limits.lb_policy {
            LbPolicy::LeastRequest => ClusterLbPolicy::LeastRequest,
            // Weighted by response time = round robin over the endpoint weights (EDS).
            LbPolicy::RoundRobin | LbPolicy::ResponseTimeWeighted => ClusterLbPolicy::RoundRobin,
        } as i32,
        common_lb_config: Some(CommonLbConfig {
            healthy_panic_threshold: Some(Percent { value: f64::from(limits.healthy_panic_threshold_percent) }),
            ..Default::default()
        }),
        transport_socket: base.tls.then(|| tls_socket(&base.host)),
        typed_extension_protocol_options: HashMap::from([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&protocol_options(provider.protocol, base.tls)),
        )]),
        ..Default::default()
    }
}

/// The provider's connection and retry limits. A failover cluster (`failover`) carries its
/// first provider's too: Envoy counts retries against the cluster the route names.
pub(super) fn circuit_breakers(limits: &UpstreamLimits) -> CircuitBreakers {
    CircuitBreakers {
        thresholds: vec![Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: u32v(limits.max_connections),
            max_pending_requests: u32v(limits.max_pending_requests),
            max_requests: u32v(limits.max_requests),
            retry_budget: Some(RetryBudget {
                budget_percent: Some(Percent { value: f64::from(limits.retry_budget_percent) }),
                min_retry_concurrency: u32v(limits.min_concurrent_retries),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(super) fn protocol_options(protocol: UpstreamProtocol, tls: bool) -> HttpProtocolOptions {
    let explicit =
        |config| UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig { protocol_config: Some(config) });
    let options = match (protocol, tls) {
        (UpstreamProtocol::Http2, _) => explicit(ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())),
        // ALPN needs TLS; over plain HTTP "auto" can only mean HTTP/1.1.
        (UpstreamProtocol::Http1, _) | (UpstreamProtocol::Auto, false) => {
            explicit(ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default()))
        }
        (UpstreamProtocol::Auto, true) => UpstreamProtocolOptions::AutoConfig(AutoHttpConfig {
            http_protocol_options: Some(Http1ProtocolOptions::default()),
            http2_protocol_options: Some(Http2ProtocolOptions::default()),
            ..Default::default()
        }),
    };
    HttpProtocolOptions { upstream_protocol_options: Some(options), ..Default::default() }
}

/// TLS with SNI, ALPN (h2 first) and the certificate checked against the host name.
fn tls_socket(host: &str) -> TransportSocket {
    let context = UpstreamTlsContext {
        sni: host.to_string(),
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            validation_context_type: Some(ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: Some(DataSource {
                    specifier: Some(Specifier::Filename(SYSTEM_CA_BUNDLE.into())),
                    ..Default::default()
                }),
                match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                    san_type: SanType::Dns as i32,
                    matcher: Some(StringMatcher {
                        match_pattern: Some(MatchPattern::Exact(host.to_string())),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
    }
}

/// The endpoint metadata namespace and key naming the provider an endpoint belongs to: a
/// failover cluster's upstream filters read it to send the credentials of the provider that
/// answers this attempt, and to tell the access log who answered (`failover`).
pub const PROVIDER_METADATA: (&str, &str) = ("aurelis", "provider");

fn provider_metadata(provider: &str) -> Metadata {
    let (namespace, key) = PROVIDER_METADATA;
    let value = Value { kind: Some(Kind::StringValue(provider.to_string())) };
    Metadata {
        filter_metadata: HashMap::from([(
            namespace.to_string(),
            Struct { fields: [(key.to_string(), value)].into_iter().collect() },
        )]),
        ..Default::default()
    }
}

/// The endpoints of a provider; those in `unhealthy` are marked so and get no traffic.
pub fn load_assignment(provider: &Provider, unhealthy: &BTreeSet<EndpointId>) -> ClusterLoadAssignment {
    let lb_endpoints = provider
        .endpoint_addresses()
        .into_iter()
        .map(|(host, port, weight)| {
            let id = EndpointId::new(&provider.name, &host, port);
            let health = if unhealthy.contains(&id) { HealthStatus::Unhealthy } else { HealthStatus::Healthy };
            LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: socket_address(&host, port),
                    ..Default::default()
                })),
                health_status: health as i32,
                load_balancing_weight: u32v(weight),
                metadata: Some(provider_metadata(&provider.name)),
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: provider.name.clone(),
        endpoints: vec![LocalityLbEndpoints { lb_endpoints, ..Default::default() }],
        ..Default::default()
    }
}
