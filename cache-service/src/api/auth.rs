//! Who may use the entry routes, and in which namespace. With tokens (the default: the service
//! refuses to start without one unless explicitly told otherwise), every `/v1/entries/...`
//! request must carry `authorization: Bearer <token>`, checked before the body is read, and the
//! token decides the namespace: a client cannot pick another fleet's entries with a header.
//! Tokens are kept only as SHA-256 digests and compared in constant time, as the control
//! plane's admin API does (`control-plane/src/admin`): equal-length digests, no early exit.
use super::error::ApiError;
use super::headers;
use super::AppState;
use crate::store::layout::{validate_name, InvalidInput};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
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
        bearer_digest(headers).is_some_and(|presented| constant_time_eq(&presented, &self.digest))
    }
}

/// The SHA-256 of the request's bearer token, if it has one.
fn bearer_digest(headers: &HeaderMap) -> Option<[u8; 32]> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())?;
    Some(Sha256::digest(presented.as_bytes()).into())
}

/// Who may use the entry routes.
#[derive(Clone, Debug)]
pub enum Access {
    /// No token (`--allow-unauthenticated`, loopback only): the namespace comes from the
    /// `x-aurelis-namespace` header, as there is no identity to bind it to.
    Open,
    /// Every entry request needs a token of the table, which decides its namespace.
    Tokens(Arc<TokenTable>),
}

impl Access {
    /// The namespaces entries can be in, for the refresher: the tokens' own, or with open
    /// access the default one (open access is for local development).
    pub fn namespaces(&self) -> Vec<String> {
        match self {
            Access::Open => vec![super::headers::DEFAULT_NAMESPACE.to_string()],
            Access::Tokens(table) => table.namespaces().into_iter().map(str::to_string).collect(),
        }
    }

    /// One token bound to one namespace (the `AURELIS_CACHE_API_TOKEN` case).
    pub fn single(namespace: &str, token: &str) -> Result<Access, BindError> {
        let mut table = TokenTable::default();
        table.bind_token(namespace, token)?;
        Ok(Access::Tokens(Arc::new(table)))
    }
}

/// Tokens (as SHA-256 digests), each bound to one namespace; several may share a namespace
/// (rotation: old and new both valid for a while).
#[derive(Default)]
pub struct TokenTable {
    bindings: Vec<([u8; 32], String)>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenTable({} tokens, namespaces {:?})", self.bindings.len(), self.namespaces())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Namespace(#[from] InvalidInput),
    /// One token, two namespaces: which one it may use would be ambiguous.
    #[error("the same token is bound to namespaces `{0}` and `{1}`")]
    Duplicate(String, String),
}

impl TokenTable {
    pub fn bind_token(&mut self, namespace: &str, token: &str) -> Result<(), BindError> {
        self.bind_digest(namespace, Sha256::digest(token.as_bytes()).into())
    }

    pub fn bind_digest(&mut self, namespace: &str, digest: [u8; 32]) -> Result<(), BindError> {
        validate_name("namespace", namespace)?;
        if let Some((_, bound)) = self.bindings.iter().find(|(d, _)| *d == digest) {
            return Err(BindError::Duplicate(bound.clone(), namespace.to_string()));
        }
        self.bindings.push((digest, namespace.to_string()));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The namespaces tokens are bound to, sorted, once each (for the start-up line).
    pub fn namespaces(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.bindings.iter().map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The namespace the request's bearer token is bound to. Every binding is compared, with
    /// no early exit, so timing says nothing about which tokens exist.
    pub fn namespace_of(&self, headers: &HeaderMap) -> Option<&str> {
        let presented = bearer_digest(headers)?;
        let mut found = None;
        for (digest, namespace) in &self.bindings {
            if constant_time_eq(&presented, digest) {
                found = Some(namespace.as_str());
            }
        }
        found
    }
}

/// The namespace an entry request works in, set by `authorize` before the handler runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace(pub String);

/// The namespace of a request under `access`: the token's own. A request naming another one in
/// `x-aurelis-namespace` is refused (403), never served from or written to either.
pub fn namespace_for(access: &Access, headers: &HeaderMap) -> Result<String, ApiError> {
    match access {
        Access::Open => Ok(headers::namespace(headers)?.to_string()),
        Access::Tokens(table) => {
            let bound = table.namespace_of(headers).ok_or(ApiError::Unauthorized)?;
            match headers.get(headers::NAMESPACE) {
                Some(asked) if asked.as_bytes() != bound.as_bytes() => Err(ApiError::Forbidden),
                _ => Ok(bound.to_string()),
            }
        }
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

/// Route layer of the entry routes: decides the namespace, or refuses (401 `unauthorized`, 403
/// `forbidden`, counted by outcome) before the handler runs, so a refused PUT's body is never
/// buffered.
pub async fn authorize(State(s): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let refused = match namespace_for(&s.access, request.headers()) {
        Ok(namespace) => {
            request.extensions_mut().insert(Namespace(namespace));
            return next.run(request).await;
        }
        Err(refused) => refused,
    };
    // HEAD is answered by the GET handler.
    let op = match *request.method() {
        Method::PUT => "put",
        Method::DELETE => "delete",
        Method::POST if request.uri().path() == "/v1/hits" => "hits",
        Method::POST => "purge",
        _ if request.uri().path() == "/v1/hot" => "hot",
        _ => "get",
    };
    s.metrics.observe(op, refused.outcome(), started.elapsed());
    tracing::debug!(op, outcome = refused.outcome(), "refused");
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

    fn with_namespace(authorization: Option<&str>, namespace: Option<&str>) -> HeaderMap {
        let mut h = headers(authorization);
        if let Some(n) = namespace {
            h.insert(headers::NAMESPACE, HeaderValue::from_str(n).unwrap());
        }
        h
    }

    #[test]
    fn the_token_decides_the_namespace() {
        let mut table = TokenTable::default();
        table.bind_token("fleet-a", "token-a").unwrap();
        table.bind_token("fleet-a", "token-a2").unwrap();
        table.bind_token("fleet-b", "token-b").unwrap();
        let access = Access::Tokens(Arc::new(table));
        let ns = |auth, asked| namespace_for(&access, &with_namespace(auth, asked)).map_err(|e| e.outcome());
        assert_eq!(ns(Some("Bearer token-a"), None), Ok("fleet-a".into()));
        assert_eq!(ns(Some("Bearer token-a2"), Some("fleet-a")), Ok("fleet-a".into()));
        assert_eq!(ns(Some("Bearer token-b"), None), Ok("fleet-b".into()));
        // Another fleet's namespace, asked for with a valid token: refused, not served.
        assert_eq!(ns(Some("Bearer token-a"), Some("fleet-b")), Err("forbidden"));
        assert_eq!(ns(Some("Bearer token-b"), Some("aurelis")), Err("forbidden"));
        // No token, or an unknown one: 401 before anything else.
        assert_eq!(ns(None, Some("fleet-a")), Err("unauthorized"));
        assert_eq!(ns(Some("Bearer token-c"), None), Err("unauthorized"));
        // Open (unauthenticated, loopback only): the header, or the default.
        assert_eq!(namespace_for(&Access::Open, &with_namespace(None, Some("x"))).unwrap(), "x");
        assert_eq!(namespace_for(&Access::Open, &HeaderMap::new()).unwrap(), headers::DEFAULT_NAMESPACE);
    }

    #[test]
    fn bindings_are_checked() {
        let mut table = TokenTable::default();
        table.bind_token("a", "t").unwrap();
        assert_eq!(table.bind_token("b", "t"), Err(BindError::Duplicate("a".into(), "b".into())));
        assert!(matches!(table.bind_token("bad ns", "u"), Err(BindError::Namespace(_))));
        assert_eq!((table.len(), table.namespaces()), (1, vec!["a"]));
        assert_eq!(format!("{table:?}"), r#"TokenTable(1 tokens, namespaces ["a"])"#, "no digest shown");
    }
}
