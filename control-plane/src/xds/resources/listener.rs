//! LDS: the gateway listener. Its HTTP filters, in request order: compression (gzip, brotli),
//! the Aurelis filter (config from ECDS), the router (routes from RDS).
use super::filter::FILTER_NAME;
use super::proto::{ads, any, socket_address};
use crate::model::ListenerSpec;
use envoy_types::pb::envoy::config::core::v3::{ExtensionConfigSource, TypedExtensionConfig};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::compression::brotli::compressor::v3::Brotli;
use envoy_types::pb::envoy::extensions::compression::gzip::compressor::v3::Gzip;
use envoy_types::pb::envoy::extensions::filters::http::compressor::v3::{
    compressor::ResponseDirectionConfig, Compressor,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::{CodecType, RouteSpecifier},
    http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use prost::Name;

/// The listener's name; tests and operators find its bound port under this name.
pub const LISTENER_NAME: &str = "gateway";

pub fn listener(spec: &ListenerSpec, route_config_name: &str) -> Listener {
    let mut http_filters = Vec::new();
    if spec.compression {
        // First on the way in, so last on the way out: it compresses what the Aurelis filter
        // serves from cache as well as upstream answers.
        http_filters.push(compressor("envoy.filters.http.compressor.brotli", "brotli", any(&Brotli::default())));
        http_filters.push(compressor("envoy.filters.http.compressor.gzip", "gzip", any(&Gzip::default())));
    }
    http_filters.push(HttpFilter {
        name: FILTER_NAME.into(),
        config_type: Some(http_filter::ConfigType::ConfigDiscovery(ExtensionConfigSource {
            config_source: Some(ads()),
            type_urls: vec![Wasm::type_url()],
            ..Default::default()
        })),
        ..Default::default()
    });
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&Router::default()))),
        ..Default::default()
    });
    let manager = HttpConnectionManager {
        stat_prefix: LISTENER_NAME.into(),
        codec_type: CodecType::Auto as i32,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route_config_name.to_string(),
        })),
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
