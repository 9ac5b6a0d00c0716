//! What an L2 lookup's answer means. The glue makes the call through Envoy; deciding hit, miss
//! or failure is plain logic, tested here. Every failure means "go upstream" (fail open); the
//! kinds are kept apart only for the stats.
use super::Entry;
use crate::config::L2Config;
use crate::http::Callout;
use crate::key::CacheKey;

/// Stores are fire-and-forget from the worker; give them longer than lookups.
const STORE_TIMEOUT_MS: u64 = 1000;

/// An answer to store in L2, queued by a request and sent by its worker (which outlives the
/// request: a call made from a finished request would be cancelled with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStore {
    pub key: String,
    pub value: Vec<u8>,
    pub model: Option<String>,
    pub tenant: Option<String>,
}

fn common_headers(config: &L2Config, authorization: Option<&str>, method: &str, key: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), format!("/v1/entries/{key}")),
        (":authority".to_string(), config.authority.clone()),
        ("x-aurelis-namespace".to_string(), config.namespace.clone()),
    ];
    if let Some(value) = authorization {
        headers.push(("authorization".to_string(), value.to_string()));
    }
    headers
}

/// The lookup of `key`; its answer is classified by `classify`.
pub fn lookup_callout(config: &L2Config, authorization: Option<&str>, key: &CacheKey) -> Callout {
    Callout {
        cluster: config.cluster.clone(),
        headers: common_headers(config, authorization, "GET", &key.text),
        body: None,
        timeout_ms: config.timeout_ms,
    }
}

/// The store of an answer, tagged by model and tenant so an operator can purge by either.
pub fn store_callout(config: &L2Config, authorization: Option<&str>, store: PendingStore) -> Callout {
    let mut headers = common_headers(config, authorization, "PUT", &store.key);
    headers.extend([
        ("content-type".to_string(), "application/octet-stream".to_string()),
        ("x-aurelis-ttl-seconds".to_string(), config.ttl_seconds.to_string()),
        ("x-aurelis-compress-min-bytes".to_string(), config.compress_min_bytes.to_string()),
        ("x-aurelis-schema".to_string(), "v1".to_string()),
    ]);
    // Values the service would refuse are left out.
    let tag_ok = |v: &&String| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    if let Some(model) = store.model.as_ref().filter(tag_ok) {
        headers.push(("x-aurelis-model".to_string(), model.clone()));
    }
    if let Some(tenant) = store.tenant.as_ref().filter(tag_ok) {
        headers.push(("x-aurelis-tenant".to_string(), tenant.clone()));
    }
    Callout { cluster: config.cluster.clone(), headers, body: Some(store.value), timeout_ms: STORE_TIMEOUT_MS }
}

/// The Envoy environment variable holding the L2 API token (the cache service's
/// `AURELIS_CACHE_API_TOKEN`). Never part of the filter's JSON configuration, which travels over
/// xDS and shows in `/config_dump`: Envoy hands its own variable to the Wasm VM
/// (`vm_config.environment_variables.host_env_keys`), and the filter reads it there.
pub const TOKEN_ENV: &str = "AURELIS_L2_TOKEN";

/// The token cannot travel in a header (not printable ASCII, or has spaces). Holds nothing of
/// the value, so it can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

/// The `authorization` value for L2 calls from the token's raw value: `None` when unset or
/// empty (no header; an open service), `Bearer <token>` otherwise. Same rule as the service:
/// printable ASCII without spaces.
pub fn authorization(token: Option<&str>) -> Result<Option<String>, InvalidToken> {
    match token {
        None | Some("") => Ok(None),
        Some(t) if t.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(format!("Bearer {t}"))),
        Some(_) => Err(InvalidToken),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum L2Answer {
    Hit(Entry),
    Miss,
    /// Not a usable answer: a 5xx (dead Redis, ejected service), a corrupt value, or an
    /// entry stored under another key.
    Error,
    /// No answer within the lookup timeout.
    Timeout,
}

impl L2Answer {
    /// The `result` label of `aurelis_l2_lookups_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            L2Answer::Hit(_) => "hit",
            L2Answer::Miss => "miss",
            L2Answer::Error => "error",
            L2Answer::Timeout => "timeout",
        }
    }
}

/// `status`: the answer's `:status`, `None` when the call failed without one (reset, timeout);
/// `body`: read only for a 200. `elapsed_ms` since the call started tells a timeout apart.
pub fn classify(status: Option<u16>, body: Option<&[u8]>, key: &str, elapsed_ms: u64, timeout_ms: u64) -> L2Answer {
    match status {
        Some(200) => match body.and_then(Entry::decode) {
            Some(entry) if entry.key == key => L2Answer::Hit(entry),
            _ => L2Answer::Error,
        },
        Some(404) => L2Answer::Miss,
        // Envoy answers its own 504 when the call times out.
        Some(504) if elapsed_ms >= timeout_ms => L2Answer::Timeout,
        Some(_) => L2Answer::Error,
        None if elapsed_ms >= timeout_ms => L2Answer::Timeout,
        None => L2Answer::Error,
    }
}

/// Where L1's TTL should count from for an entry promoted from L2, so that it leaves L1 at the
/// earlier of "L1 TTL from now" and its end of life in L2 ("L2 TTL from when it was first
/// stored"). Without this, every promotion would add a fresh L1 TTL to an answer that is
/// about to expire in L2, and answers could be served past the TTL they were stored under.
pub fn promotion_fresh_since(now_ms: u64, first_stored_ms: u64, l1_ttl_ms: u64, l2_ttl_ms: u64) -> u64 {
    let l2_expiry = first_stored_ms.saturating_add(l2_ttl_ms);
    let expiry = now_ms.saturating_add(l1_ttl_ms).min(l2_expiry);
    expiry.saturating_sub(l1_ttl_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::BodyFormat;

    fn entry(key: &str) -> Entry {
        Entry {
            key: key.into(),
            stored_at_ms: 1,
            status: 200,
            content_type: "application/json".into(),
            format: BodyFormat::Json,
            prompt_tokens: 3,
            completion_tokens: 4,
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn answers_are_classified() {
        let bytes = entry("k1").encode();
        assert_eq!(classify(Some(200), Some(&bytes), "k1", 2, 25), L2Answer::Hit(entry("k1")));
        assert_eq!(classify(Some(200), Some(&bytes), "k2", 2, 25), L2Answer::Error, "another key's entry");
        assert_eq!(classify(Some(200), Some(b"garbage"), "k1", 2, 25), L2Answer::Error);
        assert_eq!(classify(Some(200), None, "k1", 2, 25), L2Answer::Error);
        assert_eq!(classify(Some(404), None, "k1", 2, 25), L2Answer::Miss);
        assert_eq!(classify(Some(503), None, "k1", 2, 25), L2Answer::Error);
        // A service whose API token this Envoy lacks (or has wrong): fail open, as an error.
        assert_eq!(classify(Some(401), None, "k1", 2, 25), L2Answer::Error);
        assert_eq!(classify(Some(401), Some(br#"{"error":{"message":"x"}}"#), "k1", 2, 25), L2Answer::Error);
        assert_eq!(classify(Some(504), None, "k1", 30, 25), L2Answer::Timeout);
        assert_eq!(classify(None, None, "k1", 30, 25), L2Answer::Timeout);
        assert_eq!(classify(None, None, "k1", 1, 25), L2Answer::Error, "a reset before the timeout");
    }

    #[test]
    fn the_token_becomes_a_bearer_header() {
        assert_eq!(authorization(None), Ok(None));
        assert_eq!(authorization(Some("")), Ok(None), "empty = unset (compose passes VAR=\"\")");
        assert_eq!(authorization(Some("t0k~en!")), Ok(Some("Bearer t0k~en!".into())));
        for bad in ["two words", "trailing\n", "tab\t", "caf\u{e9}", " "] {
            assert_eq!(authorization(Some(bad)), Err(InvalidToken), "{bad:?}");
        }
        assert_eq!(TOKEN_ENV, "AURELIS_L2_TOKEN", "Envoy deployments name this variable");
    }

    #[test]
    fn a_promoted_entry_keeps_its_l2_deadline() {
        let (l1, l2) = (300_000, 3_600_000);
        // Young in L2: a full L1 TTL from now.
        assert_eq!(promotion_fresh_since(10_000, 0, l1, l2), 10_000);
        // 100 s left in L2: L1 keeps it 100 s, not 300 s.
        let since = promotion_fresh_since(3_500_000, 0, l1, l2);
        assert_eq!(since + l1, 3_600_000);
        // Already past its L2 deadline (clock skew between Envoys): stale at once in L1.
        assert!(promotion_fresh_since(4_000_000, 0, l1, l2) + l1 <= 4_000_000);
    }
}
