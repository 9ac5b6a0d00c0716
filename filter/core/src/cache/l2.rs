//! What an L2 lookup's answer means. The glue makes the call through Envoy; deciding hit, miss
//! or failure is plain logic, tested here. Every failure means "go upstream" (fail open); the
//! kinds are kept apart only for the stats.
use super::Entry;

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
