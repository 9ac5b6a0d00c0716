//! Body → canonical form, plus the facts the cacheability gate needs from the same parse.
//! The rules are listed in the `key` module docs; this file implements them in that order.
use std::fmt;

use serde_json::{Map, Value};

use super::json::{canonicalize_numbers, exceeds_depth, write_value, MAX_DEPTH};
use super::{text, KeyError};
use crate::config::NormalizationConfig;

/// Facts the gate needs, extracted during the same parse (the body is never parsed twice).
/// Numbers are read after canonicalization, so `"n": 2.0` is `Some(2)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestFacts {
    pub model: Option<String>,
    pub stream: bool,
    /// `stream` is present and neither a boolean nor null (the gate bypasses it).
    pub stream_not_boolean: bool,
    /// `stream_options.include_usage` is `true`.
    pub include_usage: bool,
    pub n: Option<u64>,
    pub temperature: Option<f64>,
    /// `seed` is present and not null.
    pub has_seed: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
}

/// The canonical form of a request body. `Debug` shows sizes and field names only: `bytes`
/// holds prompt text.
#[derive(Clone, PartialEq)]
pub struct Canonical {
    /// Canonical JSON; the cache key hashes exactly these bytes.
    pub bytes: Vec<u8>,
    pub facts: RequestFacts,
    /// Top-level fields that went into the key, sorted.
    pub fields: Vec<String>,
    /// Top-level fields dropped because they cannot change the completion, sorted.
    pub dropped: Vec<String>,
    /// Top-level fields removed because they were null or equal to the API default, sorted.
    pub defaults_removed: Vec<String>,
}

impl fmt::Debug for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Canonical")
            .field("bytes_len", &self.bytes.len())
            .field("facts", &self.facts)
            .field("fields", &self.fields)
            .field("dropped", &self.dropped)
            .field("defaults_removed", &self.defaults_removed)
            .finish()
    }
}

/// Fields that cannot change the completion (reasons in the module docs). `stream` is handled
/// apart: `false` is a default, anything else is dropped.
const DROPPED: [&str; 7] =
    ["metadata", "prompt_cache_key", "safety_identifier", "service_tier", "store", "stream_options", "user"];

/// Canonicalizes a request body; see the `key` module docs for the rules.
pub fn canonicalize(body: &[u8], rules: &NormalizationConfig) -> Result<Canonical, KeyError> {
    let text = std::str::from_utf8(body).map_err(|_| KeyError::InvalidUtf8)?;
    if exceeds_depth(text.as_bytes(), MAX_DEPTH) {
        return Err(KeyError::TooDeep);
    }
    // The parser's message is discarded: it can quote parts of the body.
    let value: Value = serde_json::from_str(text).map_err(|_| KeyError::InvalidJson)?;
    let Value::Object(mut map) = value else {
        return Err(KeyError::NotAnObject);
    };
    if map.get("model").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(KeyError::MissingModel);
    }
    map.values_mut().for_each(canonicalize_numbers);
    let facts = facts_of(&map);

    let mut dropped = Vec::new();
    let mut defaults_removed = Vec::new();
    map.retain(|name, value| match fate(name, value) {
        Fate::Keep => true,
        Fate::Drop => {
            dropped.push(name.clone());
            false
        }
        Fate::Default => {
            defaults_removed.push(name.clone());
            false
        }
    });
    if text::any_rule(rules) {
        apply_text_rules(&mut map, rules);
    }

    let mut fields: Vec<String> = map.keys().cloned().collect();
    fields.sort();
    dropped.sort();
    defaults_removed.sort();
    let mut bytes = Vec::with_capacity(body.len());
    write_value(&mut bytes, &Value::Object(map));
    Ok(Canonical { bytes, facts, fields, dropped, defaults_removed })
}

fn facts_of(map: &Map<String, Value>) -> RequestFacts {
    let u64_of = |name: &str| map.get(name).and_then(Value::as_u64);
    RequestFacts {
        model: map.get("model").and_then(Value::as_str).map(str::to_owned),
        stream: map.get("stream").and_then(Value::as_bool).unwrap_or(false),
        stream_not_boolean: map.get("stream").is_some_and(|v| !v.is_null() && !v.is_boolean()),
        include_usage: map
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        n: u64_of("n"),
        temperature: map.get("temperature").and_then(Value::as_f64),
        has_seed: map.get("seed").is_some_and(|v| !v.is_null()),
        max_tokens: u64_of("max_completion_tokens").or_else(|| u64_of("max_tokens")),
    }
}

enum Fate {
    Keep,
    Drop,
    Default,
}

/// What happens to one top-level field. Defaults are compared after number canonicalization,
/// so `1`, `1.0` and `1e0` are all the default `1`; a value of the wrong type is kept (the
/// upstream will reject it, and it must not share a key with a valid request).
fn fate(name: &str, value: &Value) -> Fate {
    if DROPPED.contains(&name) {
        return Fate::Drop;
    }
    if name == "model" {
        return Fate::Keep;
    }
    let is_default = match name {
        _ if value.is_null() => true,
        "stream" => {
            return if value == &Value::Bool(false) { Fate::Default } else { Fate::Drop };
        }
        "temperature" | "top_p" | "n" => value.as_f64() == Some(1.0),
        "presence_penalty" | "frequency_penalty" => value.as_f64() == Some(0.0),
        "logprobs" => value == &Value::Bool(false),
        "parallel_tool_calls" => value == &Value::Bool(true),
        "stop" => value.as_array().is_some_and(Vec::is_empty),
        _ => false,
    };
    if is_default {
        Fate::Default
    } else {
        Fate::Keep
    }
}

/// Message text only: `messages[].content` (a string, or the `text` of each content part),
/// `prompt` and `input` (a string or an array of strings; token arrays are left alone).
fn apply_text_rules(map: &mut Map<String, Value>, rules: &NormalizationConfig) {
    if let Some(Value::Array(messages)) = map.get_mut("messages") {
        for message in messages.iter_mut() {
            match message.get_mut("content") {
                Some(Value::String(s)) => *s = text::normalize(s, rules),
                Some(Value::Array(parts)) => {
                    for part in parts.iter_mut() {
                        if let Some(Value::String(s)) = part.get_mut("text") {
                            *s = text::normalize(s, rules);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for name in ["prompt", "input"] {
        match map.get_mut(name) {
            Some(Value::String(s)) => *s = text::normalize(s, rules),
            Some(Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::String(s) = item {
                        *s = text::normalize(s, rules);
                    }
                }
            }
            _ => {}
        }
    }
}
