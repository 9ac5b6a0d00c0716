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
    /// No tenant header and no credential.
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
            Self::Tenant(hash) => format!("t={hash}"),
            other => other.kind().to_owned(),
        }
    }
}

/// Who a request says it is, before hashing: what `tenant_scope` hashes. Resolving it is
/// cheap; hashing it is not, so a worker can memoize `scope()` per identity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum TenantIdentity {
    Shared,
    Header(String),
    Credential(String),
    Anonymous,
}

impl std::fmt::Debug for TenantIdentity {
    /// Never prints the value: it may be an API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shared => "Shared",
            Self::Header(_) => "Header(..)",
            Self::Credential(_) => "Credential(..)",
            Self::Anonymous => "Anonymous",
        })
    }
}

impl TenantIdentity {
    pub fn scope(&self) -> TenantScope {
        match self {
            Self::Shared => TenantScope::Shared,
            Self::Header(id) => TenantScope::Tenant(identity_hash("header", id)),
            Self::Credential(token) => TenantScope::Tenant(identity_hash("credential", token)),
            Self::Anonymous => TenantScope::Anonymous,
        }
    }
}

/// Resolves the scope; `header` looks up a request header by lowercase name.
///
/// Order: `shared_scope` → the configured tenant header (if set and non-empty) → the bearer
/// token of `authorization: Bearer <token>` → an Azure-style `api-key` header → anonymous.
/// The configured header must be set (or stripped) by a trusted hop: a client that can choose
/// it can choose its scope. The hash input names its source (`header` or `credential`), so a
/// tenant id can never collide with a credential that happens to be the same string.
pub fn tenant_scope(config: &TenantConfig, header: impl Fn(&str) -> Option<String>) -> TenantScope {
    tenant_identity(config, header).scope()
}

/// The identity `tenant_scope` hashes (see there for the order).
pub fn tenant_identity(config: &TenantConfig, header: impl Fn(&str) -> Option<String>) -> TenantIdentity {
    if config.shared_scope {
        return TenantIdentity::Shared;
    }
    if let Some(id) = config.header.as_deref().and_then(|name| non_empty(header(name))) {
        return TenantIdentity::Header(id);
    }
    let bearer = header("authorization").and_then(|v| bearer_token(&v));
    if let Some(token) = bearer.or_else(|| non_empty(header("api-key"))) {
        return TenantIdentity::Credential(token);
    }
    TenantIdentity::Anonymous
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    non_empty(Some(token.to_owned()))
}

fn identity_hash(source: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"aurelis-tenant\0");
    hasher.update(source.as_bytes());
    hasher.update(b"\0");
    hasher.update(value.as_bytes());
    super::hex_prefix(&hasher.finalize(), 8)
}
