//! What Istio makes of a `WasmPlugin` (istio/istio `pilot/pkg/model/extensions.go`), so a real
//! Envoy can be run with the filter delivered the way an Istio gateway receives it: an ECDS
//! extension config named `<namespace>.<name>` whose `configuration` is the `pluginConfig` as a
//! JSON string (`google.protobuf.StringValue`), a V8 `vm_config` with Istio's own inline
//! variables plus `host_env_keys` for `valueFrom: HOST`, `root_id` = `pluginName`, and
//! `failure_policy` from `failStrategy`. The remote `oci://` code is replaced by the local file
//! the Istio agent downloaded. Istio sets nothing else (no `allow_on_headers_stop_iteration`).
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const EXTENSION_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// The variable Istio always sets inline in a WasmPlugin's VM.
const RESOURCE_VERSION_ENV: &str = "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION";

/// A `WasmPlugin` document, as JSON.
#[derive(Debug, Clone)]
pub struct WasmPlugin(pub Value);

impl WasmPlugin {
    /// The first `kind: WasmPlugin` document of a (multi-document) YAML file.
    pub fn load(path: &Path) -> Result<WasmPlugin> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)?;
            if value["kind"] == "WasmPlugin" {
                return Ok(WasmPlugin(value));
            }
        }
        bail!("{}: no WasmPlugin", path.display())
    }

    /// `<namespace>.<name>`: the extension config's and the HTTP filter's name.
    pub fn resource_name(&self) -> String {
        let meta = &self.0["metadata"];
        format!("{}.{}", meta["namespace"].as_str().unwrap_or("default"), meta["name"].as_str().unwrap_or_default())
    }

    pub fn spec(&self) -> &Value {
        &self.0["spec"]
    }

    /// The `TypedExtensionConfig` Istio pushes over ECDS, loading the module from `local_wasm`.
    pub fn extension_config(&self, local_wasm: &str) -> Result<Value> {
        let spec = self.spec();
        let plugin_config = spec["pluginConfig"].clone();
        // Istio marshals the Struct to JSON; an empty or absent one is an empty Any.
        let configuration = match plugin_config.as_object() {
            Some(fields) if !fields.is_empty() => {
                json!({ "@type": "type.googleapis.com/google.protobuf.StringValue", "value": plugin_config.to_string() })
            }
            _ => bail!("the WasmPlugin has no pluginConfig"),
        };
        let mut key_values = json!({ RESOURCE_VERSION_ENV: "1" });
        let mut host_env_keys = Vec::new();
        for env in spec["vmConfig"]["env"].as_array().into_iter().flatten() {
            let name = env["name"].as_str().ok_or_else(|| anyhow!("vmConfig.env entry without a name"))?;
            match env["valueFrom"].as_str().unwrap_or("INLINE") {
                "HOST" => host_env_keys.push(name.to_string()),
                "INLINE" => key_values[name] = env["value"].clone(),
                other => bail!("vmConfig.env {name}: unknown valueFrom {other}"),
            }
        }
        let failure_policy = match spec["failStrategy"].as_str().unwrap_or("FAIL_CLOSE") {
            "FAIL_OPEN" => "FAIL_OPEN",
            "FAIL_CLOSE" => "FAIL_CLOSED",
            "FAIL_RELOAD" => "FAIL_RELOAD",
            other => bail!("unknown failStrategy {other}"),
        };
        Ok(json!({
            "name": self.resource_name(),
            "typed_config": {
                "@type": WASM_TYPE,
                "config": {
                    "name": self.resource_name(),
                    "root_id": spec["pluginName"].as_str().unwrap_or_default(),
                    "configuration": configuration,
                    "vm_config": {
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": { "local": { "filename": local_wasm } },
                        "environment_variables": { "key_values": key_values, "host_env_keys": host_env_keys },
                    },
                    "failure_policy": failure_policy,
                },
            },
        }))
    }
}

/// An ECDS file (`path_config_source`) holding one extension config: what the gateway's Envoy
/// gets from istiod, read from disk instead of a gRPC stream.
pub fn ecds_file(extension_config: &Value) -> Value {
    let mut resource = extension_config.clone();
    resource["@type"] = json!(EXTENSION_TYPE);
    json!({ "version_info": "1", "resources": [resource] })
}

/// The gateway's HTTP filter named `name`: a reference to the extension config, as Istio
/// writes it into the listener (`config_discovery`), here from the file `ecds_path`.
pub fn http_filter(name: &str, ecds_path: &str) -> Value {
    json!({
        "name": name,
        "config_discovery": {
            "config_source": { "path_config_source": { "path": ecds_path }, "initial_fetch_timeout": "10s" },
            "type_urls": [WASM_TYPE],
        },
    })
}

/// Every `configPatches` entry of the `EnvoyFilter` documents of `path`.
pub fn envoy_filter_patches(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut patches = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if value["kind"] == "EnvoyFilter" {
            patches.extend(value["spec"]["configPatches"].as_array().into_iter().flatten().cloned());
        }
    }
    Ok(patches)
}

/// The value of the first patch of `path` that applies to `apply_to` (e.g. `CLUSTER`).
pub fn envoy_filter_value(path: &Path, apply_to: &str) -> Result<Value> {
    envoy_filter_patches(path)?
        .into_iter()
        .find(|p| p["applyTo"] == apply_to)
        .map(|p| p["patch"]["value"].clone())
        .ok_or_else(|| anyhow!("{}: no EnvoyFilter patch for {apply_to}", path.display()))
}

/// What the istio-agent does to an ECDS Wasm config with remote code before Envoy sees it: the
/// module comes from the local file it downloaded.
pub fn agent_fetched(extension_config: &Value, local_wasm: &str) -> Value {
    let mut config = extension_config.clone();
    config["typed_config"]["config"]["vm_config"]["code"] = json!({ "local": { "filename": local_wasm } });
    config
}

/// `cluster` with its endpoints replaced by one static loopback address (the test's service).
pub fn on_loopback(cluster: &Value, port: u16) -> Value {
    let mut cluster = cluster.clone();
    cluster["type"] = json!("STATIC");
    if let Some(fields) = cluster.as_object_mut() {
        fields.remove("dns_lookup_family");
    }
    cluster["load_assignment"]["endpoints"] = json!([{ "lb_endpoints": [{ "endpoint": {
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } } } }] }]);
    cluster
}

/// The provider's cluster in the gateway test, named the way Istio names a ServiceEntry's
/// (`outbound|<port>||<host>`): the platform team's own routing.
pub const PROVIDER_CLUSTER: &str = "outbound|8000||llm-provider.example.internal";

/// A gateway Envoy shaped like an Istio ingress gateway's: one listener named `gateway` whose
/// only route sends every path to the provider (the platform's routing: nothing matches
/// `x-aurelis-model`), the plugin's filter from ECDS (`ecds_path`) before the router, the
/// provider's cluster on `provider_port`, and `l2_cluster` (the shipped EnvoyFilter's).
pub fn gateway_bootstrap(filter_name: &str, ecds_path: &str, provider_port: u16, l2_cluster: Value) -> Value {
    let provider = json!({
        "name": PROVIDER_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": { "cluster_name": PROVIDER_CLUSTER, "endpoints": [{ "lb_endpoints": [{ "endpoint": {
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": provider_port } } } }] }] },
        "typed_extension_protocol_options": { "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} } } },
    });
    json!({
        // As an Istio proxy has (ECDS needs a node).
        "node": { "id": "router~127.0.0.1~aurelis-gateway.istio-system~istio-system.svc.cluster.local", "cluster": "istio-ingressgateway.istio-system" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": { "virtual_hosts": [{
                            "name": "llm", "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": PROVIDER_CLUSTER, "timeout": "60s" } }],
                        }] },
                        "http_filters": [
                            http_filter(filter_name, ecds_path),
                            { "name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
                        ],
                    },
                }] }],
            }],
            "clusters": [provider, l2_cluster],
        },
    })
}
