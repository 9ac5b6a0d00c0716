//! What an L2 lookup's answer means. The glue makes the call through Envoy; deciding hit, miss
//! or failure is plain logic, tested here. Every failure means "go upstream" (fail open); the
//! kinds are kept apart only for the stats. Values are sealed (`sealed`): one whose MAC does not
//! check is `Forged`, never served; one dated in the future or past its L2 TTL is `Stale`.
use super::sealed::{self, SigningKey};
use super::Entry;
use crate::config::L2Config;
use crate::http::Callout;
use crate::key::CacheKey;
use std::fmt;

/// Stores are fire-and-forget from the worker; give them longer than lookups.
const STORE_TIMEOUT_MS: u64 = 1000;
/// The storage schema every entry is tagged with (`x-aurelis-schema`): purging it purges all.
pub const SCHEMA_TAG: &str = "v1";

/// An answer to store in L2, queued by a request and sent by its worker (which outlives the
/// request: a call made from a finished request would be cancelled with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStore {
    pub key: String,
    pub value: Vec<u8>,
    pub model: Option<String>,
    pub tenant: Option<String>,
}

/// What the filter needs from its host's environment to use L2, never from the JSON
/// configuration (which travels over xDS and shows in `/config_dump`).
#[derive(Clone, Default)]
pub struct L2Secrets {
    /// `Bearer <token>` for every call to the cache service (`TOKEN_ENV`).
    pub authorization: Option<String>,
    /// Signs stored entries and verifies looked-up ones (`sealed::SIGNING_KEY_ENV`). Without
    /// it L2 is off: unsigned entries could not be told from forged ones.
    pub signing_key: Option<SigningKey>,
    /// Verifies refresh grants (`refresh`, `AURELIS_REFRESH_SECRET`). Without it every grant is
    /// refused and no refresh record is written.
    pub refresh: Option<crate::refresh::RefreshSecret>,
}

impl L2Secrets {
    /// Read from the process environment (a native module runs in Envoy's; the Wasm VM sees
    /// the variables its `vm_config` lists in `host_env_keys`). An unset or unusable value is
    /// left out, and `warn` is told why, never the value: without a signing key the worker
    /// turns L2 off; without a usable token calls go unauthenticated and the service refuses
    /// them (L2 fails open).
    pub fn from_env(mut warn: impl FnMut(&str)) -> L2Secrets {
        L2Secrets {
            authorization: authorization_from_env(&mut warn),
            signing_key: signing_key_from_env(&mut warn),
            refresh: crate::refresh::RefreshSecret::from_env(&mut warn),
        }
    }
}

fn signing_key_from_env(warn: &mut impl FnMut(&str)) -> Option<SigningKey> {
    use sealed::SIGNING_KEY_ENV;
    let raw = match std::env::var(SIGNING_KEY_ENV) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            warn(&format!("aurelis: {SIGNING_KEY_ENV} is not valid UTF-8: L2 is off"));
            return None;
        }
    };
    SigningKey::from_env_value(raw.as_deref()).unwrap_or_else(|err| {
        warn(&format!("aurelis: {SIGNING_KEY_ENV} {err}: L2 is off"));
        None
    })
}

fn authorization_from_env(warn: &mut impl FnMut(&str)) -> Option<String> {
    let raw = match std::env::var(TOKEN_ENV) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(InvalidToken),
    };
    match raw.and_then(|value| authorization(value.as_deref())) {
        Ok(header) => header,
        Err(InvalidToken) => {
            warn(&format!("aurelis: {TOKEN_ENV} is not printable ASCII without spaces: L2 calls are sent without it"));
            None
        }
    }
}

impl fmt::Debug for L2Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |present: bool| if present { "<set>" } else { "<unset>" };
        f.debug_struct("L2Secrets")
            .field("authorization", &set(self.authorization.is_some()))
            .field("signing_key", &set(self.signing_key.is_some()))
            .field("refresh", &set(self.refresh.is_some()))
            .finish()
    }
}

impl L2Secrets {
    /// Why L2 cannot run with these secrets (the `reason` label of `aurelis_l2_disabled_total`).
    pub fn disabled_reason(&self) -> Option<&'static str> {
        self.signing_key.is_none().then_some("no_signing_key")
    }
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
pub fn lookup_callout(config: &L2Config, secrets: &L2Secrets, key: &CacheKey) -> Callout {
    Callout {
        cluster: config.cluster.clone(),
        headers: common_headers(config, secrets.authorization.as_deref(), "GET", &key.text),
        body: None,
        timeout_ms: config.timeout_ms,
    }
}

/// The store of an answer (`store.value` is its `Entry::encode`), sealed, and tagged by model and
/// tenant so an operator can purge by either. `None` without a signing key: nothing unsigned is
/// ever written (L2 is off then, so this is not reached).
pub fn store_callout(config: &L2Config, secrets: &L2Secrets, store: PendingStore) -> Option<Callout> {
    let value = sealed::seal(secrets.signing_key.as_ref()?, &store.key, &store.value);
    let mut headers = common_headers(config, secrets.authorization.as_deref(), "PUT", &store.key);
    headers.extend([
        ("content-type".to_string(), "application/octet-stream".to_string()),
        ("x-aurelis-ttl-seconds".to_string(), config.ttl_seconds.to_string()),
        ("x-aurelis-compress-min-bytes".to_string(), config.compress_min_bytes.to_string()),
        ("x-aurelis-schema".to_string(), SCHEMA_TAG.to_string()),
    ]);
    // Values the service would refuse are left out.
    let tag_ok = |v: &&String| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    if let Some(model) = store.model.as_ref().filter(tag_ok) {
        headers.push(("x-aurelis-model".to_string(), model.clone()));
    }
    if let Some(tenant) = store.tenant.as_ref().filter(tag_ok) {
        headers.push(("x-aurelis-tenant".to_string(), tenant.clone()));
    }
    Some(Callout { cluster: config.cluster.clone(), headers, body: Some(value), timeout_ms: STORE_TIMEOUT_MS })
}

/// The store of a refresh record (`crate::refresh::record`) for `key`: the cache service keeps
/// it in L3 only (encrypted there like the answers), tagged like the entry so a purge of the
/// tenant or model removes it too.
pub fn record_callout(
    config: &L2Config,
    secrets: &L2Secrets,
    key: &str,
    record: Vec<u8>,
    tenant: Option<&str>,
    model: Option<&str>,
) -> Callout {
    let mut headers = common_headers(config, secrets.authorization.as_deref(), "PUT", key);
    for (name, value) in headers.iter_mut() {
        if name == ":path" {
            *value = format!("/v1/refresh/{key}");
        }
    }
    headers.push(("content-type".to_string(), "application/octet-stream".to_string()));
    let tag_ok = |v: &&str| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    if let Some(model) = model.filter(tag_ok) {
        headers.push(("x-aurelis-model".to_string(), model.to_string()));
    }
    if let Some(tenant) = tenant.filter(tag_ok) {
        headers.push(("x-aurelis-tenant".to_string(), tenant.to_string()));
    }
    Callout { cluster: config.cluster.clone(), headers, body: Some(record), timeout_ms: STORE_TIMEOUT_MS }
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
    /// A value that is not sealed with this filter's key for this key: written by someone
    /// else, altered, truncated, or moved from another key.
    Forged,
    /// Genuine, but dated in the future (beyond `MAX_FUTURE_SKEW_MS`) or past the service's
    /// lifetime (`L2Config::freshness_bound_ms`).
    Stale,
}

impl L2Answer {
    /// The `result` label of `aurelis_l2_lookups_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            L2Answer::Hit(_) => "hit",
            L2Answer::Miss => "miss",
            L2Answer::Error => "error",
            L2Answer::Timeout => "timeout",
            L2Answer::Forged => "forged",
            L2Answer::Stale => "stale",
        }
    }
}

/// How far ahead of this Envoy's clock another Envoy's may run and its entries still be used:
/// synchronized clocks differ by milliseconds. Past it an entry is `Stale`, so a future stored_at
/// buys at most this much extra freshness.
pub const MAX_FUTURE_SKEW_MS: u64 = 1_000;

/// When an entry stored at `stored_at_ms` counts as stored, for age and freshness: clamped to
/// `now_ms`, so a future date never makes it look younger than just stored. `None` when it is
/// too far in the future or already `ttl_ms` old (Redis should have expired it: a value kept
/// or put back past its TTL is not served).
pub fn fresh_stored_at(stored_at_ms: u64, now_ms: u64, ttl_ms: u64) -> Option<u64> {
    if stored_at_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return None;
    }
    let stored_at = stored_at_ms.min(now_ms);
    (now_ms - stored_at < ttl_ms).then_some(stored_at)
}

/// Which of the cache service's levels answered a hit: its `x-aurelis-cache-level` header
/// (`L3` when the entry came from the persistent level; anything else, or none, is L2).
pub fn answering_level(header: Option<&str>) -> &'static str {
    match header {
        Some("L3") => "L3",
        _ => "L2",
    }
}

/// Set by the cache service on an entry it put into Redis from L3 (an L3 hit promoted, or the
/// refill after a Redis flush): `x-aurelis-origin: L3`. Such an entry keeps its original
/// stored_at, which may be older than the L2 TTL although Redis holds it for at most that TTL
/// from the promotion; its age is judged by L3's lifetime instead (`age_rule`).
pub const HEADER_ORIGIN: &str = "x-aurelis-origin";

/// Which level's age rule applies to a hit that the service's `level` answered, given its
/// `x-aurelis-origin`: L3's for a Redis entry that came from L3, else the answering level's.
/// The mark is kept in Redis, so someone who can write there could set it on a genuine entry:
/// it then lives at most L3's lifetime, what the service would serve from L3 anyway (a fleet
/// without L3 sets `l2.l3_ttl_seconds` to at most `l2.ttl_seconds`, and the rule is L2's).
pub fn age_rule(level: &'static str, origin: Option<&str>) -> &'static str {
    match (level, origin) {
        ("L2", Some("L3")) => "L3",
        _ => level,
    }
}

/// `status`: the answer's `:status`, `None` when the call failed without one (reset, timeout);
/// `body`: read only for a 200. `elapsed_ms` since the call started tells a timeout apart. A
/// hit's entry has passed its MAC check, and its `stored_at_ms` is clamped to `now_ms`.
pub fn classify(
    secrets: &L2Secrets,
    config: &L2Config,
    status: Option<u16>,
    body: Option<&[u8]>,
    key: &str,
    now_ms: u64,
    elapsed_ms: u64,
) -> L2Answer {
    classify_from("L2", secrets, config, status, body, key, now_ms, elapsed_ms)
}

/// `classify` for an answer from the service's `level` (`answering_level`): an L3 answer may
/// be as old as L3's lifetime (`L2Config::freshness_bound_ms`).
#[allow(clippy::too_many_arguments)]
pub fn classify_from(
    level: &str,
    secrets: &L2Secrets,
    config: &L2Config,
    status: Option<u16>,
    body: Option<&[u8]>,
    key: &str,
    now_ms: u64,
    elapsed_ms: u64,
) -> L2Answer {
    let timed_out = elapsed_ms >= config.timeout_ms;
    match status {
        Some(200) => {
            let (Some(signing_key), Some(body)) = (&secrets.signing_key, body) else { return L2Answer::Error };
            let Ok(mut entry) = sealed::open(signing_key, key, body) else { return L2Answer::Forged };
            match fresh_stored_at(entry.stored_at_ms, now_ms, config.freshness_bound_ms(level)) {
                Some(stored_at_ms) => {
                    entry.stored_at_ms = stored_at_ms;
                    L2Answer::Hit(entry)
                }
                None => L2Answer::Stale,
            }
        }
        Some(404) => L2Answer::Miss,
        // Envoy answers its own 504 when the call times out.
        Some(504) if timed_out => L2Answer::Timeout,
        Some(_) => L2Answer::Error,
        None if timed_out => L2Answer::Timeout,
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

    const NOW: u64 = 1_700_000_000_000;

    fn secrets(key: &str) -> L2Secrets {
        L2Secrets { authorization: None, signing_key: SigningKey::from_env_value(Some(key)).unwrap(), refresh: None }
    }

    fn ours() -> L2Secrets {
        secrets("our-signing-key-of-at-least-32-bytes")
    }

    fn config() -> L2Config {
        L2Config { timeout_ms: 25, ttl_seconds: 60, ..L2Config::default() }
    }

    fn sealed_entry(key: &str, stored_at_ms: u64) -> Vec<u8> {
        let entry = Entry { stored_at_ms, ..entry(key) };
        sealed::seal(ours().signing_key.as_ref().unwrap(), key, &entry.encode())
    }

    fn classify_200(value: &[u8], key: &str) -> L2Answer {
        classify(&ours(), &config(), Some(200), Some(value), key, NOW, 2)
    }

    #[test]
    fn answers_are_classified() {
        let c = |status, body: Option<&[u8]>, elapsed| classify(&ours(), &config(), status, body, "k1", NOW, elapsed);
        let hit = Entry { stored_at_ms: NOW - 5_000, ..entry("k1") };
        assert_eq!(classify_200(&sealed_entry("k1", NOW - 5_000), "k1"), L2Answer::Hit(hit));
        assert_eq!(c(Some(200), None, 2), L2Answer::Error, "no body to read");
        assert_eq!(c(Some(404), None, 2), L2Answer::Miss);
        assert_eq!(c(Some(503), None, 2), L2Answer::Error);
        // A service whose API token this Envoy lacks (or has wrong): fail open, as an error.
        assert_eq!(c(Some(401), None, 2), L2Answer::Error);
        assert_eq!(c(Some(401), Some(br#"{"error":{"message":"x"}}"#), 2), L2Answer::Error);
        assert_eq!(c(Some(403), None, 2), L2Answer::Error, "a namespace this token is not bound to");
        assert_eq!(c(Some(504), None, 30), L2Answer::Timeout);
        assert_eq!(c(None, None, 30), L2Answer::Timeout);
        assert_eq!(c(None, None, 1), L2Answer::Error, "a reset before the timeout");
    }

    #[test]
    fn only_entries_sealed_with_our_key_for_this_key_are_hits() {
        let genuine = sealed_entry("k1", NOW - 5_000);
        assert!(matches!(classify_200(&genuine, "k1"), L2Answer::Hit(_)));
        // Forged: unsigned (a valid entry encoding, as written before signing existed), garbage,
        // truncated anywhere, altered anywhere, signed with another key, or another key's value.
        let unsigned = Entry { stored_at_ms: NOW, ..entry("k1") }.encode();
        assert_eq!(classify_200(&unsigned, "k1"), L2Answer::Forged);
        assert_eq!(classify_200(b"garbage", "k1"), L2Answer::Forged);
        assert_eq!(classify_200(b"", "k1"), L2Answer::Forged);
        for cut in [1, sealed::HEADER_LEN, sealed::HEADER_LEN + 10, genuine.len() - 1] {
            assert_eq!(classify_200(&genuine[..cut], "k1"), L2Answer::Forged, "cut at {cut}");
        }
        let mut altered = genuine.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(classify_200(&altered, "k1"), L2Answer::Forged, "an altered body");
        let theirs = secrets("someone-else's-key-of-at-least-32-bytes");
        let foreign = sealed::seal(theirs.signing_key.as_ref().unwrap(), "k1", &entry("k1").encode());
        assert_eq!(classify_200(&foreign, "k1"), L2Answer::Forged, "signed with another key");
        assert_eq!(classify_200(&sealed_entry("k2", NOW), "k1"), L2Answer::Forged, "k2's value under k1");
        // Without a signing key nothing is served (L2 is off then anyway).
        let keyless = classify(&L2Secrets::default(), &config(), Some(200), Some(&genuine), "k1", NOW, 2);
        assert_eq!(keyless, L2Answer::Error);
        assert_eq!(L2Answer::Forged.as_str(), "forged");
    }

    #[test]
    fn a_future_stored_at_never_makes_an_entry_fresher() {
        let ttl = 60_000;
        assert_eq!(fresh_stored_at(NOW - 5_000, NOW, ttl), Some(NOW - 5_000));
        assert_eq!(fresh_stored_at(NOW + 500, NOW, ttl), Some(NOW), "clock skew: clamped to now");
        assert_eq!(fresh_stored_at(NOW + MAX_FUTURE_SKEW_MS + 1, NOW, ttl), None, "from the future");
        assert_eq!(fresh_stored_at(u64::MAX, NOW, ttl), None);
        assert_eq!(fresh_stored_at(NOW - ttl, NOW, ttl), None, "as old as its TTL");
        assert_eq!(fresh_stored_at(0, NOW, ttl), None);
        // Through classify: a genuine entry dated an hour ahead is stale, one a little ahead is
        // served as stored now (age 0), and one kept past its TTL is stale.
        assert_eq!(classify_200(&sealed_entry("k1", NOW + 3_600_000), "k1"), L2Answer::Stale);
        let L2Answer::Hit(skewed) = classify_200(&sealed_entry("k1", NOW + 300), "k1") else { panic!("not a hit") };
        assert_eq!(skewed.stored_at_ms, NOW);
        assert_eq!(classify_200(&sealed_entry("k1", NOW - 61_000), "k1"), L2Answer::Stale);
    }

    #[test]
    fn an_entry_the_service_answers_from_l3_may_be_as_old_as_its_l3_lifetime() {
        let config = L2Config { ttl_seconds: 3600, ..L2Config::default() };
        assert_eq!(config.freshness_bound_ms("L3"), 86_400_000, "L3's default lifetime");
        assert_eq!(config.freshness_bound_ms("L2"), 3_600_000);
        let from = |level, stored_at| {
            let value = sealed_entry("k1", stored_at);
            classify_from(level, &ours(), &config, Some(200), Some(&value), "k1", NOW, 2)
        };
        // Two hours old: past the L2 TTL, inside L3's lifetime.
        assert!(matches!(from("L3", NOW - 7_200_000), L2Answer::Hit(_)));
        assert_eq!(from("L2", NOW - 7_200_000), L2Answer::Stale, "Redis never vouches past its TTL");
        assert_eq!(from("L3", NOW - 86_400_000), L2Answer::Stale, "nor L3 past its own");
        assert_eq!(from("L3", NOW + 3_600_000), L2Answer::Stale, "dated in the future");
        assert_eq!(answering_level(Some("L3")), "L3");
        assert_eq!(answering_level(Some("L2")), "L2");
        assert_eq!(answering_level(Some("l3 ")), "L2");
        assert_eq!(answering_level(None), "L2");
    }

    #[test]
    fn an_entry_redis_got_from_l3_is_judged_by_l3s_lifetime() {
        assert_eq!(age_rule("L2", Some("L3")), "L3");
        assert_eq!(age_rule("L2", None), "L2");
        assert_eq!(age_rule("L2", Some("l3")), "L2");
        assert_eq!(age_rule("L3", None), "L3");
        let config = L2Config { ttl_seconds: 3600, ..L2Config::default() };
        let two_hours_old = sealed_entry("k1", NOW - 7_200_000);
        let rule = |origin| {
            let rule = age_rule("L2", origin);
            classify_from(rule, &ours(), &config, Some(200), Some(&two_hours_old), "k1", NOW, 2)
        };
        assert!(matches!(rule(Some("L3")), L2Answer::Hit(_)), "promoted from L3: inside L3's lifetime");
        assert_eq!(rule(None), L2Answer::Stale, "a plain Redis entry past the L2 TTL");
        let no_l3 = L2Config { ttl_seconds: 3600, l3_ttl_seconds: 0, ..L2Config::default() };
        let strict =
            classify_from(age_rule("L2", Some("L3")), &ours(), &no_l3, Some(200), Some(&two_hours_old), "k1", NOW, 2);
        assert_eq!(strict, L2Answer::Stale, "a fleet without L3 keeps the L2 rule");
    }

    #[test]
    fn stores_are_sealed_and_need_a_key() {
        let pending =
            PendingStore { key: "k1".into(), value: entry("k1").encode(), model: None, tenant: Some("t".into()) };
        let callout = store_callout(&config(), &ours(), pending.clone()).unwrap();
        let body = callout.body.unwrap();
        assert_eq!(sealed::open(ours().signing_key.as_ref().unwrap(), "k1", &body), Ok(entry("k1")));
        assert_eq!(store_callout(&config(), &L2Secrets::default(), pending), None, "never unsigned");
        assert_eq!(ours().disabled_reason(), None);
        assert_eq!(L2Secrets::default().disabled_reason(), Some("no_signing_key"));
        let shown = format!("{:?}", L2Secrets { authorization: Some("Bearer secret".into()), ..ours() });
        assert!(!shown.contains("secret") && shown.contains("<set>"), "{shown}");
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
