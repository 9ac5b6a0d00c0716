//! The cacheability gate: decides, with a reason, whether a request may be looked up and stored,
//! and whether a response may be stored. Every refusal names a reason that is returned to the
//! client (`x-aurelis-cache-reason`) and counted.
use crate::config::{CacheConfig, CachePolicy};

/// Why a request is not served from or stored in the cache. `as_str` is the header value and
/// stat label, so the set is closed and small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BypassReason {
    Disabled,
    Method,
    Path,
    ContentType,
    CompressedBody,
    NoStore,
    EmptyBody,
    BodyTooLarge,
    InvalidUtf8,
    InvalidJson,
    TooDeep,
    NotAnObject,
    MissingModel,
    MultipleChoices,
    NonDeterministic,
    /// A query parameter outside `cache.key_query_params`: it may change the answer.
    Query,
    /// `stream` that is not a boolean: the answer's shape is unknown.
    StreamNotBoolean,
}

impl BypassReason {
    pub const ALL: [BypassReason; 17] = [
        Self::Disabled,
        Self::Method,
        Self::Path,
        Self::ContentType,
        Self::CompressedBody,
        Self::NoStore,
        Self::EmptyBody,
        Self::BodyTooLarge,
        Self::InvalidUtf8,
        Self::InvalidJson,
        Self::TooDeep,
        Self::NotAnObject,
        Self::MissingModel,
        Self::MultipleChoices,
        Self::NonDeterministic,
        Self::Query,
        Self::StreamNotBoolean,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Method => "method",
            Self::Path => "path",
            Self::ContentType => "content_type",
            Self::CompressedBody => "compressed_body",
            Self::NoStore => "no_store",
            Self::EmptyBody => "empty_body",
            Self::BodyTooLarge => "body_too_large",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidJson => "invalid_json",
            Self::TooDeep => "too_deep",
            Self::NotAnObject => "not_an_object",
            Self::MissingModel => "missing_model",
            Self::MultipleChoices => "n_greater_than_1",
            Self::NonDeterministic => "non_deterministic",
            Self::Query => "query",
            Self::StreamNotBoolean => "stream_not_boolean",
        }
    }
}

/// What the request's headers tell the cache to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestDirectives {
    /// `Cache-Control: no-cache`: skip the lookup but store the fresh answer.
    pub skip_lookup: bool,
}

/// The request headers the gate looks at (lowercased names, raw values).
#[derive(Debug, Clone, Default)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub content_length: Option<u64>,
}

/// Strips the query string: the cache applies to exact paths.
pub fn path_without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The query string's `name=value` pairs when every name is in `allowed`, sorted (so their
/// order does not matter); `Err` when another parameter is present.
pub fn keyed_query<'a>(path: &'a str, allowed: &[String]) -> Result<Vec<&'a str>, BypassReason> {
    let Some((_, query)) = path.split_once('?') else { return Ok(Vec::new()) };
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if !allowed.iter().any(|a| a == name) {
            return Err(BypassReason::Query);
        }
        pairs.push(pair);
    }
    pairs.sort_unstable();
    Ok(pairs)
}

/// Embeddings are a function of their input: cacheable without `temperature` or `seed`.
pub fn is_deterministic_endpoint(path: &str) -> bool {
    path_without_query(path).ends_with("/embeddings")
}

pub fn is_json_content_type(value: &str) -> bool {
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
}

fn cache_control_has(value: Option<&str>, directive: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|d| d.trim().eq_ignore_ascii_case(directive)))
}

/// First gate, on request headers, before the body is read.
pub fn check_request_head(head: &RequestHead<'_>, config: &CacheConfig) -> Result<RequestDirectives, BypassReason> {
    if !config.enabled {
        return Err(BypassReason::Disabled);
    }
    if !head.method.eq_ignore_ascii_case("POST") {
        return Err(BypassReason::Method);
    }
    if !config.paths.iter().any(|p| p == path_without_query(head.path)) {
        return Err(BypassReason::Path);
    }
    keyed_query(head.path, &config.key_query_params)?;
    if !head.content_type.is_some_and(is_json_content_type) {
        return Err(BypassReason::ContentType);
    }
    if head.content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        return Err(BypassReason::CompressedBody);
    }
    if cache_control_has(head.cache_control, "no-store") {
        return Err(BypassReason::NoStore);
    }
    match head.content_length {
        Some(0) => return Err(BypassReason::EmptyBody),
        Some(n) if n > config.max_body_bytes => return Err(BypassReason::BodyTooLarge),
        _ => {}
    }
    Ok(RequestDirectives { skip_lookup: cache_control_has(head.cache_control, "no-cache") })
}

/// Second gate, on the facts extracted from the parsed body; `deterministic_endpoint`: the
/// path's answers do not sample (embeddings).
pub fn check_request_facts(
    facts: &crate::key::RequestFacts,
    config: &CacheConfig,
    deterministic_endpoint: bool,
) -> Result<(), BypassReason> {
    if facts.stream_not_boolean {
        return Err(BypassReason::StreamNotBoolean);
    }
    if facts.n.is_some_and(|n| n > 1) {
        return Err(BypassReason::MultipleChoices);
    }
    match config.policy {
        _ if deterministic_endpoint => Ok(()),
        CachePolicy::Always => Ok(()),
        CachePolicy::Deterministic => {
            if facts.has_seed || facts.temperature == Some(0.0) {
                Ok(())
            } else {
                Err(BypassReason::NonDeterministic)
            }
        }
    }
}

/// Why a response is served but not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStoreReason {
    Status,
    ContentType,
    ContentEncoding,
    CacheControl,
    TooLarge,
    Incomplete,
    Unparseable,
    ErrorObject,
    FinishReason,
}

impl NoStoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::ContentType => "content_type",
            Self::ContentEncoding => "content_encoding",
            Self::CacheControl => "cache_control",
            Self::TooLarge => "too_large",
            Self::Incomplete => "incomplete",
            Self::Unparseable => "unparseable",
            Self::ErrorObject => "error_object",
            Self::FinishReason => "finish_reason",
        }
    }
}

/// How the upstream answered: a JSON document or an SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Sse,
}

/// The response headers the gate looks at.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub cache_control: Option<&'a str>,
    pub content_length: Option<u64>,
}

/// Gate on response headers: may this response be kept as it streams by?
pub fn check_response_head(head: &ResponseHead<'_>, config: &CacheConfig) -> Result<BodyFormat, NoStoreReason> {
    if head.status != 200 {
        return Err(NoStoreReason::Status);
    }
    if head.content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        return Err(NoStoreReason::ContentEncoding);
    }
    if cache_control_has(head.cache_control, "no-store") {
        return Err(NoStoreReason::CacheControl);
    }
    if head.content_length.is_some_and(|n| n > config.max_entry_bytes) {
        return Err(NoStoreReason::TooLarge);
    }
    let mime = head.content_type.and_then(|v| v.split(';').next()).map(str::trim).unwrap_or("");
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(BodyFormat::Json)
    } else if mime.eq_ignore_ascii_case("text/event-stream") {
        Ok(BodyFormat::Sse)
    } else {
        Err(NoStoreReason::ContentType)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>() -> RequestHead<'a> {
        RequestHead {
            method: "POST",
            path: "/v1/chat/completions",
            content_type: Some("application/json; charset=utf-8"),
            content_length: Some(100),
            ..Default::default()
        }
    }

    #[test]
    fn plain_json_post_passes() {
        assert_eq!(check_request_head(&head(), &CacheConfig::default()), Ok(RequestDirectives::default()));
    }

    #[test]
    fn each_header_refusal_has_its_reason() {
        let c = CacheConfig::default();
        assert_eq!(check_request_head(&RequestHead { method: "GET", ..head() }, &c), Err(BypassReason::Method));
        assert_eq!(check_request_head(&RequestHead { path: "/v1/models", ..head() }, &c), Err(BypassReason::Path));
        assert_eq!(
            check_request_head(&RequestHead { content_type: Some("text/plain"), ..head() }, &c),
            Err(BypassReason::ContentType)
        );
        assert_eq!(
            check_request_head(&RequestHead { content_type: None, ..head() }, &c),
            Err(BypassReason::ContentType)
        );
        assert_eq!(
            check_request_head(&RequestHead { content_encoding: Some("gzip"), ..head() }, &c),
            Err(BypassReason::CompressedBody)
        );
        assert_eq!(
            check_request_head(&RequestHead { cache_control: Some("max-age=0, no-store"), ..head() }, &c),
            Err(BypassReason::NoStore)
        );
        assert_eq!(
            check_request_head(&RequestHead { content_length: Some(0), ..head() }, &c),
            Err(BypassReason::EmptyBody)
        );
        assert_eq!(
            check_request_head(&RequestHead { content_length: Some(10 << 20), ..head() }, &c),
            Err(BypassReason::BodyTooLarge)
        );
    }

    #[test]
    fn only_allowlisted_query_parameters_are_cached() {
        let c = CacheConfig::default();
        let with = |path| check_request_head(&RequestHead { path, ..head() }, &c);
        assert!(with("/v1/chat/completions?api-version=2024-10-21").is_ok());
        assert_eq!(with("/v1/chat/completions?api-version=1&debug=1"), Err(BypassReason::Query));
        let allowed = vec!["a".to_string(), "b".to_string()];
        assert_eq!(keyed_query("/p?b=2&a=1", &allowed), Ok(vec!["a=1", "b=2"]), "order does not matter");
        assert_eq!(keyed_query("/p", &allowed), Ok(vec![]));
    }

    #[test]
    fn no_cache_skips_lookup_only() {
        let d = check_request_head(&RequestHead { cache_control: Some("no-cache"), ..head() }, &CacheConfig::default());
        assert_eq!(d, Ok(RequestDirectives { skip_lookup: true }));
    }

    #[test]
    fn response_gate() {
        let c = CacheConfig::default();
        let ok = ResponseHead { status: 200, content_type: Some("application/json"), ..Default::default() };
        assert_eq!(check_response_head(&ok, &c), Ok(BodyFormat::Json));
        let sse = ResponseHead { content_type: Some("text/event-stream; charset=utf-8"), ..ok.clone() };
        assert_eq!(check_response_head(&sse, &c), Ok(BodyFormat::Sse));
        assert_eq!(check_response_head(&ResponseHead { status: 429, ..ok.clone() }, &c), Err(NoStoreReason::Status));
        assert_eq!(
            check_response_head(&ResponseHead { cache_control: Some("no-store"), ..ok.clone() }, &c),
            Err(NoStoreReason::CacheControl)
        );
        assert_eq!(
            check_response_head(&ResponseHead { content_encoding: Some("br"), ..ok }, &c),
            Err(NoStoreReason::ContentEncoding)
        );
    }
}
