//! The declarative model: one YAML file describing the listener, the providers (upstreams), the
//! models (each a weighted list of providers) and the filter's settings. Everything Envoy is told
//! is compiled from this (see `xds::resources`); nothing else feeds the snapshot except endpoint
//! health, which changes at run time.
mod access;
mod consumers;
mod telemetry;
mod validate;

pub use access::{ApiSpec, JwtSpec, MODELS_PATH};
use aurelis_core::config::{ConfigError, FilterConfig};
pub use consumers::{generate_key, ConsumerChange, ConsumerError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
pub use telemetry::{Targets, TelemetrySpec, TokenPrice};
pub use validate::ModelError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    #[serde(default)]
    pub listener: ListenerSpec,
    pub providers: Vec<Provider>,
    pub models: Vec<ModelRoute>,
    /// The L2 cache service (`aurelis-cache`) the filter calls when `filter.l2.enabled`.
    #[serde(default)]
    pub cache_service: Option<CacheServiceSpec>,
    /// The client API Envoy routes (paths, `GET /v1/models`, unknown models).
    #[serde(default)]
    pub api: ApiSpec,
    /// JWT verification by Envoy ahead of the filter (claims for `filter.auth.jwt`).
    #[serde(default)]
    pub jwt: Option<JwtSpec>,
    /// Fleet telemetry: per-request record sampling, token prices, the report's targets.
    #[serde(default)]
    pub telemetry: TelemetrySpec,
    /// The filter's own configuration schema (`aurelis_core::config::FilterConfig`), validated by
    /// the very code the filter runs in `on_configure`. Client authentication (`filter.auth`:
    /// consumers, JWT claims, anonymous access) lives here.
    #[serde(default = "empty_object")]
    pub filter: serde_json::Value,
    /// Anomaly detection thresholds (`crate::anomaly::AnomalyConfig`); defaults when absent.
    #[serde(default)]
    pub anomalies: crate::anomaly::AnomalyConfig,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheServiceSpec {
    /// `host:port` of each cache service instance (HTTP/2 cleartext); IPs are served over EDS,
    /// a host name makes a DNS cluster (e.g. a compose or Kubernetes service name).
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    #[serde(default = "default_listen_address")]
    pub address: String,
    /// 0 lets the kernel pick (tests); Envoy reports the bound port on its admin `/listeners`.
    #[serde(default = "default_listen_port")]
    pub port: u16,
    /// gzip and brotli for clients that ask for them (`accept-encoding`).
    #[serde(default = "yes")]
    pub compression: bool,
    /// Proxies in front of Envoy whose `x-forwarded-for` entries are trusted. 0 (the default):
    /// the client address is the TCP peer, whatever `x-forwarded-for` a client sends.
    #[serde(default)]
    pub xff_num_trusted_hops: u32,
    /// How Envoy runs the Aurelis filter on this listener: the proxy-wasm module (default) or
    /// the native dynamic module (`filter/native`). Same configuration, headers and stats.
    #[serde(default)]
    pub filter: FilterHost,
    /// Envoy's access log: one JSON line per request, with the filter's facts.
    #[serde(default)]
    pub access_log: AccessLogSpec,
}

/// Where Envoy writes the listener's JSON access log (`docs/operations.md` lists the fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    /// An absolute file path; `/dev/stdout` (the default) writes to Envoy's standard output.
    #[serde(default = "default_access_log_path")]
    pub path: String,
}

impl Default for AccessLogSpec {
    fn default() -> Self {
        AccessLogSpec { path: default_access_log_path() }
    }
}

fn default_access_log_path() -> String {
    "/dev/stdout".to_string()
}

impl Default for ListenerSpec {
    fn default() -> Self {
        ListenerSpec {
            address: default_listen_address(),
            port: default_listen_port(),
            compression: true,
            xff_num_trusted_hops: 0,
            filter: FilterHost::default(),
            access_log: AccessLogSpec::default(),
        }
    }
}

/// The two builds of the filter, driving the same core (`aurelis_core::flow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterHost {
    /// `envoy.filters.http.wasm` with `aurelis_filter.wasm` (V8).
    #[default]
    Wasm,
    /// `envoy.filters.http.dynamic_modules` with `libaurelis_native.so`, found by Envoy in
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
    Native,
}

impl FilterHost {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterHost::Wasm => "wasm",
            FilterHost::Native => "native",
        }
    }
}

/// Loopback: exposing the gateway is a decision the model file states (`listener.address`).
fn default_listen_address() -> String {
    "127.0.0.1".into()
}
fn default_listen_port() -> u16 {
    10000
}
fn yes() -> bool {
    true
}

/// How Envoy speaks to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 only (e.g. some self-hosted servers).
    Http1,
    /// HTTP/2 always (h2c on plain HTTP).
    Http2,
    /// TLS ALPN picks h2 or http/1.1; plain HTTP falls back to HTTP/1.1.
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    /// `http(s)://host[:port][/path]`; the path replaces the clients' `/v1` prefix
    /// (GitHub Models: `https://models.github.ai/inference`).
    pub base_url: String,
    #[serde(default = "default_protocol")]
    pub protocol: UpstreamProtocol,
    /// The addresses behind the provider; default: the base URL's host and port. IP endpoints are
    /// served over EDS with health from our probes; a host name makes a DNS cluster instead.
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// Headers injected on every request to this provider, values from the control plane's
    /// environment (credentials never go in the model file).
    #[serde(default)]
    pub headers: Vec<HeaderSpec>,
    #[serde(default)]
    pub health_check: Option<HealthCheckSpec>,
    #[serde(default)]
    pub limits: UpstreamLimits,
}

fn default_protocol() -> UpstreamProtocol {
    UpstreamProtocol::Auto
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// `host:port` or `ip:port`.
    pub address: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSpec {
    pub name: String,
    /// The environment variable of the control plane holding the value: resolved at start-up
    /// and pushed over xDS (so it also shows in Envoy's admin `/config_dump`).
    #[serde(default)]
    pub value_from_env: String,
    /// Or: the environment variable of each Envoy, which reads it itself
    /// (`%ENVIRONMENT(..)%`): the secret never leaves the Envoy host.
    #[serde(default)]
    pub envoy_env: String,
    /// Prepended to the value, e.g. `"Bearer "`.
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// Probed with `GET` on every endpoint, e.g. `/v1/models`; any 2xx is healthy.
    pub path: String,
    #[serde(default = "default_probe_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failures before an endpoint is marked unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Consecutive successes before it is healthy again.
    #[serde(default = "one")]
    pub healthy_threshold: u32,
}

fn default_probe_interval() -> u64 {
    5000
}
fn default_probe_timeout() -> u64 {
    1000
}
fn default_unhealthy_threshold() -> u32 {
    2
}

/// Envoy's connection pool, circuit breaker, outlier detection and retry settings. The defaults
/// are the design document's numbers; timeouts suit LLM calls (long, streamed answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamLimits {
    pub connect_timeout_ms: u64,
    /// Whole-request timeout; generation can take minutes.
    pub request_timeout_s: u64,
    /// A streamed answer that goes quiet this long is cut.
    pub stream_idle_timeout_s: u64,
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    /// Concurrent retries may be this share of the cluster's active requests (Envoy's retry
    /// budget). A fixed cap (Envoy's default is 3) is far too low when requests last seconds.
    pub retry_budget_percent: u32,
    /// ... but never fewer than this many.
    pub min_concurrent_retries: u32,
    pub retry_on: String,
    pub num_retries: u32,
    pub consecutive_5xx: u32,
    pub outlier_interval_s: u64,
    pub base_ejection_time_s: u64,
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints Envoy ignores health and uses them all ("panic
    /// mode", Envoy's default 50). 0 turns it off: unhealthy endpoints never get traffic.
    pub healthy_panic_threshold_percent: u32,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits {
            connect_timeout_ms: 5000,
            request_timeout_s: 300,
            stream_idle_timeout_s: 120,
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            retry_budget_percent: 25,
            min_concurrent_retries: 32,
            retry_on: "5xx,reset,connect-failure".into(),
            num_retries: 3,
            consecutive_5xx: 5,
            outlier_interval_s: 30,
            base_ejection_time_s: 30,
            max_ejection_percent: 50,
            healthy_panic_threshold_percent: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    /// The `model` of the request body, e.g. `gpt-4o-mini`.
    pub name: String,
    pub providers: Vec<WeightedProvider>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedProvider {
    pub provider: String,
    pub weight: u32,
}

impl Model {
    /// Parses YAML (JSON is YAML too) and validates everything that can be checked offline.
    pub fn from_yaml(text: &str) -> Result<Model, ModelError> {
        let model: Model = serde_yaml_ng::from_str(text).map_err(|e| ModelError::Syntax(e.to_string()))?;
        model.validate()?;
        Ok(model)
    }

    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::Syntax(format!("reading {}: {e}", path.display())))?;
        Model::from_yaml(&text)
    }

    /// The filter settings, parsed by the filter's own code.
    pub fn filter_config(&self) -> Result<FilterConfig, ModelError> {
        let json = serde_json::to_vec(&self.filter).map_err(|e| ModelError::Syntax(e.to_string()))?;
        FilterConfig::from_json(&json).map_err(|error| match error {
            // Re-rooted under `filter.` so the path points into the model file.
            ConfigError::Invalid { field, value, reason } => ModelError::Invalid {
                field: format!("filter.{field}"),
                message: format!("{value} is invalid ({reason})"),
            },
            ConfigError::Parse(message) => ModelError::Invalid { field: "filter".into(), message },
        })
    }

    /// The cache service as a provider-like upstream: HTTP/2, short timeouts, and outlier
    /// detection without panic mode, so a dead L2 is skipped at once (the filter fails open).
    pub fn cache_service_upstream(&self, cluster: &str) -> Option<Provider> {
        let spec = self.cache_service.as_ref()?;
        let first = spec.endpoints.first()?;
        Some(Provider {
            name: cluster.to_string(),
            base_url: format!("http://{first}"),
            protocol: UpstreamProtocol::Http2,
            endpoints: spec.endpoints.iter().map(|a| EndpointSpec { address: a.clone(), weight: 1 }).collect(),
            headers: Vec::new(),
            health_check: None,
            limits: UpstreamLimits {
                connect_timeout_ms: 250,
                request_timeout_s: 5,
                stream_idle_timeout_s: 5,
                retry_budget_percent: 0,
                min_concurrent_retries: 0,
                num_retries: 0,
                consecutive_5xx: 5,
                outlier_interval_s: 1,
                base_ejection_time_s: 5,
                max_ejection_percent: 100,
                healthy_panic_threshold_percent: 0,
                ..UpstreamLimits::default()
            },
        })
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// Replaces one model's weights; every provider named must already be in the model's list
    /// or be a known provider. Validated like a new file.
    pub fn with_weights(&self, model: &str, weights: &BTreeMap<String, u32>) -> Result<Model, ModelError> {
        let mut next = self.clone();
        let route = next.models.iter_mut().find(|m| m.name == model).ok_or_else(|| ModelError::Invalid {
            field: "model".into(),
            message: format!("`{model}` is not in the model file"),
        })?;
        route.providers = weights
            .iter()
            .map(|(provider, weight)| WeightedProvider { provider: provider.clone(), weight: *weight })
            .collect();
        next.validate()?;
        Ok(next)
    }

    /// Reads the header values named by `value_from_env`, so a missing secret is a start-up error
    /// rather than a 401 from the provider later. Values are never logged.
    pub fn resolve_secrets(&self, env: impl Fn(&str) -> Option<String>) -> Result<Secrets, ModelError> {
        let mut values = BTreeMap::new();
        for (i, provider) in self.providers.iter().enumerate() {
            for (j, header) in provider.headers.iter().enumerate().filter(|(_, h)| h.envoy_env.is_empty()) {
                let value = env(&header.value_from_env).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    ModelError::Invalid {
                        field: format!("providers[{i}].headers[{j}].value_from_env"),
                        message: format!("environment variable `{}` is not set", header.value_from_env),
                    }
                })?;
                values
                    .insert((provider.name.clone(), header.name.clone()), format!("{}{}", header.prefix, value.trim()));
            }
        }
        Ok(Secrets { values })
    }
}

/// Resolved header values by (provider, header). Not `Debug`: values are credentials.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets {
    values: BTreeMap<(String, String), String>,
}

impl Secrets {
    pub fn get(&self, provider: &str, header: &str) -> Option<&str> {
        self.values.get(&(provider.to_string(), header.to_string())).map(String::as_str)
    }
}

impl Model {
    /// The model `make run` serves (the mock provider on 127.0.0.1:8000), compiled in so the
    /// control plane starts with no file at all.
    pub fn embedded_default() -> Model {
        // Checked by a test; a broken embedded file fails the build's tests, never a user.
        Model::from_yaml(EMBEDDED_DEFAULT).unwrap_or_else(|e| panic!("embedded default model: {e}"))
    }
}

pub const EMBEDDED_DEFAULT: &str = include_str!("../../models/default.yaml");

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod tests;
