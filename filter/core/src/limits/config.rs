//! Rate-limit configuration: part of the filter's one schema (`FilterConfig::rate_limit`).
use serde::{Deserialize, Serialize};

/// Who a limit applies to. Only verified facts: a client can send any key or header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The verified identity (`auth`): the consumer's name, a JWT's consumer claim, or the
    /// client address for anonymous access.
    #[default]
    Consumer,
    /// The downstream client address.
    ClientAddress,
    /// Everyone on the route shares one budget.
    Route,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    #[default]
    Second,
    Minute,
}

impl Period {
    pub fn millis(self) -> u64 {
        match self {
            Period::Second => 1000,
            Period::Minute => 60_000,
        }
    }
}

/// What a request gets when the limit table cannot be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Admitted, and the error counted: an outage of the table never becomes an outage of the
    /// API, at the price of unenforced limits while it lasts.
    #[default]
    Open,
    /// Refused with 503 `rate_limit_unavailable`: limits are never exceeded, at the price of
    /// refusing traffic while the table is unavailable.
    Closed,
}

/// A token bucket of requests: `rate` per `per`, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLimit {
    pub rate: u32,
    #[serde(default)]
    pub per: Period,
    /// Defaults to `rate`.
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RequestLimit {
    pub fn capacity(&self) -> u64 {
        u64::from(self.burst.unwrap_or(self.rate).max(1))
    }
}

/// The limits one identity gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub requests: Option<RequestLimit>,
    /// LLM tokens (prompt + completion) per minute, reserved before admission.
    pub tokens_per_minute: Option<u64>,
}

/// Replaces the default limits for one identity and/or one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverride {
    /// The identity's label: the consumer's name (API key or JWT), or the client address.
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub identity: IdentitySource,
    /// Refused when set (a client can send any header); kept so the refusal can say why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_header: Option<String>,
    /// Separate budgets per model for the same identity.
    pub per_model: bool,
    #[serde(flatten)]
    pub limits: Limits,
    pub overrides: Vec<LimitOverride>,
    /// Reserved completion tokens when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Bound on tracked identities (idle ones are reclaimed).
    pub max_identities: u32,
    /// Whether cache hits spend the token budget (they always count as requests).
    pub cache_hits_spend_tokens: bool,
    pub failure_policy: FailurePolicy,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: false,
            identity: IdentitySource::Consumer,
            identity_header: None,
            per_model: false,
            limits: Limits::default(),
            overrides: Vec::new(),
            default_max_tokens: 1024,
            max_identities: 10_000,
            cache_hits_spend_tokens: false,
            failure_policy: FailurePolicy::Open,
        }
    }
}

impl RateLimitConfig {
    /// The limits for `identity` and `model`: the most specific override wins (identity+model,
    /// then identity, then the consumer's own limits, then model, then the defaults).
    pub fn limits_for_consumer(&self, identity: &str, model: Option<&str>, consumer: Option<Limits>) -> Limits {
        let matches = |o: &&LimitOverride, want_model: bool| {
            o.identity.as_deref() == Some(identity)
                && o.model.is_some() == want_model
                && o.model.as_deref().is_none_or(|m| Some(m) == model)
        };
        let by_identity = [true, false].iter().find_map(|m| self.overrides.iter().find(|o| matches(o, *m)));
        match (by_identity, consumer) {
            (Some(o), _) => o.limits,
            (None, Some(limits)) => limits,
            (None, None) => self.limits_for(identity, model),
        }
    }

    /// The limits for `identity` and `model`: the most specific override wins
    /// (identity+model, then identity, then model, then the defaults).
    pub fn limits_for(&self, identity: &str, model: Option<&str>) -> Limits {
        let matches = |o: &&LimitOverride, want_id: bool, want_model: bool| {
            o.identity.is_some() == want_id
                && o.model.is_some() == want_model
                && o.identity.as_deref().is_none_or(|i| i == identity)
                && o.model.as_deref().is_none_or(|m| Some(m) == model)
        };
        [(true, true), (true, false), (false, true)]
            .iter()
            .find_map(|(i, m)| self.overrides.iter().find(|o| matches(o, *i, *m)))
            .map_or(self.limits, |o| o.limits)
    }
}

/// Rates and budgets of at least 1 (0 would refuse everything: say so instead).
pub fn validate_limits(limits: &Limits) -> Result<(), crate::config::ConfigError> {
    let invalid = |field: &'static str| crate::config::ConfigError::Invalid {
        field,
        value: "0".into(),
        reason: "must be at least 1",
    };
    if let Some(req) = limits.requests {
        if req.rate == 0 {
            return Err(invalid("rate_limit.requests.rate"));
        }
        if req.burst == Some(0) {
            return Err(invalid("rate_limit.requests.burst"));
        }
    }
    if limits.tokens_per_minute == Some(0) {
        return Err(invalid("rate_limit.tokens_per_minute"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::FilterConfig;

    #[test]
    fn parses_limits_and_overrides() {
        let c = FilterConfig::from_json(
            br#"{"rate_limit":{"enabled":true,"requests":{"rate":50,"per":"minute"},"tokens_per_minute":10000,
                "overrides":[{"identity":"team-a","tokens_per_minute":99},{"model":"gpt-4o","requests":{"rate":1}}]}}"#,
        )
        .unwrap();
        let r = &c.rate_limit;
        assert_eq!(r.limits.tokens_per_minute, Some(10000));
        assert_eq!(r.limits_for("team-a", Some("gpt-4o")).tokens_per_minute, Some(99));
        assert_eq!(r.limits_for("team-b", Some("gpt-4o")).requests.map(|q| q.rate), Some(1));
        assert_eq!(r.limits_for("team-b", None).tokens_per_minute, Some(10000));
    }

    #[test]
    fn unknown_and_invalid_fields_are_named() {
        let err = FilterConfig::from_json(br#"{"rate_limit":{"enabled":true,"requestz":{"rate":1}}}"#).unwrap_err();
        assert!(err.to_string().contains("requestz"), "{err}");
        let err = FilterConfig::from_json(br#"{"rate_limit":{"enabled":true,"requests":{"rate":0}}}"#).unwrap_err();
        assert!(err.to_string().contains("rate_limit.requests.rate"), "{err}");
        let err = FilterConfig::from_json(br#"{"rate_limit":{"identity":"header"}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `header`"), "{err}");
        let err = FilterConfig::from_json(br#"{"rate_limit":{"identity_header":"x-team"}}"#).unwrap_err();
        assert!(err.to_string().contains("verified identity"), "{err}");
    }
}
