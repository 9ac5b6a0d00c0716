//! The filter's configuration schema: one set of types for the filter (parsed in `on_configure`)
//! and the control plane (validated before anything is pushed), so both sides agree by construction.
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration the filter refuses, naming the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("filter config is not valid JSON for the schema: {0}")]
    Parse(String),
    #[error("invalid value for `{field}`: {value} ({reason})")]
    Invalid { field: &'static str, value: String, reason: &'static str },
}

fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { field, value: value.to_string(), reason }
}

/// Which requests are worth caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    /// Cache only requests whose answer is reproducible: `temperature: 0` or an explicit `seed`.
    #[default]
    Deterministic,
    /// Cache every otherwise cacheable request (sampling output is frozen at the first answer).
    Always,
}

/// The seed's normalization rules. Defaults never merge requests that can produce different
/// completions; the aggressive settings are opt-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizationConfig {
    /// `false` lowercases message text before hashing (opt-in: case can change an answer).
    pub case_sensitive: bool,
    /// `true` collapses runs of whitespace inside message text (opt-in: whitespace matters for code).
    pub whitespace_normalize: bool,
    /// Accepted and ignored, so configurations written for earlier versions still load: JSON
    /// member order carries no meaning, and object keys are always sorted.
    #[serde(default, skip_serializing)]
    pub parameter_order: Option<bool>,
    /// `true` applies the seed's prompt-level "semantic" normalization (opt-in, lossy): see
    /// `key::canonical` for exactly what it folds. Parameters equal to the API's documented
    /// default are always treated as absent: that never merges different completions.
    pub semantic_equivalence: bool,
}

impl Default for NormalizationConfig {
    fn default() -> Self {
        Self { case_sensitive: true, whitespace_normalize: false, parameter_order: None, semantic_equivalence: false }
    }
}

/// Which L1 entry makes room when a set is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum EvictionPolicy {
    /// The least recently used entry.
    #[default]
    Lru,
    /// The least frequently used entry (hits while it was stored; ties: least recently used).
    /// Keeps a skewed workload's hot keys when a burst of one-off prompts passes through.
    Lfu,
}

impl TryFrom<String> for EvictionPolicy {
    type Error = String;

    /// Named here because serde's own message for an unknown variant names no field.
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "lru" => Ok(EvictionPolicy::Lru),
            "lfu" => Ok(EvictionPolicy::Lfu),
            other => Err(format!("invalid value for `cache.eviction`: `{other}` (must be lru or lfu)")),
        }
    }
}

/// Cache scopes. The tenant of a request comes from its verified identity (`auth`): the
/// consumer's tenant, a JWT's tenant claim, or the client address for anonymous access. Cache
/// entries are isolated per tenant unless `shared_scope` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Refused when set: a header is something a client can send. Kept in the schema so the
    /// refusal can say what to use instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Opt-in: all tenants share one cache scope.
    pub shared_scope: bool,
}

/// The L1 response cache and its cacheability gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Request paths (exact match, query string ignored) that the cache applies to.
    pub paths: Vec<String>,
    pub policy: CachePolicy,
    pub ttl_seconds: u64,
    /// Bound on the number of L1 entries (seed default 1000).
    pub max_entries: u32,
    /// Bound on the bytes of all L1 entries together.
    pub max_bytes: u64,
    /// What L1 evicts when a set is full: `lru` (default) or `lfu`.
    pub eviction: EvictionPolicy,
    /// Largest request body the filter buffers and canonicalizes; larger ones bypass.
    pub max_body_bytes: u64,
    /// Largest response the filter stores; larger ones are served but not stored.
    pub max_entry_bytes: u64,
    /// `finish_reason` values of a storable completion.
    pub cacheable_finish_reasons: Vec<String>,
    /// How long identical concurrent misses wait for the first one's fill before going upstream.
    pub coalesce_timeout_ms: u64,
    /// Prefix of every cache key.
    pub key_prefix: String,
    /// Query parameters that select API behaviour and are part of the key (Azure's
    /// `api-version`). A request with any other query parameter bypasses (reason `query`).
    pub key_query_params: Vec<String>,
    /// Request headers that change the upstream answer and are part of the key (lowercase).
    pub key_headers: Vec<String>,
    /// Purges pushed by the control plane: L1 entries of each rule's scope stored before this
    /// Envoy saw the rule are misses (`cache::purge`). Empty unless an operator purged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub purges: Vec<crate::cache::PurgeRule>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            paths: vec![
                "/v1/chat/completions".into(),
                "/v1/completions".into(),
                "/v1/embeddings".into(),
                "/inference/chat/completions".into(),
            ],
            policy: CachePolicy::Deterministic,
            ttl_seconds: 300,
            max_entries: 1000,
            max_bytes: 64 * 1024 * 1024,
            eviction: EvictionPolicy::Lru,
            max_body_bytes: 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            cacheable_finish_reasons: vec!["stop".into(), "length".into()],
            coalesce_timeout_ms: 5000,
            key_prefix: "model_request:".into(),
            key_query_params: vec!["api-version".into()],
            key_headers: vec!["openai-organization".into(), "openai-project".into(), "anthropic-version".into()],
            purges: Vec::new(),
        }
    }
}

/// The shared L2 cache: the Aurelis cache service (fronting Redis), reached through an Envoy
/// cluster. Off by default. Lookups fail open: any error or timeout is an L2 miss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L2Config {
    pub enabled: bool,
    /// The Envoy cluster of the cache service.
    pub cluster: String,
    /// `:authority` of calls to the cache service.
    pub authority: String,
    /// An L1 miss waits at most this long for L2 before going upstream.
    pub timeout_ms: u64,
    /// Lifetime of entries in L2 (the seed's 1 h).
    pub ttl_seconds: u64,
    /// Entries at least this large are stored compressed.
    pub compress_min_bytes: u64,
    /// Separates fleets (or environments) sharing one Redis.
    pub namespace: String,
    /// Lifetime of entries in the cache service's persistent L3 (its `--l3-ttl-seconds`): an
    /// entry the service answers from L3 may be this old.
    pub l3_ttl_seconds: u64,
}

impl Default for L2Config {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster: "aurelis_l2".into(),
            authority: "aurelis-l2".into(),
            timeout_ms: 25,
            ttl_seconds: 3600,
            compress_min_bytes: 1024,
            namespace: "aurelis".into(),
            l3_ttl_seconds: 86_400,
        }
    }
}

impl L2Config {
    /// How old an entry the cache service answers from `level` (`answering_level`) may be and
    /// still be served (ms). From L2: its TTL. From L3: L3's lifetime (at least the L2 TTL),
    /// since the service vouches that L3 still holds it; the header is set by the service only,
    /// never by what Redis or L3 stores. The service expires entries itself; this bound caps how
    /// old a genuine (MAC-checked) value that someone with access to the storage kept or put
    /// back can be.
    pub fn freshness_bound_ms(&self, level: &str) -> u64 {
        let seconds = if level == "L3" { self.ttl_seconds.max(self.l3_ttl_seconds) } else { self.ttl_seconds };
        seconds.saturating_mul(1000)
    }
}

/// The whole filter configuration, as JSON in the Wasm plugin's `configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Who may call and who they are (API-key consumers, JWT, explicit anonymous access).
    pub auth: crate::auth::AuthConfig,
    pub cache: CacheConfig,
    pub normalization: NormalizationConfig,
    pub tenant: TenantConfig,
    pub rate_limit: crate::limits::RateLimitConfig,
    pub l2: L2Config,
    /// Largest body of a model call: every model call's body is read for its model (allowed
    /// models, limits, routing); larger ones are refused (413). Keep Envoy's buffer limit
    /// for the listener at least this large.
    pub max_request_body_bytes: u64,
    /// Opt-in `x-aurelis-cache-key-info` response header explaining the key (never prompt text).
    pub debug_headers: bool,
    /// Opt-in logging of prompt text at debug level. Off by default: prompts are user data.
    pub log_prompts: bool,
    /// The route table matches on `x-aurelis-model` (the control plane's routes do): requests
    /// going upstream carry the body's model there, and a client's own copy is removed. Turn
    /// off for a route table that does not match on it, to spare Envoy a route re-match per
    /// upstream request.
    pub route_by_model: bool,
    /// Hold the request headers until the body is read (a hit never reaches the router). Envoy
    /// lets a Wasm filter do that only with `allow_on_headers_stop_iteration`, which an Istio
    /// `WasmPlugin` cannot set: there, turn this off. The headers then go on to the router at
    /// once (the upstream request starts), the body is still held, and a hit answers from the
    /// body and resets that upstream request before any of the body was sent. Needs
    /// `route_by_model: false` (the model would be read after routing).
    pub hold_request_headers: bool,
    /// Warming a new L1 from the cache service's hottest entries, and L1 hit reports.
    pub warm: crate::warm::WarmConfig,
    /// Refresh-ahead, opt-in per tenant (`refresh`). Left out of the pushed JSON when off, so
    /// configurations without it stay byte-identical.
    #[serde(skip_serializing_if = "crate::refresh::RefreshConfig::is_off")]
    pub refresh: crate::refresh::RefreshConfig,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            auth: crate::auth::AuthConfig::default(),
            cache: CacheConfig::default(),
            normalization: NormalizationConfig::default(),
            tenant: TenantConfig::default(),
            rate_limit: crate::limits::RateLimitConfig::default(),
            l2: L2Config::default(),
            max_request_body_bytes: 4 * 1024 * 1024,
            debug_headers: false,
            log_prompts: false,
            route_by_model: true,
            hold_request_headers: true,
            warm: crate::warm::WarmConfig::default(),
            refresh: crate::refresh::RefreshConfig::default(),
        }
    }
}

pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

impl FilterConfig {
    fn validate_l2(&self) -> Result<(), ConfigError> {
        let l2 = &self.l2;
        let plain = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        };
        // `|` too: Istio names clusters `outbound|<port>||<host>`.
        let cluster_ok = !l2.cluster.is_empty()
            && l2.cluster.len() <= 255
            && l2.cluster.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.|".contains(&b));
        if !cluster_ok {
            return Err(invalid("l2.cluster", &l2.cluster, "must be 1 to 255 letters, digits, '_', '-', '.', '|'"));
        }
        if !plain(&l2.authority) {
            return Err(invalid("l2.authority", &l2.authority, "must be 1 to 64 letters, digits, '_', '-', '.'"));
        }
        if l2.timeout_ms == 0 || l2.timeout_ms > 5000 {
            return Err(invalid("l2.timeout_ms", l2.timeout_ms, "must be between 1 and 5000"));
        }
        if l2.ttl_seconds == 0 || l2.ttl_seconds > 30 * 24 * 3600 {
            return Err(invalid("l2.ttl_seconds", l2.ttl_seconds, "must be between 1 and 2592000"));
        }
        if !plain(&l2.namespace) || l2.namespace.contains('.') {
            return Err(invalid("l2.namespace", &l2.namespace, "must be 1 to 64 letters, digits, '_', '-'"));
        }
        Ok(())
    }
}

impl FilterConfig {
    /// Parses and validates; an empty configuration means all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let trimmed = bytes.iter().all(|b| b.is_ascii_whitespace());
        let config: FilterConfig = if trimmed {
            FilterConfig::default()
        } else if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            // serde would read a JSON array as a struct by position: only objects are configs.
            return Err(ConfigError::Parse("the filter configuration must be a JSON object".into()));
        } else {
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.hold_request_headers && self.route_by_model {
            return Err(invalid(
                "hold_request_headers",
                false,
                "needs route_by_model: false (the body's model would be read after routing)",
            ));
        }
        let c = &self.cache;
        if c.paths.is_empty() {
            return Err(invalid("cache.paths", "[]", "at least one path is required"));
        }
        if let Some(p) = c.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(invalid("cache.paths", p, "paths must start with '/'"));
        }
        if c.ttl_seconds == 0 || c.ttl_seconds > MAX_TTL_SECONDS {
            return Err(invalid("cache.ttl_seconds", c.ttl_seconds, "must be between 1 and 604800"));
        }
        if c.max_entries == 0 || c.max_entries > 1_000_000 {
            return Err(invalid("cache.max_entries", c.max_entries, "must be between 1 and 1000000"));
        }
        if c.max_entry_bytes == 0 || c.max_entry_bytes > c.max_bytes {
            return Err(invalid("cache.max_entry_bytes", c.max_entry_bytes, "must be between 1 and cache.max_bytes"));
        }
        if c.max_body_bytes == 0 || c.max_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid("cache.max_body_bytes", c.max_body_bytes, "must be between 1 and 67108864"));
        }
        if self.max_request_body_bytes == 0 || self.max_request_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "max_request_body_bytes",
                self.max_request_body_bytes,
                "must be between 1 and 67108864",
            ));
        }
        if c.coalesce_timeout_ms > 600_000 {
            return Err(invalid("cache.coalesce_timeout_ms", c.coalesce_timeout_ms, "must be at most 600000"));
        }
        if c.key_prefix.is_empty() || c.key_prefix.len() > 64 {
            return Err(invalid("cache.key_prefix", &c.key_prefix, "must be 1 to 64 characters"));
        }
        if let Some(p) = c.key_query_params.iter().find(|p| p.is_empty() || p.len() > 64 || p.contains(['&', '=', '#']))
        {
            return Err(invalid("cache.key_query_params", p, "must be query parameter names"));
        }
        if let Some(h) = c.key_headers.iter().find(|h| !valid_header_name(h) || h.starts_with("x-aurelis-")) {
            return Err(invalid("cache.key_headers", h, "must be lowercase header names (not x-aurelis-*)"));
        }
        crate::cache::purge::validate(&c.purges)?;
        self.auth.validate()?;
        self.validate_rate_limit()?;
        self.validate_l2()?;
        self.warm.validate()?;
        self.refresh.validate(self.l2.enabled)?;
        if let Some(h) = &self.tenant.header {
            return Err(invalid(
                "tenant.header",
                h,
                "a client can send any header: the tenant comes from the verified identity (auth.consumers[].tenant or auth.jwt.tenant_claim)",
            ));
        }
        Ok(())
    }
}

fn valid_header_name(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl FilterConfig {
    fn validate_rate_limit(&self) -> Result<(), ConfigError> {
        let r = &self.rate_limit;
        if r.max_identities == 0 || r.max_identities > 1_000_000 {
            return Err(invalid("rate_limit.max_identities", r.max_identities, "must be between 1 and 1000000"));
        }
        if let Some(header) = &r.identity_header {
            return Err(invalid(
                "rate_limit.identity_header",
                header,
                "a client can send any header: limits apply to the verified identity (identity `consumer`)",
            ));
        }
        let all = std::iter::once(&r.limits).chain(r.overrides.iter().map(|o| &o.limits));
        for limits in all {
            crate::limits::validate_limits(limits)?;
        }
        let consumer_limits = self.auth.consumers.iter().any(|c| c.limits.is_some());
        if r.enabled && r.limits == crate::limits::Limits::default() && r.overrides.is_empty() && !consumer_limits {
            return Err(invalid("rate_limit", "enabled without limits", "set requests and/or tokens_per_minute"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_written_for_earlier_versions_still_load() {
        let config = FilterConfig::from_json(br#"{"normalization":{"parameter_order":false}}"#).unwrap();
        assert_eq!(config.normalization.parameter_order, Some(false));
        assert!(!serde_json::to_string(&config).unwrap().contains("parameter_order"), "never pushed on");
    }

    #[test]
    fn empty_config_is_all_defaults() {
        assert_eq!(FilterConfig::from_json(b"").unwrap(), FilterConfig::default());
        assert_eq!(FilterConfig::from_json(b"{}").unwrap(), FilterConfig::default());
    }

    #[test]
    fn only_objects_are_configs() {
        assert!(FilterConfig::from_json(b"[]").is_err());
        assert!(FilterConfig::from_json(b" [true]").is_err());
    }

    #[test]
    fn unknown_field_is_refused_by_name() {
        let err = FilterConfig::from_json(br#"{"cache":{"ttl":5}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `ttl`"), "{err}");
    }

    #[test]
    fn the_eviction_policy_is_lru_or_lfu() {
        assert_eq!(FilterConfig::default().cache.eviction, EvictionPolicy::Lru);
        let lfu = FilterConfig::from_json(br#"{"cache":{"eviction":"lfu"}}"#).unwrap();
        assert_eq!(lfu.cache.eviction, EvictionPolicy::Lfu);
        assert!(serde_json::to_string(&lfu).unwrap().contains(r#""eviction":"lfu""#), "pushed as written");
        for bad in [r#""mru""#, r#""LFU""#, "1", "null"] {
            let err = FilterConfig::from_json(format!(r#"{{"cache":{{"eviction":{bad}}}}}"#).as_bytes()).unwrap_err();
            assert!(err.to_string().contains("cache.eviction") || bad == "1" || bad == "null", "{err}");
        }
    }

    #[test]
    fn invalid_value_names_field_and_value() {
        let err = FilterConfig::from_json(br#"{"cache":{"ttl_seconds":0}}"#).unwrap_err();
        assert_eq!(err.to_string(), "invalid value for `cache.ttl_seconds`: 0 (must be between 1 and 604800)");
    }
}
