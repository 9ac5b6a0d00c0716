//! The optional API token: when the service has one, every `/v1/entries/...` request must carry
//! `authorization: Bearer <token>`, checked before the body is read. The token is kept only as
//! its SHA-256 digest and compared in constant time, as the control plane's admin API does
//! (`control-plane/src/admin`): equal-length digests, no early exit.
use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Instant;

/// A shared secret between the filter and this service. Deliberately opaque: `Debug` says
/// nothing, and the token itself is not kept.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
}

impl ApiToken {
    pub fn new(token: &str) -> ApiToken {
        ApiToken { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// Whether the request carries `authorization: Bearer <this token>` (scheme
    /// case-insensitive, RFC 7235).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(presented) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
        else {
            return false;
        };
        constant_time_eq(&Sha256::digest(presented.as_bytes()).into(), &self.digest)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Compares the two digests without an early exit, so timing says nothing about the token.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Route layer of the entry routes: refuses (401, counted as outcome `unauthorized`) before
/// the handler runs, so an unauthenticated PUT's body is never buffered.
pub async fn require_token(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &s.api_token else { return next.run(request).await };
    if token.admits(request.headers()) {
        return next.run(request).await;
    }
    let started = Instant::now();
    // HEAD is answered by the GET handler.
    let op = match *request.method() {
        Method::PUT => "put",
        Method::DELETE => "delete",
        _ => "get",
    };
    let refused = ApiError::Unauthorized;
    s.metrics.observe(op, refused.outcome(), started.elapsed());
    tracing::debug!(op, "refused: missing or wrong API token");
    refused.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert(axum::http::header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn only_the_bearer_token_is_admitted() {
        let token = ApiToken::new("t0ken");
        assert!(token.admits(&headers(Some("Bearer t0ken"))));
        assert!(token.admits(&headers(Some("bearer t0ken"))), "the scheme is case-insensitive");
        for refused in [None, Some("Bearer wrong"), Some("Bearer t0ken2"), Some("Basic t0ken"), Some("t0ken"), Some("")]
        {
            assert!(!token.admits(&headers(refused)), "{refused:?}");
        }
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    }
}
