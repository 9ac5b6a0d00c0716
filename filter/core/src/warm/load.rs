//! Warming a new L1: which worker does it (`claim`), the one call that fetches the hottest
//! entries (`callout`), and what is loaded from its answer (`load`). Every entry is verified
//! exactly as an L2 answer is (`l2::classify_from` at the L3 age rule: the hot list comes from
//! the service's persistent level): sealed with this fleet's key for the very key it is listed
//! under (the tenant scope is part of that key, so an entry can only ever answer its own
//! tenant), not dated in the future, not past its lifetime. Anything else is skipped and
//! counted; so is a failed call, which leaves L1 as it was (requests never wait for warming).
use crate::cache::l2::{self, L2Answer, L2Secrets};
use crate::cache::{Insert, KeyNames, L1Cache, Layout, SharedStore, WayHints};
use crate::config::FilterConfig;
use crate::flow::stats::Counter;
use crate::http::Callout;
use crate::key::CacheKey;
use crate::key::KEY_SCHEMA_VERSION;

/// Level whose age rule applies to warmed entries (the hot list is L3's).
const HOT_LEVEL: &str = "L3";

/// Marks in the process-wide store that `layout` (an L1 shape's namespace) was warmed from
/// `l2_namespace`; `true` for the one caller that should warm it. A new Envoy process starts
/// with an empty store, and a new layout or namespace has a new mark, so each warms once.
/// (Two workers racing on a never-written key may both win: warming twice is harmless.)
pub fn claim(store: &impl SharedStore, layout: &str, l2_namespace: &str) -> bool {
    let mark = format!("aurelis.warm.{layout}.{l2_namespace}");
    match store.get(&mark) {
        Ok((None, cas)) => store.set(&mark, b"1", cas).is_ok(),
        _ => false,
    }
}

/// Whether this configuration warms at all (L2 on, with a signing key, and asked to).
pub fn enabled(config: &FilterConfig, secrets: &L2Secrets) -> bool {
    config.l2.enabled && config.warm.enabled && secrets.disabled_reason().is_none()
}

/// The warming call if this configuration warms and the caller is the one to do it (`claim`).
pub fn start(config: &FilterConfig, secrets: &L2Secrets, store: &impl SharedStore) -> Option<Callout> {
    if !enabled(config, secrets) {
        return None;
    }
    let layout = Layout::from_config(&config.cache).namespace();
    claim(store, &layout, &config.l2.namespace).then(|| callout(config, secrets))
}

/// `GET /v1/hot` for the configured namespace, bounded by the `warm` section.
pub fn callout(config: &FilterConfig, secrets: &L2Secrets) -> Callout {
    let (l2, warm) = (&config.l2, &config.warm);
    let path = format!(
        "/v1/hot?limit={}&max_bytes={}&min_hits={}&window_days={}",
        warm.max_entries, warm.max_bytes, warm.min_hits, warm.window_days
    );
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path),
        (":authority".to_string(), l2.authority.clone()),
        ("x-aurelis-namespace".to_string(), l2.namespace.clone()),
    ];
    if let Some(value) = &secrets.authorization {
        headers.push(("authorization".to_string(), value.clone()));
    }
    Callout { cluster: l2.cluster.clone(), headers, body: None, timeout_ms: warm.timeout_ms }
}

/// One framed entry of the answer: a big-endian u32 length, then that many bytes, twice
/// (key, then the sealed value). `None` once the frames run out or are cut short.
fn next_frame<'a>(body: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = body.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    let (frame, rest) = (rest.get(..len)?, rest.get(len..)?);
    *body = rest;
    Some(frame)
}

/// Loads the verified entries of a `/v1/hot` answer into `l1`, counting every entry by outcome
/// (`Counter::WarmEntries`) and the run by result (`Counter::Warm`: loaded, empty, error).
#[allow(clippy::too_many_arguments)]
pub fn load<S: SharedStore>(
    config: &FilterConfig,
    secrets: &L2Secrets,
    l1: &L1Cache<'_, S>,
    l1_ttl_ms: u64,
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
    count: &mut impl FnMut(Counter, u64),
) {
    if status != Some(200) {
        count(Counter::Warm("error"), 1);
        return;
    }
    let own_prefix = format!("{}v{KEY_SCHEMA_VERSION}:", config.cache.key_prefix);
    let mut rest = body;
    let mut loaded = 0;
    while !rest.is_empty() {
        let (Some(key), Some(value)) = (next_frame(&mut rest), next_frame(&mut rest)) else {
            // A cut answer: what came before it stands, the rest is unreadable.
            count(Counter::WarmEntries("forged"), 1);
            break;
        };
        let outcome = match std::str::from_utf8(key) {
            Ok(key) if key.starts_with(&own_prefix) => load_one(config, secrets, l1, l1_ttl_ms, key, value, now_ms),
            // Another key schema, prefix or filter version: this filter would never look it up.
            _ => "foreign",
        };
        if outcome == "loaded" {
            loaded += 1;
        }
        count(Counter::WarmEntries(outcome), 1);
    }
    count(Counter::Warm(if loaded > 0 { "loaded" } else { "empty" }), 1);
}

fn load_one<S: SharedStore>(
    config: &FilterConfig,
    secrets: &L2Secrets,
    l1: &L1Cache<'_, S>,
    l1_ttl_ms: u64,
    key: &str,
    value: &[u8],
    now_ms: u64,
) -> &'static str {
    let entry = match l2::classify_from(HOT_LEVEL, secrets, &config.l2, Some(200), Some(value), key, now_ms, 0) {
        L2Answer::Hit(entry) => entry,
        L2Answer::Stale => return "stale",
        _ => return "forged",
    };
    let bound = config.l2.freshness_bound_ms(HOT_LEVEL);
    let fresh_since = l2::promotion_fresh_since(now_ms, entry.stored_at_ms, l1_ttl_ms, bound);
    if now_ms.saturating_sub(fresh_since) >= l1_ttl_ms {
        return "stale";
    }
    match l1.insert_fresh_since(&CacheKey::new(key.to_string()), &entry, now_ms, fresh_since) {
        Insert::Stored { .. } => "loaded",
        _ => "not_stored",
    }
}

/// `load` into this configuration's L1 in `store`, for a host that takes the answer outside
/// any worker (the native module's main thread).
pub fn load_into<S: SharedStore>(
    config: &FilterConfig,
    secrets: &L2Secrets,
    store: &S,
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
    count: &mut impl FnMut(Counter, u64),
) {
    let layout = Layout::from_config(&config.cache);
    let names = KeyNames::new(&layout);
    let hints = WayHints::new(layout.capacity());
    let l1 = L1Cache::new(store, &layout, &names, &hints);
    load(config, secrets, &l1, layout.ttl_ms, status, body, now_ms, count);
}
