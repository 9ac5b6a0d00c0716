//! Which tenant a request belongs to. Entries are isolated per tenant so one caller can never be
//! served another caller's answer (or learn what another caller asked) unless the operator opts
//! into `shared_scope`.
use sha2::{Digest, Sha256};

use crate::config::TenantConfig;

/// The cache scope of a request. Only a hash of the identity is ever kept: the raw header or
/// token never reaches keys, logs or debug headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TenantScope {
    /// `tenant.shared_scope`: one scope for everybody.
    Shared,
    /// 16 lowercase hex characters of a domain-separated SHA-256 of the identity.
    Tenant(String),
    /// Anonymous clients that share one scope.
    Anonymous,
}

impl TenantScope {
    /// The kind of scope, without the identity: safe for stats and debug headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Tenant(_) => "tenant",
            Self::Anonymous => "anon",
        }
    }

    /// Appends `key_part` to `out` without an intermediate string.
    pub fn write_key_part(&self, out: &mut String) {
        match self {
            Self::Tenant(hash) => {
                out.push_str("t=");
                out.push_str(hash);
            }
            other => out.push_str(other.kind()),
        }
    }

    /// The scope as it appears inside a cache key.
    pub fn key_part(&self) -> String {
        match self {
            Self::Tenant(hash) => {
                // Not `format!`: every request with a tenant builds this (~800 instructions).
                let mut part = String::with_capacity(2 + hash.len());
                part.push_str("t=");
                part.push_str(hash);
                part
            }
            other => other.kind().to_owned(),
        }
    }
}

/// Who a verified request is, before hashing: what `scope` hashes. Only `auth` builds these,
/// from an identity it verified; hashing costs more than the rest of a hit's key work, so a
/// worker memoizes `scope()` per identity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum TenantIdentity {
    /// `tenant.shared_scope`: everybody shares one scope.
    Shared,
    /// The tenant of a consumer (API key) or of a verified JWT.
    Tenant(String),
    /// An anonymous client, scoped to its address.
    Client(String),
    /// Anonymous clients sharing one scope (`auth.anonymous.shared_scope`).
    Anonymous,
}

impl std::fmt::Debug for TenantIdentity {
    /// Never prints the value: scopes are kept apart by hashes only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shared => "Shared",
            Self::Tenant(_) => "Tenant(..)",
            Self::Client(_) => "Client(..)",
            Self::Anonymous => "Anonymous",
        })
    }
}

impl TenantIdentity {
    /// The scope; the hash input names its source (`tenant` or `client`), so a tenant name can
    /// never collide with a client address that happens to be the same string.
    pub fn scope(&self) -> TenantScope {
        match self {
            Self::Shared => TenantScope::Shared,
            Self::Tenant(id) => TenantScope::Tenant(identity_hash("tenant", id)),
            Self::Client(address) => TenantScope::Tenant(identity_hash("client", address)),
            Self::Anonymous => TenantScope::Anonymous,
        }
    }

    /// The identity under the configuration: `tenant.shared_scope` puts everybody in one scope.
    pub fn under(self, config: &TenantConfig) -> TenantIdentity {
        if config.shared_scope {
            TenantIdentity::Shared
        } else {
            self
        }
    }

    /// The identity's own text, for bounding memo entries.
    pub fn text_len(&self) -> usize {
        match self {
            Self::Tenant(v) | Self::Client(v) => v.len(),
            Self::Shared | Self::Anonymous => 0,
        }
    }
}

fn identity_hash(source: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"aurelis-tenant\0");
    hasher.update(source.as_bytes());
    hasher.update(b"\0");
    hasher.update(value.as_bytes());
    super::hex_prefix(&hasher.finalize(), 8)
}
