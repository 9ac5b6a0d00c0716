//! The canonical cache key.
//!
//! Two requests share a key only if they ask for the same completion; everything below that can
//! merge prompts a model might answer differently is opt-in.
//!
//! # Canonical form
//! 1. The body must be UTF-8 JSON, an object, with a non-empty string `model`. Nesting deeper
//!    than 100 is refused by a linear scan before parsing (bounded time, bounded recursion).
//!    Duplicate object keys: the last one wins, as in the usual upstream parsers.
//! 2. Compact output: no insignificant whitespace; object keys sorted by UTF-8 bytes at every
//!    depth; arrays keep their order (message order, tool order and content-part order matter).
//! 3. Numbers have one spelling: an integral value that fits u64/i64 is written as that integer
//!    (`1`, `1.0`, `1e0`, `10e-1` → `1`; `-0.0` → `0`); integers stay exact (large `seed`s);
//!    other floats use Rust's shortest round-trip digits, `Display` or `LowerExp` whichever is
//!    shorter (`0.5`, `1e-7`, `1e300`).
//! 4. Strings are escaped minimally (RFC 8785 style: `\"`, `\\`, `\b\f\n\r\t`, other controls
//!    as `\u00xx`, everything else raw UTF-8), so `"\u0041"` and `"A"` are the same.
//! 5. Top-level fields that are null (null == absent for every optional parameter) or equal to
//!    the documented OpenAI default are removed and listed in `defaults_removed`:
//!    `temperature` 1, `top_p` 1, `n` 1, `presence_penalty` 0, `frequency_penalty` 0,
//!    `stream` false, `logprobs` false (the boolean only: the legacy integer `logprobs: 0` is a
//!    request), `parallel_tool_calls` true, `stop` `[]`.
//! 6. Top-level fields that cannot change the completion are dropped and listed in `dropped`:
//!    - `user`, `safety_identifier`: end-user ids for abuse monitoring;
//!    - `metadata`, `store`: tags for and storage of the completion in the provider's dashboard;
//!    - `service_tier`: latency/price class, not the model's output;
//!    - `prompt_cache_key`: a routing hint for the provider's own prefix cache;
//!    - `stream` (when not false) and `stream_options`: returned as `RequestFacts::stream` and
//!      `include_usage`, because one stored answer is served both as JSON and as SSE
//!      (`replay`): the mode is not part of the key.
//!
//!    Every other field, known or not (`max_tokens`, `max_completion_tokens`, `seed`, `tools`,
//!    `response_format`, vendor extensions such as `top_k`), is part of the key.
//! 7. Opt-in text rules (`NormalizationConfig`), applied only to message text:
//!    `messages[].content` (string, or the `text` of each content part), `prompt` and `input`
//!    (string or array of strings). In this order: `semantic_equivalence` folds curly quotes
//!    (U+2018..U+201B → `'`, U+201C..U+201F → `"`) and removes U+200B, U+2060, U+FEFF;
//!    `whitespace_normalize` collapses runs of Unicode whitespace to one space and trims;
//!    `semantic_equivalence` then trims and collapses a trailing `!!!`/`???` to one mark;
//!    `case_sensitive: false` lowercases (Unicode). With the defaults, text is byte-exact.
//!
//! Canonicalizing canonical bytes again with the same rules returns the same bytes.
//!
//! # Key
//! `{prefix}v{KEY_SCHEMA_VERSION}:{scope}:{hash}` where `scope` is `shared`, `anon` or `t=` and
//! 16 hex of the tenant hash, and `hash` is the first 32 hex characters (128 bits) of the
//! SHA-256 of the canonical bytes: `model_request:v2:t=0123456789abcdef:<32 hex>`. An entry's
//! key (`entry_key_from_hash`) adds the request context: `x=` and 16 hex of the SHA-256 of the
//! method, the path, the keyed query parameters and the keyed headers — everything besides the
//! body that changes the answer — then the rules tag. Not the mode (JSON or SSE): one entry
//! answers both (`replay`).
mod canonical;
mod json;
mod tenant;
mod text;

use sha2::{Digest, Sha256};
use thiserror::Error;

pub use canonical::{canonicalize, Canonical, RequestFacts};
pub use tenant::{TenantIdentity, TenantScope};

/// Bumped whenever the canonical form or the key's parts change, so old entries can never be
/// served for new keys. 2: the request context (method, path, keyed query, keyed headers).
/// 3: no response shape (`json`, `sse`, `sse+usage`): one entry answers every mode.
pub const KEY_SCHEMA_VERSION: u32 = 3;

/// Why a body has no key. Carries no body content (prompts must never reach logs or headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("request body is not valid UTF-8")]
    InvalidUtf8,
    #[error("request body is not valid JSON")]
    InvalidJson,
    #[error("request body nests deeper than the canonicalizer accepts")]
    TooDeep,
    #[error("request body is not a JSON object")]
    NotAnObject,
    #[error("request body has no string `model`")]
    MissingModel,
}

impl KeyError {
    /// Short snake_case reason, for stat labels and header values.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidJson => "invalid_json",
            Self::TooDeep => "too_deep",
            Self::NotAnObject => "not_an_object",
            Self::MissingModel => "missing_model",
        }
    }
}

/// A cache key and its 64-bit hash, computed once per request and used by every level (L1 set
/// and way, coalescing claim), so the key is never hashed twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub text: String,
    /// SipHash of the key text; never 0 (0 marks an empty way in L1 metadata). Not
    /// cryptographic, and need not be: the text already holds a SHA-256 of the body and of the
    /// tenant, and every level compares the full key before it answers, so a collision only
    /// shares a set or a flight claim, never an answer. The same build hashes alike in every
    /// worker, which is all the shared layout needs.
    pub hash: u64,
}

impl CacheKey {
    pub fn new(text: String) -> CacheKey {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        CacheKey { hash: hasher.finish().max(1), text }
    }
}

/// The hash part of the key: the first 32 hex characters of the canonical bytes' SHA-256.
pub fn content_hash(canonical: &Canonical) -> String {
    hex_prefix(&Sha256::digest(&canonical.bytes), 16)
}

/// The cache key; see the module docs for the format.
pub fn cache_key(prefix: &str, tenant: &TenantScope, canonical: &Canonical) -> String {
    key_from_hash(prefix, tenant, &content_hash(canonical))
}

fn key_from_hash(prefix: &str, tenant: &TenantScope, content_hash: &str) -> String {
    format!("{prefix}v{KEY_SCHEMA_VERSION}:{}:{content_hash}", tenant.key_part())
}

/// The shape of answer the client asked for, for the debug header. Not part of the key since
/// schema 3: a hit is rewritten into this shape when it was stored in another (`replay`).
pub fn response_shape(facts: &RequestFacts) -> &'static str {
    match (facts.stream, facts.include_usage) {
        (false, _) => "json",
        (true, false) => "sse",
        (true, true) => "sse+usage",
    }
}

/// Marks keys made under lossy (opt-in) text rules, so an entry stored while they were on is
/// never served after they are turned off (L1 survives configuration changes). Empty for the
/// exact defaults.
pub fn rules_tag(rules: &crate::config::NormalizationConfig) -> String {
    let mut tag = String::new();
    if !rules.case_sensitive {
        tag.push('c');
    }
    if rules.whitespace_normalize {
        tag.push('w');
    }
    if rules.semantic_equivalence {
        tag.push('s');
    }
    if tag.is_empty() {
        tag
    } else {
        format!(":r{tag}")
    }
}

/// The key an entry is stored under for a chat completion without query or keyed headers
/// (benchmarks and tests; the flow builds the context from the request).
pub fn entry_key(
    prefix: &str,
    tenant: &TenantScope,
    canonical: &Canonical,
    rules: &crate::config::NormalizationConfig,
) -> String {
    let context = request_context(&context_input("POST", "/v1/chat/completions", &[], &[]));
    entry_key_from_hash(prefix, tenant, &context, &content_hash(canonical), rules)
}

/// The request context as it enters the key: 16 hex of a SHA-256 over the method, the path
/// (without its query), the keyed query pairs (sorted) and each keyed header's value (absent
/// and empty differ). `describe` is the same input as text, for memoizing.
pub fn request_context(describe: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"aurelis-context\0");
    hasher.update(describe.as_bytes());
    hex_prefix(&hasher.finalize(), 8)
}

/// The unhashed input of `request_context`: NUL-separated, so no part can run into the next.
pub fn context_input(method: &str, path: &str, query: &[&str], headers: &[Option<&str>]) -> String {
    let mut out = String::with_capacity(64);
    out.push_str(method);
    out.push('\0');
    out.push_str(path);
    for pair in query {
        out.push_str("\0q:");
        out.push_str(pair);
    }
    for value in headers {
        match value {
            Some(v) => {
                out.push_str("\0h:");
                out.push_str(v);
            }
            None => out.push_str("\0-"),
        }
    }
    out
}

/// `entry_key` from an already computed `content_hash` (the byte-identical repeat fast path
/// keeps the hash, not the canonical bytes) and request context. Built in one buffer: it runs
/// on every request.
pub fn entry_key_from_hash(
    prefix: &str,
    tenant: &TenantScope,
    context: &str,
    content_hash: &str,
    rules: &crate::config::NormalizationConfig,
) -> String {
    let mut key = String::with_capacity(prefix.len() + content_hash.len() + 68);
    key.push_str(prefix);
    key.push('v');
    key.push_str(&KEY_SCHEMA_VERSION.to_string());
    key.push(':');
    tenant.write_key_part(&mut key);
    key.push_str(":x=");
    key.push_str(context);
    key.push(':');
    key.push_str(content_hash);
    key.push_str(&rules_tag(rules));
    key
}

/// Field names listed per category in `key_info`; the rest are counted. Bounds the header size.
const INFO_MAX_NAMES: usize = 32;

/// Value of the opt-in debug header: schema version, scope kind (never the identity or its
/// hash), and the field lists, e.g. `v=1; scope=tenant; fields=messages,model,temperature;
/// dropped=user; defaults=top_p`. Field names are client-chosen, so only plain names
/// (`[A-Za-z0-9_.-]`, at most 64 bytes) are shown and the others counted (`+2`): the value is
/// always ASCII without CR/LF, and text smuggled into a field name is never echoed.
pub fn key_info(tenant: &TenantScope, canonical: &Canonical) -> String {
    format!(
        "v={KEY_SCHEMA_VERSION}; scope={}; fields={}; dropped={}; defaults={}",
        tenant.kind(),
        name_list(&canonical.fields),
        name_list(&canonical.dropped),
        name_list(&canonical.defaults_removed)
    )
}

fn name_list(names: &[String]) -> String {
    let plain =
        |n: &&String| n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let shown: Vec<&str> = names.iter().filter(plain).take(INFO_MAX_NAMES).map(String::as_str).collect();
    let hidden = names.len() - shown.len();
    let mut out = shown.join(",");
    if hidden > 0 {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("+{hidden}"));
    }
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// Lowercase hex of the first `n` bytes. Nibble by nibble rather than `write!("{:02x}")`:
/// every miss hexes its key, and the formatter cost ~250 instructions a byte (callgrind).
pub(crate) fn hex_prefix(bytes: &[u8], n: usize) -> String {
    let mut out = String::with_capacity(n * 2);
    for b in bytes.iter().take(n) {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out
}

/// The lowercase hex digit of `nibble` (0..=15).
fn hex_digit(nibble: u8) -> char {
    char::from(if nibble < 10 { b'0' + nibble } else { b'a' + (nibble - 10) })
}

#[cfg(test)]
mod entry_key_tests {
    use super::*;
    use crate::config::NormalizationConfig;

    #[test]
    fn hex_prefix_is_lowercase_hex_of_the_first_bytes() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex_prefix(&bytes, bytes.len()), expected);
        assert_eq!(hex_prefix(&[0xab, 0x0f, 0xff], 2), "ab0f");
    }

    #[test]
    fn the_entry_key_is_scope_context_hash_rules() {
        let body = br#"{"model":"m","temperature":0,"stream":true,"messages":[]}"#;
        let rules = NormalizationConfig { case_sensitive: false, ..NormalizationConfig::default() };
        let canonical = canonicalize(body, &rules).unwrap();
        let context = request_context(&context_input("POST", "/v1/chat/completions", &[], &[]));
        for tenant in [TenantScope::Anonymous, TenantScope::Shared, TenantScope::Tenant("0123456789abcdef".into())] {
            let expected =
                format!("model_request:v3:{}:x={context}:{}:rc", tenant.key_part(), content_hash(&canonical));
            assert_eq!(entry_key("model_request:", &tenant, &canonical, &rules), expected);
        }
    }

    #[test]
    fn every_mode_of_one_request_shares_its_key() {
        let rules = NormalizationConfig::default();
        let key = |body: &[u8]| entry_key("p:", &TenantScope::Shared, &canonicalize(body, &rules).unwrap(), &rules);
        let json = key(br#"{"model":"m","temperature":0,"messages":[]}"#);
        assert_eq!(key(br#"{"model":"m","temperature":0,"messages":[],"stream":false}"#), json);
        assert_eq!(key(br#"{"model":"m","temperature":0,"messages":[],"stream":true}"#), json);
        let usage =
            br#"{"model":"m","temperature":0,"messages":[],"stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(key(usage), json);
    }

    #[test]
    fn everything_besides_the_body_that_changes_the_answer_changes_the_context() {
        let base = context_input("POST", "/v1/chat/completions", &[], &[None]);
        let variants = [
            context_input("POST", "/v1/embeddings", &[], &[None]),
            context_input("POST", "/v1/chat/completions", &["api-version=2024-10-21"], &[None]),
            context_input("POST", "/v1/chat/completions", &["api-version=2025-01-01"], &[None]),
            context_input("POST", "/v1/chat/completions", &[], &[Some("org-1")]),
            context_input("POST", "/v1/chat/completions", &[], &[Some("")]),
            context_input("PUT", "/v1/chat/completions", &[], &[None]),
        ];
        let mut seen = std::collections::HashSet::from([request_context(&base)]);
        for v in &variants {
            assert!(seen.insert(request_context(v)), "{v:?}");
        }
    }
}
