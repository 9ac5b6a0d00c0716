//! Errors, bounds, the key format, the facts and the debug header.
use std::time::{Duration, Instant};

use aurelis_core::config::NormalizationConfig;
use aurelis_core::key::{cache_key, canonicalize, key_info, KeyError, TenantScope, KEY_SCHEMA_VERSION};

fn canon(body: &str) -> Result<aurelis_core::key::Canonical, KeyError> {
    canonicalize(body.as_bytes(), &NormalizationConfig::default())
}

#[test]
fn deep_nesting_is_refused_quickly() {
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let unclosed = open.repeat(100_000);
        let balanced = format!("{{\"model\":\"m\",\"x\":{}1{}}}", open.repeat(100_000), close.repeat(100_000));
        for body in [unclosed, balanced] {
            let start = Instant::now();
            assert_eq!(canonicalize(body.as_bytes(), &NormalizationConfig::default()).unwrap_err(), KeyError::TooDeep);
            assert!(start.elapsed() < Duration::from_millis(200), "{:?}", start.elapsed());
        }
    }
}

#[test]
fn moderate_nesting_is_accepted() {
    let body = format!("{{\"model\":\"m\",\"x\":{}1{}}}", "[".repeat(90), "]".repeat(90));
    assert!(canon(&body).is_ok());
}

#[test]
fn errors_have_reasons_and_no_content() {
    let cases: [(&[u8], KeyError, &str); 7] = [
        (b"\xff{}", KeyError::InvalidUtf8, "invalid_utf8"),
        (b"{\"model\":\"secret prompt", KeyError::InvalidJson, "invalid_json"),
        (b"{\"model\":\"m\"} trailing", KeyError::InvalidJson, "invalid_json"),
        (b"[\"secret prompt\"]", KeyError::NotAnObject, "not_an_object"),
        (b"{\"messages\":[\"secret prompt\"]}", KeyError::MissingModel, "missing_model"),
        (b"{\"model\":7}", KeyError::MissingModel, "missing_model"),
        (b"{\"model\":\"\"}", KeyError::MissingModel, "missing_model"),
    ];
    for (body, expected, reason) in cases {
        let err = canonicalize(body, &NormalizationConfig::default()).unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(err.reason(), reason);
        assert!(!err.to_string().contains("secret") && !format!("{err:?}").contains("secret"));
    }
}

#[test]
fn key_has_the_documented_shape() {
    let c = canon(r#"{"model":"m","seed":1}"#).unwrap();
    let anon = cache_key("model_request:", &TenantScope::Anonymous, &c);
    let prefix = format!("model_request:v{KEY_SCHEMA_VERSION}:anon:");
    let hash = anon.strip_prefix(&prefix).unwrap();
    assert_eq!(hash.len(), 32);
    assert!(hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(cache_key("p:", &TenantScope::Shared, &c).starts_with("p:v3:shared:"));
    let t = cache_key("p:", &TenantScope::Tenant("0123456789abcdef".into()), &c);
    assert!(t.starts_with("p:v3:t=0123456789abcdef:"));
    assert!(t.ends_with(hash));
}

#[test]
fn canonical_bytes_and_lists() {
    let c = canon(
        r#"{ "user":"u", "model":"m", "temperature":1.0, "seed":12345678901234567890, "stop":null,
             "stream":true, "stream_options":{"include_usage":true}, "n":1, "max_tokens":1e2,
             "messages":[{"role":"user","content":"  Hi  "}] }"#,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(c.bytes.clone()).unwrap(),
        r#"{"max_tokens":100,"messages":[{"content":"  Hi  ","role":"user"}],"model":"m","seed":12345678901234567890}"#
    );
    assert_eq!(c.fields, ["max_tokens", "messages", "model", "seed"]);
    assert_eq!(c.dropped, ["stream", "stream_options", "user"]);
    assert_eq!(c.defaults_removed, ["n", "stop", "temperature"]);
    let f = &c.facts;
    assert_eq!(f.model.as_deref(), Some("m"));
    assert!(f.stream && f.include_usage && f.has_seed);
    assert_eq!((f.n, f.temperature, f.max_tokens), (Some(1), Some(1.0), Some(100)));
}

#[test]
fn max_completion_tokens_is_preferred_for_the_facts() {
    let c = canon(r#"{"model":"m","max_tokens":5,"max_completion_tokens":7,"temperature":0}"#).unwrap();
    assert_eq!(c.facts.max_tokens, Some(7));
    assert_eq!(c.facts.temperature, Some(0.0));
    assert!(!c.facts.stream && !c.facts.has_seed);
}

#[test]
fn key_info_is_a_safe_header_value_without_prompts_or_identity() {
    let c = canon(
        "{\"model\":\"m\",\"user\":\"u\",\"top_p\":1,\"messages\":[{\"role\":\"user\",\"content\":\"secret\"}],\
         \"secret\\r\\nX-Evil: 1\":1,\"s\u{e9}cret\":2}",
    )
    .unwrap();
    let info = key_info(&TenantScope::Tenant("0123456789abcdef".into()), &c);
    assert_eq!(info, "v=3; scope=tenant; fields=messages,model,+2; dropped=user; defaults=top_p");
    assert!(info.bytes().all(|b| b.is_ascii() && b != b'\r' && b != b'\n'));
    assert!(!info.contains("0123456789abcdef"));
    let debug = format!("{c:?}");
    assert!(!debug.contains("secret\""), "{debug}");
    let empty = canon(r#"{"model":"m"}"#).unwrap();
    assert_eq!(key_info(&TenantScope::Anonymous, &empty), "v=3; scope=anon; fields=model; dropped=-; defaults=-");
}

#[test]
fn many_fields_are_bounded_in_key_info() {
    let extra: Vec<String> = (0..100).map(|i| format!("\"f{i:03}\":1")).collect();
    let c = canon(&format!("{{\"model\":\"m\",{}}}", extra.join(","))).unwrap();
    let info = key_info(&TenantScope::Shared, &c);
    assert!(info.contains(",+69;"), "{info}");
    assert!(info.len() < 400);
}
