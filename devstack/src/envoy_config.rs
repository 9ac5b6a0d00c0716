//! Generates the Envoy configuration of the dev stack and the end-to-end tests: one listener with
//! the Aurelis Wasm filter in front of the router, and one upstream cluster (the mock provider,
//! or GitHub Models over TLS). Built as JSON, which Envoy reads like YAML.
use serde_json::{json, Value};
use std::path::Path;

/// GitHub Models' OpenAI-compatible inference endpoint.
pub const GITHUB_MODELS_HOST: &str = "models.github.ai";
/// The environment variable holding the GitHub token; Envoy reads it itself
/// (`%ENVIRONMENT(..)%`), so the token is never written into a config file or a log.
pub const GITHUB_TOKEN_ENV: &str = "GITHUB_TOKEN";
/// The Envoy environment variable the filter reads its L2 API token from
/// (`aurelis_core::cache::l2::TOKEN_ENV`, spelled out here as deployments spell it).
pub const L2_TOKEN_ENV: &str = "AURELIS_L2_TOKEN";

#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    /// The mock provider on loopback, spoken to over HTTP/2 (h2c).
    Mock { port: u16 },
    /// GitHub Models over TLS (SNI, ALPN h2), with `/v1/` rewritten to `/inference/`.
    GitHubModels,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig<'a> {
    pub listen_port: u16,
    pub admin_port: u16,
    pub wasm_path: &'a Path,
    pub filter_config: Value,
    pub upstream: UpstreamTarget,
    /// Benchmark baselines: `false` leaves the Aurelis filter out.
    pub with_filter: bool,
    /// Benchmark baseline: Envoy answers every request itself with this JSON body (after
    /// buffering the request, so the connection is kept alive like a real POST exchange).
    pub direct_response: Option<String>,
    /// Benchmark baselines: more HTTP filters, placed before the Aurelis filter.
    pub extra_http_filters: Vec<Value>,
}

/// Turns the filter's `.<label>.<value>` stat-name segments into Prometheus labels.
pub fn stats_tags() -> Value {
    let tag = |name: &str, value: &str| json!({ "tag_name": name, "regex": format!(r"^wasmcustom\.aurelis_.*?(\.{name}\.({value}))") });
    json!([
        tag("cache_status", "[A-Z]+"),
        tag("model", "[A-Za-z0-9_-]+"),
        tag("reason", "[a-z0-9_]+"),
        tag("level", "[A-Z0-9]+"),
        tag("kind", "[a-z0-9_]+"),
        tag("result", "[a-z_]+"),
    ])
}

pub fn wasm_filter(wasm_path: &Path, filter_config: &Value) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "aurelis",
                "root_id": "aurelis",
                // A crashed VM must not take traffic down with it: requests pass unfiltered
                // (no caching) until the VM is reloaded. The cache is an optimisation.
                "failure_policy": "FAIL_OPEN",
                // Lets the filter hold the request headers while it reads the body (Envoy >= 1.35).
                "allow_on_headers_stop_iteration": true,
                "vm_config": {
                    "vm_id": "aurelis",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path.display().to_string() } },
                    // The L2 API token, read by the filter from Envoy's own environment (only
                    // the variable's name is in the config).
                    "environment_variables": { "host_env_keys": [L2_TOKEN_ENV] }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": filter_config.to_string()
                }
            }
        }
    })
}

fn route(upstream: &UpstreamTarget, direct_response: Option<&str>) -> Value {
    if let Some(body) = direct_response {
        return json!({
            "match": { "prefix": "/" },
            "direct_response": { "status": 200, "body": { "inline_string": body } },
            "response_headers_to_add": [{ "header": { "key": "content-type", "value": "application/json" } }]
        });
    }
    match upstream {
        UpstreamTarget::Mock { .. } => json!({
            "match": { "prefix": "/" },
            "route": { "cluster": "upstream", "timeout": "300s" }
        }),
        UpstreamTarget::GitHubModels => json!({
            "match": { "prefix": "/v1/" },
            "route": {
                "cluster": "upstream",
                "timeout": "300s",
                "prefix_rewrite": "/inference/",
                "host_rewrite_literal": GITHUB_MODELS_HOST
            },
            "request_headers_to_add": [{
                "header": { "key": "authorization", "value": format!("Bearer %ENVIRONMENT({GITHUB_TOKEN_ENV})%") },
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
            }]
        }),
    }
}

fn socket_address(address: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": address, "port_value": port } })
}

fn upstream_cluster(upstream: &UpstreamTarget) -> Value {
    match upstream {
        UpstreamTarget::Mock { port } => json!({
            "name": "upstream",
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {
                "cluster_name": "upstream",
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address("127.0.0.1", *port) } }] }]
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": { "http2_protocol_options": {} }
                }
            }
        }),
        UpstreamTarget::GitHubModels => json!({
            "name": "upstream",
            "type": "LOGICAL_DNS",
            "dns_lookup_family": "V4_PREFERRED",
            "connect_timeout": "5s",
            "load_assignment": {
                "cluster_name": "upstream",
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(GITHUB_MODELS_HOST, 443) } }] }]
            },
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": GITHUB_MODELS_HOST,
                    "common_tls_context": {
                        "alpn_protocols": ["h2", "http/1.1"],
                        "validation_context": {
                            "trusted_ca": { "filename": "/etc/ssl/certs/ca-certificates.crt" },
                            "match_typed_subject_alt_names": [{ "san_type": "DNS", "matcher": { "exact": GITHUB_MODELS_HOST } }]
                        }
                    }
                }
            },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    // HTTP/2 when ALPN agrees, HTTP/1.1 otherwise.
                    "auto_config": { "http2_protocol_options": {}, "http_protocol_options": {} }
                }
            }
        }),
    }
}

fn http_filters(config: &GatewayConfig<'_>) -> Value {
    let mut filters = Vec::new();
    if config.direct_response.is_some() {
        filters.push(json!({
            "name": "envoy.filters.http.buffer",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                "max_request_bytes": 1048576
            }
        }));
    }
    filters.extend(config.extra_http_filters.iter().cloned());
    if config.with_filter {
        filters.push(wasm_filter(config.wasm_path, &config.filter_config));
    }
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    Value::Array(filters)
}

/// The whole bootstrap.
pub fn gateway(config: &GatewayConfig<'_>) -> Value {
    json!({
        "admin": { "address": socket_address("127.0.0.1", config.admin_port) },
        "stats_config": { "stats_tags": stats_tags() },
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": socket_address("127.0.0.1", config.listen_port),
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "gateway",
                            "codec_type": "AUTO",
                            "route_config": {
                                "name": "llm",
                                "virtual_hosts": [{
                                    "name": "llm",
                                    "domains": ["*"],
                                    "routes": [route(&config.upstream, config.direct_response.as_deref())]
                                }]
                            },
                            "http_filters": http_filters(config)
                        }
                    }]
                }]
            }],
            "clusters": [upstream_cluster(&config.upstream)]
        }
    })
}

/// The bootstrap of an Envoy managed by the control plane: it knows only the control plane's
/// address; listeners, routes, clusters, endpoints and the filter's config arrive over ADS.
/// `delta`: incremental xDS (`DELTA_GRPC`) instead of state of the world.
pub fn ads_bootstrap(admin_port: u16, xds_port: u16, node_id: &str, delta: bool) -> Value {
    json!({
        "node": { "id": node_id, "cluster": "aurelis-gateways" },
        "admin": { "address": socket_address("127.0.0.1", admin_port) },
        "stats_config": { "stats_tags": stats_tags() },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{
                    "envoy_grpc": {
                        "cluster_name": "aurelis_xds",
                        // Reconnect quickly after a control plane restart (the default backs off to 30 s).
                        "retry_policy": { "retry_back_off": { "base_interval": "0.25s", "max_interval": "5s" } }
                    }
                }]
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" }
        },
        "static_resources": {
            "clusters": [{
                "name": "aurelis_xds",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "aurelis_xds",
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address("127.0.0.1", xds_port) } }] }]
                },
                // xDS is gRPC: HTTP/2 to the control plane.
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} }
                    }
                }
            }]
        }
    })
}
