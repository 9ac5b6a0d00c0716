//! The replies the filter sends itself: one builder for every hit (a direct L1 or L2 hit and a
//! coalesced waiter answered from its leader's fill get the same headers: cache status, level,
//! a true `age`, key info and `x-ratelimit-*`), and the 429 of a refused request.
use super::stats::{CacheStatus, Counter, Histogram, Tally};
use crate::cache::Entry;
use crate::config::FilterConfig;
use crate::http::{Reply, HEADER_CACHE, HEADER_KEY_INFO, HEADER_LEVEL};
use crate::limits::{headers as limit_headers, Decision, LimitReason};
use crate::replay::{self, ReplayKind, ReplyShape};

/// What a hit reply needs to know about the request it answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HitContext {
    pub model: Option<String>,
    pub key_info: Option<String>,
    /// The request's rate-limit admission, for its `x-ratelimit-*` headers.
    pub decision: Option<Decision>,
    /// When the filter started on the request (for the response-time histogram).
    pub started_ms: u64,
    /// How the client wants its answer.
    pub shape: ReplyShape,
}

/// A rewritten hit may be larger than the entry (a stream carries an envelope per chunk); it
/// is held once in memory while it is sent, so it gets a few times the entry bound.
const REPLAY_BYTES_PER_ENTRY_BYTE: u64 = 4;

/// `entry` in the shape the client asked for (`replay::reshape`), and the rewrite it needed;
/// `None`, counted by reason, when the entry cannot answer this client (a miss).
pub fn reshape(w: &super::Worker, entry: Entry, shape: ReplyShape) -> Option<(Entry, Option<ReplayKind>)> {
    let max_bytes = w.layout.max_entry_bytes.saturating_mul(REPLAY_BYTES_PER_ENTRY_BYTE);
    match replay::reshape(entry, shape, usize::try_from(max_bytes).unwrap_or(usize::MAX)) {
        Ok(shaped) => Some(shaped),
        Err(err) => {
            w.count(Counter::ReplaySkipped(err), 1);
            None
        }
    }
}

/// The tokens a hit spends from the budget: none unless configured (`cache_hits_spend_tokens`).
pub fn hit_spend(config: &FilterConfig, entry: &Entry) -> u64 {
    if config.rate_limit.cache_hits_spend_tokens {
        tokens_of(entry)
    } else {
        0
    }
}

/// The reply serving `entry` from `level`, taking the entry's body instead of copying it.
pub fn hit_owned(entry: Entry, level: &str, age_seconds: u64, context: &HitContext) -> Reply {
    let headers = hit_headers(&entry, level, age_seconds, context);
    Reply { status: entry.status, headers, body: entry.body }
}

fn hit_headers(entry: &Entry, level: &str, age_seconds: u64, context: &HitContext) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(12);
    headers.push(("content-type", entry.content_type.clone()));
    headers.push((HEADER_CACHE, "HIT".to_string()));
    headers.push((HEADER_LEVEL, level.to_string()));
    headers.push(("age", age_seconds.to_string()));
    if let Some(info) = &context.key_info {
        headers.push((HEADER_KEY_INFO, info.clone()));
    }
    if let Some(decision) = &context.decision {
        headers.extend(limit_headers::ratelimit_headers(decision));
    }
    headers
}

/// The tokens an entry's answer cost upstream (what a hit saves).
pub fn tokens_of(entry: &Entry) -> u64 {
    u64::from(entry.prompt_tokens) + u64::from(entry.completion_tokens)
}

/// Counts a hit that was sent; `tokens`: what its answer cost upstream.
pub fn count_hit(tally: &mut Tally, tokens: u64, level: &str, context: &HitContext, now_ms: u64) {
    let counter = match level {
        "L2" => Counter::HitsL2,
        "L3" => Counter::HitsL3,
        _ => Counter::HitsL1,
    };
    tally.add(counter, 1);
    tally.add(Counter::TokensSaved, tokens);
    tally.request(CacheStatus::Hit, context.model.as_deref());
    tally.sample(Histogram::ResponseTimeHit, now_ms.saturating_sub(context.started_ms));
}

/// The `code` of a 403 for a model the consumer may not call.
pub const MODEL_NOT_ALLOWED: &str = "model_not_allowed";
pub const REQUEST_TOO_LARGE: &str = "request_too_large";
pub const UNSUPPORTED_ENCODING: &str = "unsupported_content_encoding";
pub const RATE_LIMIT_UNAVAILABLE: &str = "rate_limit_unavailable";

/// An OpenAI-style error answer: `{"error":{"message","type","param":null,"code"}}`, the shape
/// OpenAI SDKs parse into their typed errors.
pub fn error(status: u16, code: &str, message: &str) -> Reply {
    let kind = match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        503 => "service_unavailable",
        _ => "invalid_request_error",
    };
    let body = serde_json::json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    let mut headers = vec![("content-type", "application/json".to_string())];
    if status == 401 {
        headers.push(("www-authenticate", "Bearer".to_string()));
    }
    Reply { status, headers, body: body.to_string().into_bytes() }
}

/// The 429 of a refused request: an OpenAI-style error body and the limit headers.
pub fn limited(reason: LimitReason, decision: &Decision) -> Reply {
    let mut headers = vec![("content-type", "application/json".to_string())];
    headers.extend(limit_headers::ratelimit_headers(decision));
    Reply { status: 429, headers, body: limit_headers::refusal_body(reason, decision).into_bytes() }
}
