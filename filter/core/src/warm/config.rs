//! The `warm` section of the filter configuration (one schema for the filter and the control
//! plane, validated the same way on both sides through `FilterConfig::validate`).
use crate::config::ConfigError;
use serde::{Deserialize, Serialize};

/// The cache service's own caps on `GET /v1/hot` (it clamps larger asks to these).
pub const MAX_WARM_ENTRIES: u32 = 1000;
pub const MAX_WARM_BYTES: u64 = 64 * 1024 * 1024;

/// Warming a new L1 from the cache service's hottest entries, and the hit counts that decide
/// what is hot. Both need L2 (`l2.enabled` and a signing key); without it they do nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmConfig {
    /// Fill a new L1 (a new or restarted Envoy, a new L1 layout or L2 namespace) from the
    /// hottest entries of the namespace, once, in the background.
    pub enabled: bool,
    /// At most this many entries are loaded.
    pub max_entries: u32,
    /// At most this many bytes (keys + values) are asked for.
    pub max_bytes: u64,
    /// An entry is hot with at least this many hits (every level's)...
    pub min_hits: u64,
    /// ...and a hit within this many days.
    pub window_days: u32,
    /// Bound on the one call that fetches them.
    pub timeout_ms: u64,
    /// Report this Envoy's L1 hits to the cache service (one batched call per worker every
    /// couple of seconds, never per request), so hits served from L1 count towards "hot".
    pub report_hits: bool,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig {
            enabled: true,
            max_entries: 100,
            max_bytes: 4 * 1024 * 1024,
            min_hits: 10,
            window_days: 30,
            timeout_ms: 2000,
            report_hits: true,
        }
    }
}

impl WarmConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, value: u64, reason| Err(ConfigError::Invalid { field, value: value.to_string(), reason });
        if self.max_entries == 0 || self.max_entries > MAX_WARM_ENTRIES {
            return invalid("warm.max_entries", u64::from(self.max_entries), "must be between 1 and 1000");
        }
        if self.max_bytes == 0 || self.max_bytes > MAX_WARM_BYTES {
            return invalid("warm.max_bytes", self.max_bytes, "must be between 1 and 67108864");
        }
        if self.min_hits > 1_000_000 {
            return invalid("warm.min_hits", self.min_hits, "must be at most 1000000");
        }
        if self.window_days == 0 || self.window_days > 365 {
            return invalid("warm.window_days", u64::from(self.window_days), "must be between 1 and 365");
        }
        if self.timeout_ms == 0 || self.timeout_ms > 30_000 {
            return invalid("warm.timeout_ms", self.timeout_ms, "must be between 1 and 30000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::FilterConfig;

    #[test]
    fn defaults_follow_the_design_and_bad_values_name_their_field() {
        let config = FilterConfig::from_json(b"{}").unwrap();
        assert!(config.warm.enabled && config.warm.report_hits);
        assert_eq!((config.warm.min_hits, config.warm.window_days, config.warm.max_entries), (10, 30, 100));
        for (json, field) in [
            (r#"{"warm":{"max_entries":0}}"#, "warm.max_entries"),
            (r#"{"warm":{"max_entries":1001}}"#, "warm.max_entries"),
            (r#"{"warm":{"max_bytes":67108865}}"#, "warm.max_bytes"),
            (r#"{"warm":{"window_days":0}}"#, "warm.window_days"),
            (r#"{"warm":{"timeout_ms":0}}"#, "warm.timeout_ms"),
            (r#"{"warm":{"min_hits":1000001}}"#, "warm.min_hits"),
        ] {
            let err = FilterConfig::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
        let err = FilterConfig::from_json(br#"{"warm":{"entries":5}}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `entries`"), "{err}");
        let off = FilterConfig::from_json(br#"{"warm":{"enabled":false,"min_hits":2}}"#).unwrap();
        assert!(!off.warm.enabled && off.warm.min_hits == 2);
    }
}
