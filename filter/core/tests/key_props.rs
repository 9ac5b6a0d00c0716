//! Properties of the canonical form over random request bodies: the spelling of a JSON document
//! (member order, whitespace, number notation) never changes its key, and canonical bytes are a
//! fixpoint of canonicalization.
use aurelis_core::config::NormalizationConfig;
use aurelis_core::key::{cache_key, canonicalize, TenantScope};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Strings rich in the characters the text rules touch.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \t\n!?.İΣσς\u{a0}\u{2019}\u{201C}\u{200B}\u{FEFF}\"\\\\/\u{1}é😀]{0,12}"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        (-100i32..100).prop_map(|i| Value::from(f64::from(i) / 8.0)),
        text().prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}|[A-Z\u{e9}]{1,3}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn message() -> impl Strategy<Value = Value> {
    let content = prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(text(), 0..3).prop_map(|parts| {
            Value::Array(parts.into_iter().map(|t| serde_json::json!({"type": "text", "text": t})).collect())
        }),
        Just(Value::Null),
    ];
    ("user|system|assistant", content).prop_map(|(role, content)| serde_json::json!({"role": role, "content": content}))
}

/// A request: a model, optional messages/prompt/input, well-known parameters and random fields.
fn request() -> impl Strategy<Value = Value> {
    let known = prop::collection::btree_map(
        "temperature|top_p|n|seed|stream|stop|user|logprobs|max_tokens|presence_penalty|parallel_tool_calls|tools",
        leaf(),
        0..5,
    );
    (
        "[a-z0-9.-]{1,10}",
        prop::option::of(prop::collection::vec(message(), 0..4)),
        prop::option::of(prop_oneof![
            text().prop_map(Value::String),
            prop::collection::vec(text(), 0..3).prop_map(Value::from)
        ]),
        known,
        prop::collection::btree_map("[a-z_]{1,8}", value(), 0..4),
    )
        .prop_map(|(model, messages, prompt, known, extra)| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            map.extend(known);
            map.insert("model".into(), Value::String(model));
            if let Some(m) = messages {
                map.insert("messages".into(), Value::Array(m));
            }
            if let Some(p) = prompt {
                map.insert("prompt".into(), p.clone());
                map.insert("input".into(), p);
            }
            Value::Object(map)
        })
}

fn rules_of(bits: u8) -> NormalizationConfig {
    NormalizationConfig {
        case_sensitive: bits & 1 == 0,
        whitespace_normalize: bits & 2 != 0,
        semantic_equivalence: bits & 4 != 0,
        parameter_order: None,
    }
}

/// Tiny deterministic generator driving the spelling choices of `spell`.
struct Choices(u64);

impl Choices {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn ws(&mut self) -> &'static str {
        ["", "", " ", "\n", "\t", "\r\n  "][self.next(6) as usize]
    }
}

/// Writes `v` as valid JSON with shuffled members, random whitespace and varied number and
/// string spellings.
fn spell(v: &Value, c: &mut Choices, out: &mut String) {
    out.push_str(c.ws());
    match v {
        Value::Number(n) => out.push_str(&spell_number(n, c)),
        Value::String(s) => spell_string(s, c, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                spell(item, c, out);
            }
            out.push_str(c.ws());
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            for i in (1..entries.len()).rev() {
                entries.swap(i, c.next(i as u64 + 1) as usize);
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(c.ws());
                spell_string(k, c, out);
                out.push_str(c.ws());
                out.push(':');
                spell(item, c, out);
            }
            out.push_str(c.ws());
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
    out.push_str(c.ws());
}

fn spell_number(n: &Number, c: &mut Choices) -> String {
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() < (1 << 53)) {
        return match c.next(4) {
            0 => format!("{i}.0"),
            1 => format!("{i}e0"),
            2 => format!("{}e-1", i128::from(i) * 10),
            _ => i.to_string(),
        };
    }
    match n.as_f64() {
        Some(f) if !n.is_u64() && !n.is_i64() => match c.next(3) {
            0 => format!("{f:e}"),
            1 => format!("{f:?}"),
            _ => n.to_string(),
        },
        _ => n.to_string(),
    }
}

/// A string, with some characters written as `\uXXXX` escapes.
fn spell_string(s: &str, c: &mut Choices, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ch if (ch as u32) < 0x20 || (c.next(4) == 0 && (ch as u32) < 0x10000) => {
                out.push_str(&format!("\\u{:04X}", ch as u32))
            }
            ch => out.push(ch),
        }
    }
    out.push('"');
}

fn key_of(body: &[u8], rules: &NormalizationConfig) -> String {
    let canonical = canonicalize(body, rules).unwrap();
    cache_key("p:", &TenantScope::Anonymous, &canonical)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn spelling_never_changes_the_key(req in request(), seed in any::<u64>(), bits in 0u8..16) {
        let rules = rules_of(bits);
        let reference = serde_json::to_vec(&req).unwrap();
        let mut respelled = String::new();
        spell(&req, &mut Choices(seed), &mut respelled);
        prop_assert_eq!(key_of(&reference, &rules), key_of(respelled.as_bytes(), &rules), "{}", respelled);
    }

    #[test]
    fn canonical_bytes_are_a_fixpoint(req in request(), bits in 0u8..16) {
        let rules = rules_of(bits);
        let once = canonicalize(&serde_json::to_vec(&req).unwrap(), &rules).unwrap();
        let twice = canonicalize(&once.bytes, &rules).unwrap();
        prop_assert_eq!(&once.bytes, &twice.bytes);
        prop_assert_eq!(&once.fields, &twice.fields);
        prop_assert!(twice.dropped.is_empty() && twice.defaults_removed.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), bits in 0u8..16) {
        let _ = canonicalize(&body, &rules_of(bits));
    }
}
