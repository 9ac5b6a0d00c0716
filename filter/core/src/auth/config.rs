//! Client authentication settings: part of the filter's one schema (`FilterConfig::auth`), so the
//! control plane validates consumers with the same code the filter runs.
use crate::limits::Limits;
use serde::{Deserialize, Serialize};

/// Who may call, and who they are. Every decision that rests on identity (the cache scope, the
/// rate-limit identity, the allowed models) reads the identity established here, never a
/// header a client chose. With nothing configured, every request is refused (401): anonymous
/// access must be asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// API-key consumers. The filter hashes the presented key (SHA-256) and looks it up here.
    pub consumers: Vec<Consumer>,
    /// An identity established by Envoy's `jwt_authn` filter ahead of this one.
    pub jwt: Option<JwtIdentity>,
    /// Explicit anonymous access for requests without a key (and without a JWT).
    pub anonymous: Option<AnonymousAccess>,
}

/// One API client: a name, the cache scope it belongs to, what it may call, and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// 1-64 letters, digits, `_`, `-`, `.`; the rate-limit identity (`consumer:<name>`).
    pub name: String,
    /// The cache scope: consumers of one tenant share cached answers. Default: the name.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Models this consumer may call (403 otherwise); empty: every routed model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Replaces the default rate limits for this consumer (per-model overrides still apply).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// SHA-256 of each API key, 64 lowercase hex characters. Keys themselves are never stored.
    #[serde(default)]
    pub key_sha256: Vec<String>,
}

impl Consumer {
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or(&self.name)
    }
}

/// The dynamic-metadata namespace Envoy's `jwt_authn` filter writes (clients cannot set it).
pub const JWT_METADATA_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// The `payload_in_metadata` key the control plane configures on `jwt_authn`.
pub const JWT_PAYLOAD_KEY: &str = "aurelis_jwt";

/// Where `jwt_authn` also copies a verified claim for hosts that cannot read nested metadata
/// (the native filter: Envoy's dynamic-module ABI reads one level deep). `jwt_authn` removes a
/// client-sent header of that name before it verifies, and the listener strips `x-aurelis-*`.
pub fn jwt_claim_header(claim: &str) -> String {
    format!("x-aurelis-jwt-claim-{}", claim.to_ascii_lowercase())
}

/// Which claims of a verified JWT name the consumer and its tenant. A consumer declared under
/// the same name lends its allowed models and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtIdentity {
    /// The claim naming the consumer (string).
    pub consumer_claim: String,
    /// The claim naming the tenant; default: the consumer.
    pub tenant_claim: Option<String>,
}

impl Default for JwtIdentity {
    fn default() -> Self {
        JwtIdentity { consumer_claim: "sub".into(), tenant_claim: None }
    }
}

/// Requests without credentials are served. Their rate-limit identity is the client address,
/// and each address is its own cache scope unless `shared_scope` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousAccess {
    /// All anonymous clients share one cache scope (they may be served each other's answers).
    pub shared_scope: bool,
}

/// 1-64 letters, digits, `_`, `-`, `.`: consumer and tenant names, claim names.
pub fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// 64 lowercase hex characters.
pub fn sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
