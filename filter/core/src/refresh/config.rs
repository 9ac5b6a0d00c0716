//! Refresh-ahead settings: part of the filter's one schema (`FilterConfig::refresh`), so the
//! control plane refuses what the filter would refuse, with the same code.
use crate::auth::plain_name;
use crate::config::ConfigError;
use serde::{Deserialize, Serialize};

/// Which tenants opted in, and what their refreshes may spend. Empty (the default): nothing is
/// ever refreshed, no request is recorded, and every grant is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    pub tenants: Vec<RefreshTenant>,
}

/// One opted-in tenant (a consumer's `tenant`, or a JWT's tenant claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshTenant {
    pub tenant: String,
    /// LLM tokens this tenant's refreshes may spend per clock hour (per Envoy), on top of
    /// which every refresh is also charged to the consumer's own rate limits.
    pub tokens_per_hour: u64,
}

pub const MAX_TOKENS_PER_HOUR: u64 = 1_000_000_000;
const MAX_TENANTS: usize = 1000;

fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { field, value: value.to_string(), reason }
}

impl RefreshConfig {
    pub fn is_off(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The tenant's settings, if it opted in.
    pub fn tenant(&self, name: &str) -> Option<&RefreshTenant> {
        self.tenants.iter().find(|t| t.tenant == name)
    }

    /// `l2_enabled`: refreshes need the cache service (records are kept in its L3).
    pub fn validate(&self, l2_enabled: bool) -> Result<(), ConfigError> {
        if self.is_off() {
            return Ok(());
        }
        if !l2_enabled {
            return Err(invalid("refresh.tenants", "set", "refresh-ahead needs l2.enabled (records are kept in L3)"));
        }
        if self.tenants.len() > MAX_TENANTS {
            return Err(invalid("refresh.tenants", self.tenants.len(), "at most 1000 tenants"));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tenants {
            if !plain_name(&t.tenant) {
                return Err(invalid(
                    "refresh.tenants.tenant",
                    &t.tenant,
                    "must be 1 to 64 letters, digits, '_', '-', '.'",
                ));
            }
            if !seen.insert(t.tenant.as_str()) {
                return Err(invalid("refresh.tenants.tenant", &t.tenant, "each tenant once"));
            }
            if t.tokens_per_hour == 0 || t.tokens_per_hour > MAX_TOKENS_PER_HOUR {
                return Err(invalid(
                    "refresh.tenants.tokens_per_hour",
                    t.tokens_per_hour,
                    "must be between 1 and 1000000000",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(tenant: &str, tokens_per_hour: u64) -> RefreshConfig {
        RefreshConfig { tenants: vec![RefreshTenant { tenant: tenant.into(), tokens_per_hour }] }
    }

    #[test]
    fn mistakes_name_their_field_and_value() {
        assert_eq!(RefreshConfig::default().validate(false), Ok(()));
        assert_eq!(one("team-a", 1000).validate(true), Ok(()));
        let err = |c: RefreshConfig, l2| c.validate(l2).unwrap_err().to_string();
        assert!(err(one("team-a", 1000), false).contains("needs l2.enabled"));
        assert!(err(one("team a", 1000), true).contains("`refresh.tenants.tenant`: team a"));
        assert!(err(one("team-a", 0), true).contains("`refresh.tenants.tokens_per_hour`: 0"));
        let twice = RefreshConfig { tenants: [one("t", 1).tenants, one("t", 2).tenants].concat() };
        assert!(err(twice, true).contains("each tenant once"));
    }
}
