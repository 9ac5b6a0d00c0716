//! Whole Envoy bootstraps, built from the same pieces as the xDS resources: the static drop-in
//! (listener with the Aurelis filter inline, provider clusters, routes, the L2 cluster) and the
//! ADS bootstrap of an Envoy the control plane manages. `render` turns them into YAML/JSON for
//! `envoy/*.yaml`, the dev stack and the benchmarks; `stats_config` is their one definition of
//! the stat tags.
use super::answers::json_route;
use super::clusters::static_cluster;
use super::filter::{failure_policy, typed_filter};
use super::listener::{listener, FilterSource, ListenerParts, Routes};
use super::overload::{heap_budget, overload_manager};
use super::proto::{ads, any, millis, socket_address, u32v};
use super::stats_sink::{metrics_service_sink, stats_matcher};
use super::{routes, ROUTE_CONFIG_NAME};
use crate::model::{Model, Secrets};
use aurelis_core::config::FilterConfig;
use envoy_types::pb::envoy::config::bootstrap::v3::{
    bootstrap::{DynamicResources, StaticResources},
    Admin, Bootstrap,
};
use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, DiscoveryType},
    Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    api_config_source::ApiType, data_source::Specifier, grpc_service::EnvoyGrpc, grpc_service::TargetSpecifier,
    transport_socket, ApiConfigSource, ApiVersion, BackoffStrategy, DataSource, GrpcService, Http2ProtocolOptions,
    Node, RetryPolicy, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::metrics::v3::{tag_specifier::TagValue, StatsConfig, TagSpecifier};
use envoy_types::pb::envoy::config::route::v3::{
    route_match::PathSpecifier, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::buffer::v3::Buffer;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType, CertificateValidationContext,
    CommonTlsContext, SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options::{explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions},
    HttpProtocolOptions,
};
use envoy_types::pb::envoy::extensions::wasm::v3::FailurePolicy;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use std::collections::HashMap;

/// The static cluster of the control plane in an ADS bootstrap.
pub const ADS_CLUSTER: &str = "aurelis_xds";

/// The filter names stats `aurelis_<name>.<label>.<value>...`; these tags turn the segments into
/// labels, so `/stats/prometheus` shows e.g. `aurelis_requests_total{cache_status="HIT"}`.
pub fn stats_config() -> StatsConfig {
    let tag = |name: &str, value: &str| TagSpecifier {
        tag_name: name.into(),
        tag_value: Some(TagValue::Regex(format!(r"^wasmcustom\.aurelis_.*?(\.{name}\.({value}))"))),
    };
    StatsConfig {
        stats_tags: vec![
            tag("cache_status", "[A-Z]+"),
            tag("model", "[A-Za-z0-9_-]+"),
            tag("reason", "[a-z0-9_]+"),
            tag("level", "[A-Z0-9]+"),
            tag("kind", "[a-z0-9_]+"),
            tag("result", "[a-z_]+"),
        ],
        ..Default::default()
    }
}

fn admin(address: &str, port: u16) -> Option<Admin> {
    Some(Admin { address: socket_address(address, port), ..Default::default() })
}

/// What the gateway answers with.
pub enum Answer {
    /// The model's routes to its providers (the product).
    Providers,
    /// Envoy answers every request itself with this JSON body, after buffering the request so
    /// the connection is kept alive like a real POST exchange (benchmark baselines, upstreams).
    Direct(String),
}

pub struct StaticBootstrap<'a> {
    /// Listener (address, port, compression), providers, models, cache service.
    pub model: &'a Model,
    /// The filter's JSON configuration, passed as is; `None` leaves the Aurelis filter out.
    pub filter_json: Option<String>,
    /// Where the filter module is on the Envoy host.
    pub wasm_path: &'a str,
    pub admin_address: &'a str,
    pub admin_port: u16,
    pub answer: Answer,
    /// More HTTP filters before the Aurelis filter (benchmark baselines).
    pub extra_http_filters: Vec<HttpFilter>,
}

/// The static drop-in: everything the control plane would push, inline in one bootstrap.
/// Provider headers the control plane would resolve (`value_from_env`) are left for Envoy to
/// read from its own environment (`%ENVIRONMENT(..)%`), so no secret is written into the file.
pub fn static_bootstrap(config: StaticBootstrap<'_>) -> Bootstrap {
    let mut model = config.model.clone();
    for header in model.providers.iter_mut().flat_map(|p| p.headers.iter_mut()) {
        if header.envoy_env.is_empty() {
            header.envoy_env = std::mem::take(&mut header.value_from_env);
        }
    }
    let mut clusters: Vec<Cluster> = model.providers.iter().map(static_cluster).collect();
    clusters.extend(super::failover::clusters(&model, &Secrets::default()));
    let filter = config.filter_json.as_deref().map(|json| FilterConfig::from_json(json.as_bytes()));
    let l2_cluster = match &filter {
        Some(Ok(f)) => f.l2.cluster.clone(),
        _ => FilterConfig::default().l2.cluster,
    };
    if let Some(l2) = model.cache_service_upstream(&l2_cluster) {
        clusters.push(static_cluster(&l2));
    }
    let mut extra_http_filters = Vec::new();
    let routes = match config.answer {
        Answer::Providers => routes::route_configuration(ROUTE_CONFIG_NAME, &model, &Secrets::default()),
        Answer::Direct(body) => {
            extra_http_filters.push(buffer_filter());
            direct_response_routes(&body)
        }
    };
    extra_http_filters.extend(config.extra_http_filters);
    let parts = ListenerParts {
        filter: match config.filter_json {
            Some(json) => {
                // A configuration the filter would refuse is rendered as is (Envoy refuses it
                // too); its failure policy is then the stricter one.
                let failure = match &filter {
                    Some(Ok(f)) => failure_policy(f),
                    _ => FailurePolicy::FailReload,
                };
                FilterSource::Inline(Box::new(typed_filter(model.listener.filter, json, config.wasm_path, failure)))
            }
            None => FilterSource::Absent,
        },
        routes: Routes::Inline(Box::new(routes)),
        extra_http_filters,
        jwt: model.jwt.clone(),
        jwt_claim_headers: match &filter {
            Some(Ok(f)) => super::jwt::native_claim_headers(model.listener.filter, f.auth.jwt.as_ref()),
            _ => Vec::new(),
        },
        // A static Envoy has no control plane to stream telemetry to.
        access_logs: Vec::new(),
        upstream_logs: Vec::new(),
    };
    let l1_max_bytes = match &filter {
        Some(Ok(f)) => f.cache.max_bytes,
        _ => FilterConfig::default().cache.max_bytes,
    };
    Bootstrap {
        admin: admin(config.admin_address, config.admin_port),
        stats_config: Some(stats_config()),
        overload_manager: Some(overload_manager(heap_budget(l1_max_bytes))),
        static_resources: Some(StaticResources {
            listeners: vec![listener(&model.listener, parts)],
            clusters,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `envoy.filters.http.buffer`: the whole request is read before the route answers.
pub fn buffer_filter() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.buffer".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&Buffer { max_request_bytes: u32v(1 << 20) }))),
        ..Default::default()
    }
}

/// One route answering everything with `body` as JSON.
pub fn direct_response_routes(body: &str) -> RouteConfiguration {
    let everything = RouteMatch { path_specifier: Some(PathSpecifier::Prefix("/".into())), ..Default::default() };
    RouteConfiguration {
        name: ROUTE_CONFIG_NAME.into(),
        virtual_hosts: vec![VirtualHost {
            name: "llm".into(),
            domains: vec!["*".into()],
            routes: vec![json_route("direct", everything, 200, body.into())],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub struct AdsBootstrap<'a> {
    pub node_id: &'a str,
    pub admin_address: &'a str,
    pub admin_port: u16,
    /// The control plane's xDS address (an IP or a DNS name).
    pub xds_host: &'a str,
    pub xds_port: u16,
    /// Incremental xDS (`DELTA_GRPC`) instead of state of the world.
    pub delta: bool,
    /// xDS over TLS with this Envoy's client certificate; `None`: plaintext (a control plane
    /// on loopback started with `--xds-plaintext-loopback`).
    pub tls: Option<AdsTls<'a>>,
    /// The L1 budget the model file gives the filter (`filter.cache.max_bytes`): it sizes the
    /// overload manager's heap budget.
    pub l1_max_bytes: u64,
    /// How often Envoy sends its stats to the control plane (`stats_flush_interval`; the
    /// model's `telemetry.stats_flush_ms`, default `DEFAULT_STATS_FLUSH_MS`).
    pub stats_flush_ms: u64,
    /// A fixed heap budget instead of the one sized from `l1_max_bytes` (tests make heap
    /// pressure with a tiny one); `None` in every shipped bootstrap.
    pub max_heap_bytes: Option<u64>,
}

/// PEM files on the Envoy host: its client certificate (with the URI SAN
/// `spiffe://aurelis/node/<node id>`) and key, and the CA that signed the control plane's.
pub struct AdsTls<'a> {
    pub cert_file: &'a str,
    pub key_file: &'a str,
    pub ca_file: &'a str,
}

/// Envoy presents its certificate and accepts only a server certificate from the CA that
/// carries the control plane's URI SAN: a node certificate from the same CA cannot pose as the
/// control plane. The server is identified by that SAN, not a host name, so the same bootstrap
/// works for an IP, a compose service name or a Kubernetes service.
fn ads_tls_socket(tls: &AdsTls<'_>) -> TransportSocket {
    let file =
        |path: &str| Some(DataSource { specifier: Some(Specifier::Filename(path.into())), ..Default::default() });
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec!["h2".into()],
            tls_certificates: vec![TlsCertificate {
                certificate_chain: file(tls.cert_file),
                private_key: file(tls.key_file),
                ..Default::default()
            }],
            validation_context_type: Some(ValidationContextType::ValidationContext(CertificateValidationContext {
                trusted_ca: file(tls.ca_file),
                match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                    san_type: SanType::Uri as i32,
                    matcher: Some(StringMatcher {
                        match_pattern: Some(MatchPattern::Exact(crate::xds::tls::CONTROL_PLANE_URI.into())),
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

/// An Envoy managed by the control plane: it knows only the control plane's address; listeners,
/// routes, clusters, endpoints and the filter's config arrive over ADS (over TLS when
/// `config.tls` is set).
pub fn ads_bootstrap(config: AdsBootstrap<'_>) -> Bootstrap {
    let endpoint = LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: socket_address(config.xds_host, config.xds_port),
            ..Default::default()
        })),
        ..Default::default()
    };
    let xds = Cluster {
        name: ADS_CLUSTER.into(),
        // Resolves a compose/Kubernetes service name as well as an IP.
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32)),
        connect_timeout: millis(1000),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: ADS_CLUSTER.into(),
            endpoints: vec![LocalityLbEndpoints { lb_endpoints: vec![endpoint], ..Default::default() }],
            ..Default::default()
        }),
        // xDS is gRPC: HTTP/2 to the control plane.
        typed_extension_protocol_options: HashMap::from([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&HttpProtocolOptions {
                upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())),
                })),
                ..Default::default()
            }),
        )]),
        transport_socket: config.tls.as_ref().map(ads_tls_socket),
        ..Default::default()
    };
    let ads_config = ApiConfigSource {
        api_type: if config.delta { ApiType::DeltaGrpc } else { ApiType::Grpc } as i32,
        transport_api_version: ApiVersion::V3 as i32,
        set_node_on_first_message_only: true,
        grpc_services: vec![GrpcService {
            target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                cluster_name: ADS_CLUSTER.into(),
                // Reconnect quickly after a control plane restart (the default backs off to 30 s).
                retry_policy: Some(RetryPolicy {
                    retry_back_off: Some(BackoffStrategy { base_interval: millis(250), max_interval: millis(5000) }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    };
    Bootstrap {
        node: Some(Node { id: config.node_id.into(), cluster: "aurelis-gateways".into(), ..Default::default() }),
        admin: admin(config.admin_address, config.admin_port),
        // Envoy's stats stream to the control plane (the same bounded set `/stats` shows).
        stats_config: Some(StatsConfig { stats_matcher: Some(stats_matcher()), ..stats_config() }),
        stats_sinks: vec![metrics_service_sink()],
        stats_flush_interval: millis(config.stats_flush_ms.max(1)),
        overload_manager: Some(overload_manager(
            config.max_heap_bytes.unwrap_or_else(|| heap_budget(config.l1_max_bytes)),
        )),
        dynamic_resources: Some(DynamicResources {
            ads_config: Some(ads_config),
            cds_config: Some(ads()),
            lds_config: Some(ads()),
            ..Default::default()
        }),
        static_resources: Some(StaticResources { clusters: vec![xds], ..Default::default() }),
        ..Default::default()
    }
}
