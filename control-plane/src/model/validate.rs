//! Offline validation of a model file. Every error names the field (as a path like
//! `models[1].providers[0].weight`) and the offending value.
use super::{Model, Provider};
use aurelis_core::config::FilterConfig;
use std::collections::BTreeSet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("model file: {0}")]
    Syntax(String),
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::Invalid { field: field.into(), message: message.into() }
}

/// A provider's base URL, split into the parts Envoy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Without a trailing slash; empty for none.
    pub path: String,
}

impl BaseUrl {
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("`{text}` must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(format!("`{text}` must not have a query or fragment"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port).map_err(|e| format!("`{text}`: {e}"))?;
        Ok(BaseUrl { tls, host, port, path: path.trim_end_matches('/').to_string() })
    }
}

/// `host[:port]` or `[v6]:port`.
pub fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed `[` in address")?;
        (host.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)) {
        return Err(format!("`{authority}` has no valid host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("`{p}` is not a port"))?,
    };
    Ok((host, port))
}

pub fn is_ip(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
}

/// Resource names end up in Envoy cluster names and stats: keep them plain.
fn check_name(field: &str, name: &str) -> Result<(), ModelError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if ok {
        Ok(())
    } else {
        // No dots: the name is an Envoy cluster name, and dots split stat names.
        Err(invalid(field, format!("`{name}` must be 1-64 characters of letters, digits, `_`, `-`")))
    }
}

fn check_model_name(field: &str, name: &str) -> Result<(), ModelError> {
    // Model ids like `openai/gpt-4o-mini` carry a slash; they travel in a header, so printable only.
    let ok = !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("`{name}` must be 1-128 printable characters without spaces")))
    }
}

impl Model {
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.listener.address.parse::<IpAddr>().is_err() {
            return Err(invalid("listener.address", format!("`{}` is not an IP address", self.listener.address)));
        }
        check_access_log_path(&self.listener.access_log.path)?;
        if self.providers.is_empty() {
            return Err(invalid("providers", "at least one provider is needed"));
        }
        let mut names = BTreeSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            check_name(&format!("providers[{i}].name"), &provider.name)?;
            if !names.insert(provider.name.as_str()) {
                return Err(invalid(format!("providers[{i}].name"), format!("`{}` is defined twice", provider.name)));
            }
            validate_provider(&format!("providers[{i}]"), provider)?;
        }
        if self.models.is_empty() {
            return Err(invalid("models", "at least one model is needed"));
        }
        let mut model_names = BTreeSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let field = format!("models[{i}]");
            check_model_name(&format!("{field}.name"), &model.name)?;
            if !model_names.insert(model.name.as_str()) {
                return Err(invalid(format!("{field}.name"), format!("`{}` is defined twice", model.name)));
            }
            if model.providers.is_empty() {
                return Err(invalid(format!("{field}.providers"), "at least one provider is needed"));
            }
            let mut paths = BTreeSet::new();
            for (j, weighted) in model.providers.iter().enumerate() {
                let field = format!("{field}.providers[{j}]");
                let provider = self.provider(&weighted.provider).ok_or_else(|| {
                    invalid(format!("{field}.provider"), format!("`{}` is not a defined provider", weighted.provider))
                })?;
                if weighted.weight > 10_000 {
                    return Err(invalid(format!("{field}.weight"), format!("{} is above 10000", weighted.weight)));
                }
                paths.insert(provider_base(provider).map(|b| b.path).unwrap_or_default());
            }
            if model.providers.iter().all(|p| p.weight == 0) {
                return Err(invalid(
                    format!("{field}.providers"),
                    "the weights sum to 0: no provider would get traffic",
                ));
            }
            // One route rewrites the path once, whichever provider the weighted pick lands on.
            if paths.len() > 1 {
                return Err(invalid(
                    format!("{field}.providers"),
                    format!("providers have different base paths {paths:?}; a model's providers must share one"),
                ));
            }
        }
        self.validate_access()?;
        self.telemetry.validate(&model_names)?;
        self.anomalies.validate().map_err(|e| invalid(format!("anomalies.{}", e.field), e.message))?;
        self.check_filter(&self.filter_config()?)
    }

    /// Whether these filter settings fit this model: client authentication fits the providers'
    /// credentials and the `jwt` section (`check_auth`), the L2 cluster needs the model's
    /// `cache_service` and must not take a provider's name (it would replace that provider's
    /// cluster). Run for the model file's own `filter` section, for `--filter-config`, and for
    /// every filter config the admin API accepts.
    pub fn check_filter(&self, filter: &FilterConfig) -> Result<(), ModelError> {
        self.check_auth(filter)?;
        if let Some(spec) = &self.cache_service {
            if spec.endpoints.is_empty() {
                return Err(invalid("cache_service.endpoints", "at least one endpoint is needed"));
            }
            for (i, e) in spec.endpoints.iter().enumerate() {
                let ok = e.contains(':') && split_host_port(e, 0).is_ok_and(|(_, p)| p > 0);
                if !ok {
                    return Err(invalid(format!("cache_service.endpoints[{i}]"), format!("`{e}` must be host:port")));
                }
            }
            if spec
                .endpoints
                .iter()
                .map(|e| is_ip(e.rsplit_once(':').map_or(e.as_str(), |(h, _)| h)))
                .collect::<BTreeSet<_>>()
                .len()
                > 1
            {
                return Err(invalid("cache_service.endpoints", "mixes IP addresses and host names; use one kind"));
            }
            if self.providers.iter().any(|p| p.name == filter.l2.cluster) {
                return Err(invalid("filter.l2.cluster", format!("`{}` is also a provider's name", filter.l2.cluster)));
            }
        } else if filter.l2.enabled {
            return Err(invalid(
                "filter.l2.enabled",
                "true needs a `cache_service` section (where the L2 service runs)",
            ));
        }
        Ok(())
    }
}

fn provider_base(provider: &Provider) -> Result<BaseUrl, String> {
    BaseUrl::parse(&provider.base_url)
}

fn validate_provider(field: &str, provider: &Provider) -> Result<(), ModelError> {
    let base = provider_base(provider).map_err(|e| invalid(format!("{field}.base_url"), e))?;
    for (i, endpoint) in provider.endpoints.iter().enumerate() {
        let f = format!("{field}.endpoints[{i}]");
        split_host_port(&endpoint.address, base.port).map_err(|e| invalid(format!("{f}.address"), e))?;
        if endpoint.weight == 0 || endpoint.weight > 128 {
            return Err(invalid(format!("{f}.weight"), format!("{} must be 1-128", endpoint.weight)));
        }
    }
    let mixed = provider.endpoint_addresses().iter().map(|(h, _, _)| is_ip(h)).collect::<BTreeSet<_>>();
    if mixed.len() > 1 {
        return Err(invalid(format!("{field}.endpoints"), "mixes IP addresses and host names; use one kind"));
    }
    for (i, header) in provider.headers.iter().enumerate() {
        let f = format!("{field}.headers[{i}]");
        let valid_name = !header.name.is_empty()
            && header.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_name {
            return Err(invalid(format!("{f}.name"), format!("`{}` must be a lowercase header name", header.name)));
        }
        let plain_var = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (header.value_from_env.is_empty(), header.envoy_env.is_empty()) {
            (false, true) | (true, false) => {}
            _ => {
                return Err(invalid(
                    format!("{f}.value_from_env"),
                    "name exactly one of `value_from_env` (control plane) or `envoy_env` (Envoy)",
                ))
            }
        }
        if !header.envoy_env.is_empty() && !plain_var(&header.envoy_env) {
            return Err(invalid(
                format!("{f}.envoy_env"),
                format!("`{}` is not an environment variable name", header.envoy_env),
            ));
        }
    }
    if let Some(probe) = &provider.health_check {
        let f = format!("{field}.health_check");
        if !probe.path.starts_with('/') {
            return Err(invalid(format!("{f}.path"), format!("`{}` must start with /", probe.path)));
        }
        if probe.interval_ms < 100 || probe.timeout_ms == 0 || probe.timeout_ms > probe.interval_ms {
            return Err(invalid(
                format!("{f}.interval_ms"),
                format!(
                    "interval {} ms must be >= 100 and >= timeout {} ms (> 0)",
                    probe.interval_ms, probe.timeout_ms
                ),
            ));
        }
        if probe.unhealthy_threshold == 0 || probe.healthy_threshold == 0 {
            return Err(invalid(format!("{f}.unhealthy_threshold"), "thresholds must be at least 1"));
        }
    }
    let limits = &provider.limits;
    if limits.connect_timeout_ms == 0 || limits.request_timeout_s == 0 {
        return Err(invalid(format!("{field}.limits"), "timeouts must be above 0"));
    }
    if limits.healthy_panic_threshold_percent > 100 {
        return Err(invalid(
            format!("{field}.limits.healthy_panic_threshold_percent"),
            format!("{} is above 100", limits.healthy_panic_threshold_percent),
        ));
    }
    if limits.retry_budget_percent > 100 {
        return Err(invalid(
            format!("{field}.limits.retry_budget_percent"),
            format!("{} is above 100", limits.retry_budget_percent),
        ));
    }
    if limits.max_ejection_percent > 100 {
        return Err(invalid(
            format!("{field}.limits.max_ejection_percent"),
            format!("{} is above 100", limits.max_ejection_percent),
        ));
    }
    Ok(())
}

impl Provider {
    /// Parsed base URL; validation guarantees it parses.
    pub fn base(&self) -> BaseUrl {
        BaseUrl::parse(&self.base_url).unwrap_or(BaseUrl {
            tls: false,
            host: "invalid".into(),
            port: 1,
            path: String::new(),
        })
    }

    /// `(host, port, weight)` of every endpoint, the base URL's own when none are listed.
    pub fn endpoint_addresses(&self) -> Vec<(String, u16, u32)> {
        let base = self.base();
        if self.endpoints.is_empty() {
            return vec![(base.host, base.port, 1)];
        }
        self.endpoints
            .iter()
            .filter_map(|e| split_host_port(&e.address, base.port).ok().map(|(h, p)| (h, p, e.weight)))
            .collect()
    }

    /// Served over EDS (IP endpoints, health from the control plane) or DNS (host names).
    pub fn uses_eds(&self) -> bool {
        self.endpoint_addresses().iter().all(|(h, _, _)| is_ip(h))
    }
}

/// Envoy opens the access log path itself, relative to wherever it was started: only absolute
/// paths mean the same file on every host.
fn check_access_log_path(path: &str) -> Result<(), ModelError> {
    let field = "listener.access_log.path";
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(invalid(field, format!("`{path}` must be an absolute file path (e.g. /dev/stdout)")));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid(field, "the path must not contain control characters"));
    }
    Ok(())
}
