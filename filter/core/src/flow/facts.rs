//! The facts of one request, published once when the request ends: what the cache did, for
//! whom, with which model, what it cost in tokens and what the limiter decided. The flow hands
//! them to the host in one `Host::publish_facts` call (one host call per request); the hosts
//! put them where Envoy's access log reads them, under `NAMESPACE`:
//! the native module as dynamic metadata (`metadata.filter_metadata.aurelis`), the Wasm filter
//! as one filter-state object (`wasm.aurelis`, a `google.protobuf.Struct`, since proxy-wasm
//! cannot write dynamic metadata). `docs/operations.md` lists the fields.
//!
//! The names in `FIELDS` are an interface (access logs, telemetry and dashboards read them):
//! a test pins them. Values never carry prompt text, keys or tokens: the tenant is a hash, the
//! consumer a declared name or JWT subject, the model a plain header-safe name.
use super::request::{Request, State};
use super::stats::CacheStatus;
use crate::auth::IdentityKind;
use crate::limits::Decision;

/// The namespace (dynamic metadata) and property name (filter state `wasm.aurelis`).
pub const NAMESPACE: &str = "aurelis";

/// Every fact's name, in publishing order. Stable: renaming one breaks users' log queries.
pub const FIELDS: [&str; 13] = [
    "cache_status",
    "cache_level",
    "bypass_reason",
    "refusal",
    "model",
    "tenant_scope",
    "consumer",
    "prompt_tokens",
    "completion_tokens",
    "tokens_saved",
    "ratelimit",
    "coalesced",
    "ttfb_ms",
];

/// Longest model or consumer name published; longer ones (or ones with other than printable
/// ASCII) are left out rather than cut, so a log never shows a misleading prefix.
const MAX_NAME_BYTES: usize = 128;

/// One fact's value as the hosts write it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FactValue<'a> {
    Text(&'a str),
    Number(u64),
    Flag(bool),
}

/// What one request was, as the filter saw it. `None` fields are not published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// `HIT`, `MISS`, `BYPASS`, `LIMITED` (429), `REFUSED` (401/403/413/415/503), or `NONE`
    /// (the request ended before the filter decided, e.g. the client left).
    pub cache_status: &'static str,
    /// `L1` or `L2`, for hits.
    pub cache_level: Option<&'static str>,
    pub bypass_reason: Option<&'static str>,
    /// The error code of a refused request (`missing_api_key`, `model_not_allowed`, ...).
    pub refusal: Option<&'static str>,
    pub model: Option<String>,
    /// The cache scope: 16 hex characters of a hash of the tenant, or `shared`/`anon`.
    pub tenant_scope: Option<String>,
    /// The declared consumer or JWT subject (never for anonymous clients).
    pub consumer: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// What a hit saved upstream (its stored answer's prompt + completion tokens).
    pub tokens_saved: Option<u64>,
    /// `off`, `allowed`, `refused_requests`, `refused_tokens` or `unavailable`.
    pub ratelimit: &'static str,
    /// Answered from an identical request's upstream answer while it was in flight.
    pub coalesced: bool,
    /// Streamed answers only: from the complete request body to the first response byte.
    pub ttfb_ms: Option<u64>,
}

/// What the flow learns along the way that the request's state alone does not say.
#[derive(Debug, Clone, Default)]
pub(super) struct Outcome {
    pub level: Option<&'static str>,
    pub refusal: Option<&'static str>,
    pub tokens: Option<(u64, u64)>,
    pub saved: Option<u64>,
    pub ratelimit: Option<&'static str>,
    pub coalesced: bool,
    pub ttfb_ms: Option<u64>,
    pub published: bool,
}

impl Outcome {
    /// A hit from `level` whose stored answer cost these tokens upstream.
    pub fn hit(&mut self, level: &'static str, prompt_tokens: u64, completion_tokens: u64) {
        self.level = Some(level);
        self.usage(prompt_tokens, completion_tokens);
        self.saved = self.tokens.map(|(p, c)| p.saturating_add(c));
    }

    /// The answer's token usage. An answer without `usage` (a stream that did not ask for
    /// `stream_options.include_usage`) is stored with zeros: unknown, so not published.
    pub fn usage(&mut self, prompt_tokens: u64, completion_tokens: u64) {
        let known = prompt_tokens > 0 || completion_tokens > 0;
        self.tokens = known.then_some((prompt_tokens, completion_tokens));
    }

    pub fn admitted(&mut self, decision: &Decision) {
        self.ratelimit = Some(match decision.refused {
            None => "allowed",
            Some(crate::limits::LimitReason::Requests) => "refused_requests",
            Some(crate::limits::LimitReason::Tokens) => "refused_tokens",
        });
    }
}

fn plain_name(name: &str) -> Option<String> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME_BYTES && name.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| name.to_string())
}

impl Request {
    /// This request's facts as they stand.
    pub fn facts(&self) -> Facts {
        let o = &self.outcome;
        let (cache_status, bypass_reason) = match &self.state {
            State::Hit => (CacheStatus::Hit.as_str(), None),
            State::Miss { .. } => (CacheStatus::Miss.as_str(), None),
            State::Bypass(reason) => (CacheStatus::Bypass.as_str(), Some(reason.as_str())),
            State::Limited => ("LIMITED", None),
            State::Refused => ("REFUSED", None),
            State::Start | State::L2Lookup { .. } | State::Waiting { .. } => ("NONE", None),
        };
        let consumer = self.identity.as_ref().filter(|i| i.kind != IdentityKind::Anonymous);
        Facts {
            cache_status,
            cache_level: o.level,
            bypass_reason,
            refusal: o.refusal,
            model: self.model.as_deref().and_then(plain_name),
            tenant_scope: self.tenant_scope.as_deref().map(|s| s.strip_prefix("t=").unwrap_or(s).to_string()),
            consumer: consumer.and_then(|i| plain_name(&i.label)),
            prompt_tokens: o.tokens.map(|t| t.0),
            completion_tokens: o.tokens.map(|t| t.1),
            tokens_saved: o.saved,
            ratelimit: o.ratelimit.unwrap_or("off"),
            coalesced: o.coalesced,
            ttfb_ms: o.ttfb_ms,
        }
    }

    /// Hands the facts to the host, once per request (at the end of the response, or when the
    /// stream ends without one).
    pub(super) fn publish_facts(&mut self, host: &mut impl super::Host) {
        if self.outcome.published {
            return;
        }
        self.outcome.published = true;
        host.publish_facts(&self.facts());
    }

    /// Streams only: the time to the first response byte, once.
    pub(super) fn note_first_byte(&mut self, host: &mut impl super::Host) {
        if matches!(self.shape, crate::replay::ReplyShape::Sse { .. }) && self.outcome.ttfb_ms.is_none() {
            let now = host.now_ms();
            self.outcome.ttfb_ms = Some(now.saturating_sub(self.started_ms));
        }
    }
}

impl Facts {
    /// The published fields, in `FIELDS` order (absent ones left out).
    pub fn fields(&self) -> Vec<(&'static str, FactValue<'_>)> {
        let text = |v: Option<&'static str>| v.map(FactValue::Text);
        fn owned(v: &Option<String>) -> Option<FactValue<'_>> {
            v.as_deref().map(FactValue::Text)
        }
        let values: [Option<FactValue<'_>>; 13] = [
            Some(FactValue::Text(self.cache_status)),
            text(self.cache_level),
            text(self.bypass_reason),
            text(self.refusal),
            owned(&self.model),
            owned(&self.tenant_scope),
            owned(&self.consumer),
            self.prompt_tokens.map(FactValue::Number),
            self.completion_tokens.map(FactValue::Number),
            self.tokens_saved.map(FactValue::Number),
            Some(FactValue::Text(self.ratelimit)),
            Some(FactValue::Flag(self.coalesced)),
            self.ttfb_ms.map(FactValue::Number),
        ];
        FIELDS.iter().zip(values).filter_map(|(name, value)| value.map(|v| (*name, v))).collect()
    }

    /// The facts as a serialized `google.protobuf.Struct` (numbers as doubles, like dynamic
    /// metadata holds them), for a host that publishes one protobuf-typed object.
    pub fn to_struct_proto(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        for (name, value) in self.fields() {
            let mut encoded = Vec::with_capacity(24);
            match value {
                // google.protobuf.Value: number_value = 2 (double), string_value = 3, bool_value = 4.
                FactValue::Number(n) => {
                    encoded.push(0x11);
                    encoded.extend_from_slice(&(n as f64).to_le_bytes());
                }
                FactValue::Text(s) => length_delimited(&mut encoded, 3, s.as_bytes()),
                FactValue::Flag(b) => encoded.extend_from_slice(&[0x20, u8::from(b)]),
            }
            // Struct.fields = 1: map entries { key = 1, value = 2 }.
            let mut entry = Vec::with_capacity(name.len() + encoded.len() + 4);
            length_delimited(&mut entry, 1, name.as_bytes());
            length_delimited(&mut entry, 2, &encoded);
            length_delimited(&mut out, 1, &entry);
        }
        out
    }
}

fn length_delimited(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    let mut n = bytes.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(bytes);
}
