//! Client authentication: who a request is, established before any cache or upstream work.
//!
//! A request is a **consumer** when it presents a declared API key (in `authorization: Bearer`,
//! `api-key` or `x-api-key`: one rule for every form, and two different keys in one request are
//! refused), a **JWT subject** when Envoy's `jwt_authn` filter verified a token and wrote its
//! claims to dynamic metadata (which clients cannot set), or **anonymous** when the
//! configuration allows it explicitly. Everything else is answered 401 with an OpenAI-style
//! body. The identity then decides the cache scope, the rate-limit identity and the allowed
//! models; no client header can change any of them.
mod config;

pub use config::{
    jwt_claim_header, plain_name, sha256_hex, AnonymousAccess, AuthConfig, Consumer, JwtIdentity,
    JWT_METADATA_NAMESPACE, JWT_PAYLOAD_KEY,
};

use crate::config::ConfigError;
use crate::http::Headers;
use crate::key::TenantIdentity;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Why a request was refused before any work: the 401's `code` and message (never the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No key, no verified JWT, and anonymous access is off.
    Missing,
    /// A key that no consumer holds (or one that was revoked).
    UnknownKey,
    /// Two credential headers with different values.
    Ambiguous,
    /// `authorization` with a scheme other than Bearer (HTTP Basic, ...).
    UnsupportedScheme,
}

impl AuthError {
    /// The stat label and the error body's `code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "missing_api_key",
            Self::UnknownKey => "invalid_api_key",
            Self::Ambiguous => "ambiguous_api_key",
            Self::UnsupportedScheme => "unsupported_authorization_scheme",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>`, `api-key` or `x-api-key`."
            }
            Self::UnknownKey => "Incorrect API key provided.",
            Self::Ambiguous => "The request carries more than one different API key.",
            Self::UnsupportedScheme => "Only `Authorization: Bearer <key>` is accepted.",
        }
    }

    pub const ALL: [AuthError; 4] = [Self::Missing, Self::UnknownKey, Self::Ambiguous, Self::UnsupportedScheme];
}

/// The verified identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The rate-limit identity and override label: the consumer's name (API key or JWT), or the
    /// client address for anonymous access.
    pub label: String,
    /// What the cache scope is derived from.
    pub tenant: TenantIdentity,
    /// The declared consumer (for allowed models and limits), if any.
    pub consumer: Option<usize>,
    pub kind: IdentityKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    ApiKey,
    Jwt,
    Anonymous,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Anonymous => "anonymous",
        }
    }
}

/// What the host knows of a request beyond its headers. Each is a host call, made only when
/// the decision needs it: claims only when JWT identities are configured, the address only for
/// a request without a key under anonymous access.
pub trait HostFacts {
    /// A string claim `jwt_authn` verified.
    fn jwt_claim(&mut self, claim: &str) -> Option<String>;
    /// The downstream address without its port.
    fn client_address(&mut self) -> Option<String>;
}

/// What a request presents: its headers, and the host for the facts read on demand.
pub struct Presented<'a> {
    pub headers: &'a Headers,
    pub facts: &'a mut dyn HostFacts,
}

/// The consumers of one configuration, indexed by key digest. Built once per configuration;
/// a presented key is hashed once per worker and then remembered (bounded).
pub struct Authenticator {
    config: AuthConfig,
    by_digest: HashMap<[u8; 32], usize>,
    by_name: HashMap<String, usize>,
    memo: HashMap<String, Option<usize>>,
}

const MEMO_ENTRIES: usize = 1024;
/// Longer keys are hashed every time rather than remembered, so the memo stays bounded.
const MEMO_KEY_BYTES: usize = 256;

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Authenticator {
        let mut by_digest = HashMap::new();
        let mut by_name = HashMap::new();
        for (index, consumer) in config.consumers.iter().enumerate() {
            by_name.insert(consumer.name.clone(), index);
            for hex in &consumer.key_sha256 {
                if let Some(digest) = decode_digest(hex) {
                    by_digest.insert(digest, index);
                }
            }
        }
        Authenticator { config: config.clone(), by_digest, by_name, memo: HashMap::new() }
    }

    pub fn consumer(&self, index: usize) -> Option<&Consumer> {
        self.config.consumers.get(index)
    }

    /// The declared consumer of that name (a refresh grant names the consumer it acts as).
    pub fn consumer_named(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Establishes who the request is, or why it is refused.
    pub fn authenticate(&mut self, presented: Presented<'_>) -> Result<Identity, AuthError> {
        if let Some(jwt) = &self.config.jwt {
            if let Some(subject) = presented.facts.jwt_claim(&jwt.consumer_claim).filter(|s| !s.is_empty()) {
                let tenant = match &jwt.tenant_claim {
                    Some(claim) => presented.facts.jwt_claim(claim).filter(|t| !t.is_empty()),
                    None => None,
                };
                let consumer = self.by_name.get(&subject).copied();
                let tenant = tenant
                    .or_else(|| consumer.and_then(|i| self.consumer(i)).map(|c| c.tenant().to_string()))
                    .unwrap_or_else(|| subject.clone());
                return Ok(Identity {
                    label: subject,
                    tenant: TenantIdentity::Tenant(tenant),
                    consumer,
                    kind: IdentityKind::Jwt,
                });
            }
        }
        match presented_key(presented.headers)? {
            Some(key) => {
                let index = self.lookup(key).ok_or(AuthError::UnknownKey)?;
                let consumer = self.consumer(index).ok_or(AuthError::UnknownKey)?;
                Ok(Identity {
                    label: consumer.name.clone(),
                    tenant: TenantIdentity::Tenant(consumer.tenant().to_string()),
                    consumer: Some(index),
                    kind: IdentityKind::ApiKey,
                })
            }
            None => {
                let access = self.config.anonymous.ok_or(AuthError::Missing)?;
                let address = presented.facts.client_address().unwrap_or_else(|| "unknown".into());
                let tenant = if access.shared_scope {
                    TenantIdentity::Anonymous
                } else {
                    TenantIdentity::Client(address.clone())
                };
                Ok(Identity { label: address, tenant, consumer: None, kind: IdentityKind::Anonymous })
            }
        }
    }

    /// Whether the identity may call `model` (403 otherwise).
    pub fn allows(&self, identity: &Identity, model: &str) -> bool {
        let Some(consumer) = identity.consumer.and_then(|i| self.consumer(i)) else { return true };
        consumer.models.is_empty() || consumer.models.iter().any(|m| m == model)
    }

    fn lookup(&mut self, key: &str) -> Option<usize> {
        if key.len() > MEMO_KEY_BYTES {
            return self.by_digest.get(&digest(key)).copied();
        }
        if let Some(found) = self.memo.get(key) {
            return *found;
        }
        let found = self.by_digest.get(&digest(key)).copied();
        if self.memo.len() >= MEMO_ENTRIES {
            self.memo.clear();
        }
        self.memo.insert(key.to_string(), found);
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The SHA-256 hex of an API key, as consumers declare it (`key_sha256`).
pub fn key_sha256(key: &str) -> String {
    digest(key).iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    if !sha256_hex(hex) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The headers an API key may come in (one rule for all three). The control plane removes them
/// before the provider: a client's key is for this gateway only.
pub const KEY_HEADERS: [&str; 3] = ["authorization", "api-key", "x-api-key"];

/// The API key a request presents, in whichever of the three headers; `None` when there is
/// none. Different values in two headers are refused, so no header outranks another.
pub fn presented_key(headers: &Headers) -> Result<Option<&str>, AuthError> {
    let mut found: Option<&str> = None;
    for (name, value) in headers.iter() {
        if !KEY_HEADERS.contains(&name) {
            continue;
        }
        let key = match name {
            "authorization" => {
                let value = value.trim();
                let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AuthError::UnsupportedScheme);
                }
                token.trim()
            }
            _ => value.trim(),
        };
        if key.is_empty() {
            continue;
        }
        match found {
            Some(previous) if previous != key => return Err(AuthError::Ambiguous),
            _ => found = Some(key),
        }
    }
    Ok(found)
}

fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { field, value: value.to_string(), reason }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut digests = std::collections::HashSet::new();
        for consumer in &self.consumers {
            if !plain_name(&consumer.name) {
                return Err(invalid(
                    "auth.consumers.name",
                    &consumer.name,
                    "must be 1 to 64 letters, digits, '_', '-', '.'",
                ));
            }
            if !names.insert(consumer.name.as_str()) {
                return Err(invalid("auth.consumers.name", &consumer.name, "names must be unique"));
            }
            if consumer.tenant.as_deref().is_some_and(|t| !plain_name(t)) {
                return Err(invalid(
                    "auth.consumers.tenant",
                    consumer.tenant.as_deref().unwrap_or_default(),
                    "must be 1 to 64 letters, digits, '_', '-', '.'",
                ));
            }
            for hex in &consumer.key_sha256 {
                if !sha256_hex(hex) {
                    // Never echo what was written: it may be a key pasted by mistake.
                    return Err(invalid(
                        "auth.consumers.key_sha256",
                        format!("an entry of `{}`", consumer.name),
                        "must be the SHA-256 of the key as 64 lowercase hex characters, never the key itself",
                    ));
                }
                if !digests.insert(hex.as_str()) {
                    return Err(invalid("auth.consumers.key_sha256", hex, "a key belongs to one consumer only"));
                }
            }
            if let Some(limits) = &consumer.limits {
                crate::limits::validate_limits(limits)?;
            }
        }
        if let Some(jwt) = &self.jwt {
            if !plain_name(&jwt.consumer_claim) {
                return Err(invalid("auth.jwt.consumer_claim", &jwt.consumer_claim, "must be a plain claim name"));
            }
            if let Some(claim) = jwt.tenant_claim.as_deref().filter(|c| !plain_name(c)) {
                return Err(invalid("auth.jwt.tenant_claim", claim, "must be a plain claim name"));
            }
        }
        Ok(())
    }

    /// Whether any client authentication is configured (consumers with keys, or JWT).
    pub fn authenticates_clients(&self) -> bool {
        self.jwt.is_some() || self.consumers.iter().any(|c| !c.key_sha256.is_empty())
    }
}

#[cfg(test)]
mod tests;
