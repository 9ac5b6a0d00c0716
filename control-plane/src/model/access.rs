//! Who may reach the gateway and what it answers: the client API surface (`api`), Envoy's JWT
//! verification (`jwt`), and the rule that a gateway holding provider credentials never runs
//! as an open relay. The filter's own `auth` section (consumers, claims, anonymous access) is
//! part of `filter` and validated by the filter's code; this file checks how it fits the rest.
use super::validate::ModelError;
use super::Model;
use aurelis_core::config::FilterConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The OpenAI-compatible paths clients may call. Anything else is answered 404 by Envoy itself,
/// so the gateway is not a generic proxy to the providers' other endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// Paths routed to a model (exact match, query string aside). Each starts with `/v1/`,
    /// the prefix a provider's base path replaces.
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// `GET /v1/models` is answered by Envoy with the configured models (OpenAI's list shape);
    /// `false` answers it 404 like any unrouted path.
    #[serde(default = "yes")]
    pub list_models: bool,
    /// The model whose route takes requests naming no configured model. Unset (the default),
    /// such requests get 404 `model_not_found`.
    #[serde(default)]
    pub fallback_model: Option<String>,
}

impl Default for ApiSpec {
    fn default() -> Self {
        ApiSpec { paths: default_paths(), list_models: true, fallback_model: None }
    }
}

fn default_paths() -> Vec<String> {
    ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"].map(String::from).to_vec()
}

fn yes() -> bool {
    true
}

/// The path `list_models` answers.
pub const MODELS_PATH: &str = "/v1/models";

/// JWT verification by Envoy's `jwt_authn` filter, ahead of the Aurelis filter. A verified
/// token's claims land in dynamic metadata, where `filter.auth.jwt` names the consumer and
/// tenant claims. Requests without a token (or with a token that fails) pass on to the Aurelis
/// filter, which then needs an API key or explicit anonymous access.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSpec {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Accepted `aud` values; empty: the audience is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The JWKS document (JSON) inline. Public keys only; exactly one of `jwks`, `jwks_file`.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Or the path of a JWKS file on each Envoy host (read by Envoy, not the control plane).
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u32,
}

fn default_clock_skew() -> u32 {
    60
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::Invalid { field: field.into(), message: message.into() }
}

/// `/v1/...` of letters, digits and `/_-.`: written into an RE2 pattern, so nothing else.
fn check_path(field: &str, path: &str) -> Result<(), ModelError> {
    let plain = path.len() > 4
        && path.starts_with("/v1/")
        && !path.ends_with('/')
        && !path.contains("//")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(invalid(field, format!("`{path}` must start with /v1/ and hold only letters, digits, `/_-.`")))
    }
}

impl Model {
    /// The `api` and `jwt` sections on their own.
    pub(super) fn validate_access(&self) -> Result<(), ModelError> {
        if self.api.paths.is_empty() {
            return Err(invalid("api.paths", "at least one path is needed"));
        }
        let mut seen = BTreeSet::new();
        for (i, path) in self.api.paths.iter().enumerate() {
            check_path(&format!("api.paths[{i}]"), path)?;
            if path == MODELS_PATH {
                return Err(invalid(format!("api.paths[{i}]"), "`/v1/models` is answered by `api.list_models`"));
            }
            if !seen.insert(path) {
                return Err(invalid(format!("api.paths[{i}]"), format!("`{path}` is listed twice")));
            }
        }
        if let Some(name) = &self.api.fallback_model {
            if !self.models.iter().any(|m| &m.name == name) {
                return Err(invalid("api.fallback_model", format!("`{name}` is not in `models`")));
            }
        }
        if let Some(jwt) = &self.jwt {
            validate_jwt(jwt)?;
        }
        Ok(())
    }

    /// How the filter's `auth` fits the model: JWT claims need Envoy's verification and the
    /// other way round, and provider credentials need authenticated clients.
    pub(super) fn check_auth(&self, filter: &FilterConfig) -> Result<(), ModelError> {
        match (&self.jwt, &filter.auth.jwt) {
            (Some(_), None) => {
                return Err(invalid(
                    "filter.auth.jwt",
                    "is needed with a `jwt` section: it names the claims the filter reads from verified tokens",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "jwt",
                    "is needed with `filter.auth.jwt`: without it no token is ever verified (issuer, jwks)",
                ))
            }
            _ => {}
        }
        // A gateway that injects a provider credential and lets anyone in would spend that
        // credential for the whole network. Anonymous access does not count: it is exactly that.
        let credentialed = self.providers.iter().find(|p| !p.headers.is_empty());
        if let Some(provider) = credentialed {
            if !filter.auth.authenticates_clients() {
                return Err(invalid(
                    "filter.auth",
                    format!(
                        "provider `{}` injects a credential ({}), so clients must authenticate: declare \
                         `filter.auth.consumers` with `key_sha256`, or `jwt` with `filter.auth.jwt` \
                         (anonymous access would relay the credential to anyone who can connect)",
                        provider.name,
                        provider.headers.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn validate_jwt(jwt: &JwtSpec) -> Result<(), ModelError> {
    if jwt.issuer.trim().is_empty() {
        return Err(invalid("jwt.issuer", "must not be empty"));
    }
    if let Some(i) = jwt.audiences.iter().position(|a| a.trim().is_empty()) {
        return Err(invalid(format!("jwt.audiences[{i}]"), "must not be empty"));
    }
    match (&jwt.jwks, &jwt.jwks_file) {
        (Some(text), None) => {
            let keys = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|doc| doc.get("keys").and_then(|k| k.as_array()).map(Vec::len));
            match keys {
                Some(n) if n > 0 => {}
                _ => return Err(invalid("jwt.jwks", "must be a JWKS document: JSON with a non-empty `keys` array")),
            }
            if text.contains("\"d\"") {
                // A private JWK has `d`; the gateway needs public keys only.
                return Err(invalid("jwt.jwks", "holds a private key (`d`); give the public keys only"));
            }
        }
        (None, Some(path)) if path.starts_with('/') => {}
        (None, Some(path)) => {
            return Err(invalid("jwt.jwks_file", format!("`{path}` must be an absolute path on the Envoy hosts")))
        }
        _ => return Err(invalid("jwt.jwks", "give exactly one of `jwks` (inline JSON) or `jwks_file`")),
    }
    if jwt.clock_skew_seconds > 600 {
        return Err(invalid("jwt.clock_skew_seconds", format!("{} is above 600", jwt.clock_skew_seconds)));
    }
    Ok(())
}
