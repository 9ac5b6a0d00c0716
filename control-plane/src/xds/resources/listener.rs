//! LDS: the gateway listener. Its HTTP filters, in request order: compression (gzip, brotli),
//! the Aurelis filter (config from ECDS, or inline in a static rendering), the router (routes
//! from RDS, or inline).
use super::filter::{type_url as filter_type_url, FILTER_NAME};
use super::proto::{ads, any, socket_address};
use crate::model::ListenerSpec;
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
    http_connection_manager::{CodecType, RouteSpecifier},
    http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::Any;

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
}

/// The gateway listener as the control plane pushes it: filter over ECDS, routes over RDS.
pub fn ads_listener(spec: &ListenerSpec, route_config_name: &str) -> Listener {
    let parts = ListenerParts {
        filter: FilterSource::Ecds,
        routes: Routes::Rds(route_config_name.to_string()),
        extra_http_filters: Vec::new(),
    };
    listener(spec, parts)
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
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&Router::default()))),
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
