//! LDS: the gateway listener. Its HTTP filters, in request order: compression (gzip, brotli),
//! JWT verification (`jwt_authn`, when the model has a `jwt` section), the Aurelis filter
//! (config from ECDS, or inline in a static rendering), the router (routes from RDS, or inline).
//! Hardening that must hold even when the Wasm VM fails is Envoy's own configuration here:
//! client addresses from the TCP peer, normalized paths, and no client-sent `x-aurelis-*`
//! header left by the time any filter or route looks at the request. Every request gets one
//! JSON access log line (`access_log`).
use super::access_log::access_logs;
use super::filter::{type_url as filter_type_url, FILTER_NAME};
use super::jwt::jwt_authn_filter;
use super::proto::{ads, any, socket_address};
use crate::model::{JwtSpec, ListenerSpec};
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{
    header_mutation::{Action as MutationAction, RemoveOnMatch},
    HeaderMutation,
};
use envoy_types::pb::envoy::config::core::v3::{ExtensionConfigSource, TypedExtensionConfig};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::compression::brotli::compressor::v3::Brotli;
use envoy_types::pb::envoy::extensions::compression::gzip::compressor::v3::Gzip;
use envoy_types::pb::envoy::extensions::filters::http::compressor::v3::{
    compressor::ResponseDirectionConfig, Compressor,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, PathWithEscapedSlashesAction, RouteSpecifier},
    http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::http::early_header_mutation::header_mutation::v3::HeaderMutation as EarlyHeaderMutation;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue};

/// The listener's name; tests and operators find its bound port under this name.
pub const LISTENER_NAME: &str = "gateway";

/// Where the listener's Aurelis filter configuration comes from.
pub enum FilterSource {
    /// ECDS over the ADS stream (the control plane serves it).
    Ecds,
    /// Inline (static renderings): the Wasm plugin or the native module (`filter::typed_filter`).
    Inline(Box<Any>),
    /// No Aurelis filter (benchmark baseline: plain Envoy).
    Absent,
}

/// Where the listener's routes come from.
pub enum Routes {
    /// RDS over the ADS stream, by route configuration name.
    Rds(String),
    /// Inline (static renderings).
    Inline(Box<RouteConfiguration>),
}

/// What goes into the gateway listener besides its address.
pub struct ListenerParts {
    pub filter: FilterSource,
    pub routes: Routes,
    /// More HTTP filters, after compression and before the Aurelis filter (benchmark baselines).
    pub extra_http_filters: Vec<HttpFilter>,
    /// JWT verification ahead of the Aurelis filter (the model's `jwt` section).
    pub jwt: Option<JwtSpec>,
    /// Claims `jwt_authn` also copies into request headers (native filter only: `jwt`).
    pub jwt_claim_headers: Vec<String>,
    /// Access logs of the connection manager (the fleet telemetry stream over ADS).
    pub access_logs: Vec<AccessLog>,
    /// The router's per-attempt logs (refused attempts, over ADS).
    pub upstream_logs: Vec<AccessLog>,
}

/// The gateway listener as the control plane pushes it: filter over ECDS, routes over RDS.
pub fn ads_listener(
    spec: &ListenerSpec,
    jwt: Option<&JwtSpec>,
    jwt_claim_headers: Vec<String>,
    route_config_name: &str,
    access_logs: Vec<AccessLog>,
    upstream_logs: Vec<AccessLog>,
) -> Listener {
    let parts = ListenerParts {
        filter: FilterSource::Ecds,
        routes: Routes::Rds(route_config_name.to_string()),
        extra_http_filters: Vec::new(),
        jwt: jwt.cloned(),
        jwt_claim_headers,
        access_logs,
        upstream_logs,
    };
    listener(spec, parts)
}

/// The early header mutation's name (Envoy's extension name).
const EARLY_HEADER_MUTATION: &str = "envoy.http.early_header_mutation.header_mutation";
/// Every header of the `x-aurelis-` family, which only the filter and the control plane set.
const AURELIS_HEADER_PREFIX: &str = "x-aurelis-";

/// The headers the filter and the routes give meaning to, as the filter names them: a client
/// must not be able to send any of them (the model header would pick a route, the cache
/// headers would look like the gateway's own answers).
pub fn reserved_request_headers() -> [&'static str; 5] {
    use aurelis_core::http::{HEADER_CACHE, HEADER_KEY_INFO, HEADER_LEVEL, HEADER_REASON};
    [aurelis_core::routing::MODEL_HEADER, HEADER_CACHE, HEADER_REASON, HEADER_LEVEL, HEADER_KEY_INFO]
}

/// Removes client-sent `x-aurelis-*` headers before route selection and before any HTTP filter
/// runs. Done by the connection manager, not by the Wasm filter, so it holds when the VM has
/// failed (or fails open) too. The named headers come from the filter's constants; the prefix
/// rule catches any header of the family added later.
fn strip_reserved_headers() -> TypedExtensionConfig {
    let mut mutations: Vec<HeaderMutation> = reserved_request_headers()
        .iter()
        .map(|name| HeaderMutation { action: Some(MutationAction::Remove(name.to_string())) })
        .collect();
    mutations.push(HeaderMutation {
        action: Some(MutationAction::RemoveOnMatch(RemoveOnMatch {
            key_matcher: Some(StringMatcher {
                match_pattern: Some(MatchPattern::Prefix(AURELIS_HEADER_PREFIX.into())),
                ..Default::default()
            }),
        })),
    });
    TypedExtensionConfig {
        name: EARLY_HEADER_MUTATION.into(),
        typed_config: Some(any(&EarlyHeaderMutation { mutations })),
    }
}

pub fn listener(spec: &ListenerSpec, parts: ListenerParts) -> Listener {
    let mut http_filters = Vec::new();
    if spec.compression {
        // First on the way in, so last on the way out: it compresses what the Aurelis filter
        // serves from cache as well as upstream answers.
        http_filters.push(compressor("envoy.filters.http.compressor.brotli", "brotli", any(&Brotli::default())));
        http_filters.push(compressor("envoy.filters.http.compressor.gzip", "gzip", any(&Gzip::default())));
    }
    http_filters.extend(parts.extra_http_filters);
    if let Some(jwt) = &parts.jwt {
        http_filters.push(jwt_authn_filter(jwt, &parts.jwt_claim_headers));
    }
    let filter_config = match parts.filter {
        FilterSource::Ecds => Some(http_filter::ConfigType::ConfigDiscovery(ExtensionConfigSource {
            config_source: Some(ads()),
            type_urls: vec![filter_type_url(spec.filter)],
            ..Default::default()
        })),
        FilterSource::Inline(typed) => Some(http_filter::ConfigType::TypedConfig(*typed)),
        FilterSource::Absent => None,
    };
    if let Some(config_type) = filter_config {
        http_filters.push(HttpFilter {
            name: FILTER_NAME.into(),
            config_type: Some(config_type),
            ..Default::default()
        });
    }
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&Router {
            upstream_log: parts.upstream_logs,
            ..Default::default()
        }))),
        ..Default::default()
    });
    let manager = HttpConnectionManager {
        stat_prefix: LISTENER_NAME.into(),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(match parts.routes {
            Routes::Rds(route_config_name) => {
                RouteSpecifier::Rds(Rds { config_source: Some(ads()), route_config_name })
            }
            Routes::Inline(config) => RouteSpecifier::RouteConfig(*config),
        }),
        http_filters,
        // The client address is the TCP peer (plus `xff_num_trusted_hops` proxies the operator
        // declares): anonymous rate limits and access logs cannot be steered by a client's own
        // `x-forwarded-for`.
        use_remote_address: Some(BoolValue { value: true }),
        xff_num_trusted_hops: spec.xff_num_trusted_hops,
        // Routes match exact paths: `/v1/./chat//completions` and friends are normalized first,
        // and encoded slashes (`%2F`), which a provider might decode differently, are refused.
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::RejectRequest as i32,
        early_header_mutation_extensions: vec![strip_reserved_headers()],
        // The file log (every listener) first, then the fleet telemetry stream (ADS only).
        access_log: access_logs(&spec.access_log, spec.filter).into_iter().chain(parts.access_logs).collect(),
        ..Default::default()
    };
    Listener {
        name: LISTENER_NAME.into(),
        address: socket_address(&spec.address, spec.port),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&manager))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn compressor(name: &str, library: &str, config: envoy_types::pb::google::protobuf::Any) -> HttpFilter {
    let compressor = Compressor {
        compressor_library: Some(TypedExtensionConfig { name: library.into(), typed_config: Some(config) }),
        // The upstream must answer uncompressed so the cache can read (and store) the answer;
        // this filter compresses for the client afterwards.
        response_direction_config: Some(ResponseDirectionConfig {
            remove_accept_encoding_header: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&compressor))),
        ..Default::default()
    }
}
