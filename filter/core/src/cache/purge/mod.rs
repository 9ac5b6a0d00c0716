//! Purging L1: the control plane pushes purge rules over ECDS (`cache.purges`), and every
//! Envoy treats the L1 entries of a rule's scope that it held before it saw the rule as misses
//! (and drops them), while entries filled afterwards are served as usual.
//!
//! Why rules with a moment rather than a sweep: L1 entries do not carry their model (it is
//! inside the key's hash), so no sweep could find a model's entries; a rule is checked against
//! the entry a lookup found instead, which knows its tenant (in the key), its model (the
//! request's) and when this Envoy stored it (the slot's `inserted_ms`).
//!
//! Why the moment is this Envoy's own: the rule is applied when a worker first sees it
//! (`table::apply`), with this Envoy's clock, and every L1 insert is stamped with the same
//! clock, so clock skew between the control plane and Envoys cannot keep a purged entry alive.
//! The moment is kept in the process-wide store, so all workers agree on it and a control plane
//! that restarted without the rule cannot bring purged entries back.
//!
//! Bounds: at most `MAX_RULES` rules in a configuration (the control plane folds older ones
//! into one `all` rule), and the store's table holds at most `table::MAX_APPLIED` rules.
//! Rules carry a tenant *scope* (`t=` and 16 hex of a hash), a model name or a schema tag:
//! never a prompt or a secret.
pub mod table;

pub use table::{apply, Purges};

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Most rules one configuration may carry.
pub const MAX_RULES: usize = 32;
/// Longest tenant, model or schema value (the cache service's tag bound).
pub const MAX_VALUE_BYTES: usize = 128;

/// One purge: which entries (exactly one of `tenant`, `model`, `schema`, `all`), named by an
/// `id` unique per purge (the control plane's Unix ms when it was asked, kept increasing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRule {
    pub id: u64,
    /// A tenant scope as it appears in keys and L2 tags: `t=<16 hex>`, `anon` or `shared`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The request's model (the body's `model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The storage schema tag every entry is written with (`l2::SCHEMA_TAG`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Every entry: what older rules are folded into when there are too many.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// What a rule covers, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant(String),
    Model(String),
    Schema(String),
    All,
}

impl PurgeRule {
    /// The rule's scope; `None` unless exactly one of them is set.
    pub fn scope(&self) -> Option<Scope> {
        match (&self.tenant, &self.model, &self.schema, self.all) {
            (Some(t), None, None, false) => Some(Scope::Tenant(t.clone())),
            (None, Some(m), None, false) => Some(Scope::Model(m.clone())),
            (None, None, Some(s), false) => Some(Scope::Schema(s.clone())),
            (None, None, None, true) => Some(Scope::All),
            _ => None,
        }
    }
}

impl Scope {
    /// Whether an entry under `key_scope` (the tenant part of its key) for `model` is in this
    /// scope. An unknown model (`None`) is taken as covered: a needless miss, never a purged
    /// answer served.
    pub fn covers(&self, key_scope: Option<&str>, model: Option<&str>) -> bool {
        match self {
            Scope::Tenant(t) => key_scope.is_none_or(|s| s == t),
            Scope::Model(m) => model.is_none_or(|found| found == m),
            Scope::Schema(s) => s == crate::cache::l2::SCHEMA_TAG,
            Scope::All => true,
        }
    }
}

/// The tenant part of an entry key (`{prefix}v{N}:{scope}:…`), `None` if it is not one.
pub fn key_scope<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)?.split(':').nth(1)
}

/// Refuses what the filter could not apply, naming the field and the value. Shared by the
/// filter (`on_configure`) and the control plane (before it pushes).
pub fn validate(rules: &[PurgeRule]) -> Result<(), ConfigError> {
    let invalid = |value: String, reason: &'static str| ConfigError::Invalid { field: "cache.purges", value, reason };
    if rules.len() > MAX_RULES {
        return Err(invalid(rules.len().to_string(), "at most 32 rules (fold older ones into an `all` rule)"));
    }
    let mut ids = HashSet::new();
    for rule in rules {
        if rule.id == 0 {
            return Err(invalid("id 0".into(), "ids start at 1"));
        }
        if !ids.insert(rule.id) {
            return Err(invalid(format!("id {}", rule.id), "ids must be unique"));
        }
        let value = match rule.scope() {
            Some(Scope::Tenant(v) | Scope::Model(v) | Scope::Schema(v)) => v,
            Some(Scope::All) => continue,
            None => return Err(invalid(format!("id {}", rule.id), "name exactly one of tenant, model, schema, all")),
        };
        let plain = !value.is_empty() && value.len() <= MAX_VALUE_BYTES && value.bytes().all(|b| b.is_ascii_graphic());
        if !plain {
            return Err(invalid(value, "must be 1 to 128 printable ASCII characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
