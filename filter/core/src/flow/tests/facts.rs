//! The facts each request publishes at its end: one host call per request, with the fields the
//! access log and the control plane read.
use super::*;
use crate::auth::key_sha256;
use crate::flow::facts::{FIELDS, NAMESPACE};
use crate::flow::{FactValue, Facts};
use crate::http::Headers;

const CHAT: &str = "/v1/chat/completions";

#[test]
fn the_field_names_are_pinned() {
    // Users' log queries, the telemetry pipeline and the docs (docs/operations.md) name these.
    assert_eq!(NAMESPACE, "aurelis");
    assert_eq!(
        FIELDS,
        [
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
        ]
    );
}

#[test]
fn a_miss_then_a_hit_publish_their_status_level_and_tokens_once_each() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (miss, _) = exchange(&envoy, &w, 1, &chat("hi"));
    let facts = miss.facts();
    assert_eq!(facts.cache_status, "MISS");
    assert_eq!(facts.cache_level, None);
    assert_eq!(facts.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!((facts.prompt_tokens, facts.completion_tokens), (Some(10), Some(5)), "from the answer's usage");
    assert_eq!(facts.tokens_saved, None);
    assert_eq!(facts.ratelimit, "off");
    assert!(!facts.coalesced);
    assert_eq!(facts.consumer, None, "anonymous clients have no consumer name");
    let scope = facts.tenant_scope.clone().unwrap();
    assert!(scope.len() == 16 && scope.bytes().all(|b| b.is_ascii_hexdigit()), "a hash: {scope}");
    assert!(!scope.contains("127.0.0.1"));

    let (hit, _) = exchange(&envoy, &w, 2, &chat("hi"));
    let facts = hit.facts();
    assert_eq!((facts.cache_status, facts.cache_level), ("HIT", Some("L1")));
    assert_eq!((facts.prompt_tokens, facts.completion_tokens), (Some(10), Some(5)), "from the stored entry");
    assert_eq!(facts.tokens_saved, Some(15));
    assert_eq!(facts.tenant_scope.as_deref(), Some(scope.as_str()));
    assert_eq!(facts.ttfb_ms, None, "not a stream");
}

#[test]
fn a_bypass_names_its_reason_and_a_refusal_its_code() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (host, _) = exchange(&envoy, &w, 1, br#"{"model":"gpt-4o","messages":[]}"#);
    let facts = host.facts();
    assert_eq!((facts.cache_status, facts.bypass_reason), ("BYPASS", Some("non_deterministic")));
    assert_eq!(facts.model.as_deref(), Some("gpt-4o"));
    assert_eq!(facts.refusal, None);

    let keyed = envoy.worker(json!({ "auth": { "consumers": [
        { "name": "team-a", "tenant": "acme", "models": ["gpt-4o-mini"], "key_sha256": [key_sha256("sk-a")] },
    ] } }));
    let (host, upstream) = exchange_at(&envoy, &keyed, 2, CHAT, &chat("hi"), &[]);
    assert!(!upstream);
    let facts = host.facts();
    assert_eq!((facts.cache_status, facts.refusal), ("REFUSED", Some("missing_api_key")));
    assert_eq!(facts.consumer, None);

    let other_model = br#"{"model":"gpt-4o","temperature":0,"messages":[]}"#;
    let (host, _) = exchange_at(&envoy, &keyed, 3, CHAT, other_model, &[("authorization", "Bearer sk-a")]);
    let facts = host.facts();
    assert_eq!((facts.cache_status, facts.refusal), ("REFUSED", Some("model_not_allowed")));
    assert_eq!(facts.consumer.as_deref(), Some("team-a"), "a declared consumer is named");

    let (host, _) = exchange_at(&envoy, &keyed, 4, CHAT, &chat("hi"), &[("authorization", "Bearer sk-a")]);
    let facts = host.facts();
    assert_eq!((facts.cache_status, facts.consumer.as_deref()), ("MISS", Some("team-a")));
    let all = format!("{facts:?}");
    assert!(!all.contains("sk-a") && !all.contains("acme"), "no key, no raw tenant: {all}");
}

#[test]
fn the_limiter_decision_is_published() {
    let envoy = Envoy::new();
    let config =
        json!({ "rate_limit": { "enabled": true, "identity": "route", "requests": { "rate": 1, "per": "minute" } } });
    let w = envoy.worker(config);
    assert_eq!(exchange(&envoy, &w, 1, &chat("a")).0.facts().ratelimit, "allowed");
    let (refused, upstream) = exchange(&envoy, &w, 2, &chat("b"));
    assert!(!upstream);
    let facts = refused.facts();
    assert_eq!((facts.cache_status, facts.ratelimit), ("LIMITED", "refused_requests"));
}

#[test]
fn a_coalesced_waiter_says_so_and_saves_the_leaders_tokens() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (mut leader_host, mut leader, _) = start(&envoy, &w, 1, &chat("hi"), &[]);
    let mut waiter_host = envoy.host();
    let mut waiter = Request::new(2);
    assert_eq!(send(&w, &mut waiter_host, &mut waiter, &chat("hi"), &[]), Action::Pause);
    answer(&w, &mut leader_host, &mut leader, 200, &completion("once"));
    assert!(!leader_host.facts().coalesced);
    w.on_wake(&mut envoy.host());
    let mut host = envoy.host();
    waiter.on_response_headers(&w, &mut host, false);
    waiter.on_response_body(&w, &mut host, 10, true);
    waiter.on_stream_end(&w, &mut host);
    let facts = host.facts();
    assert_eq!((facts.cache_status, facts.cache_level, facts.coalesced), ("HIT", Some("L1"), true));
    assert_eq!(facts.tokens_saved, Some(15));
}

#[test]
fn a_stream_publishes_its_time_to_first_byte_from_the_clock_it_is_given() {
    let mut envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let body = br#"{"model":"gpt-4o-mini","temperature":0,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, mut req, action) = start(&envoy, &w, 1, body, &[]);
    assert_eq!(action, Action::Continue);
    envoy.now += 250;
    let mut host = envoy.host();
    host.response_headers =
        Headers::from(vec![(":status".into(), "200".into()), ("content-type".into(), "text/event-stream".into())]);
    req.on_response_headers(&w, &mut host, false);
    envoy.now += 1_000;
    let mut host = envoy.host();
    host.response_body = b"data: {}\n\n".to_vec();
    req.on_response_body(&w, &mut host, 10, true);
    let facts = host.facts();
    assert_eq!((facts.cache_status, facts.ttfb_ms), ("MISS", Some(250)), "first byte, not the end");
    assert_eq!((facts.prompt_tokens, facts.tokens_saved), (None, None), "a stream without usage: unknown, not 0");
}

#[test]
fn a_stream_that_ends_without_an_answer_still_publishes_once() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let mut host = envoy.host();
    let mut req = Request::new(1);
    host.request_headers = post_headers(&chat("hi"), &[]);
    assert_eq!(req.on_request_headers(&w, &mut host, false), Action::Pause);
    req.on_stream_end(&w, &mut host);
    req.on_stream_end(&w, &mut host);
    assert_eq!(host.facts().cache_status, "NONE", "the client left before its body");
}

#[test]
fn unsafe_names_are_left_out_rather_than_logged() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let body = json!({ "model": "gpt 4o\nFAKE LOG LINE", "temperature": 0, "messages": [] }).to_string();
    let facts = exchange(&envoy, &w, 1, body.as_bytes()).0.facts();
    assert_eq!(facts.model, None);
}

/// A minimal protobuf reader for the test: `Struct` entries as (key, tag of the value, bytes).
fn read_struct(mut bytes: &[u8]) -> Vec<(String, u8, Vec<u8>)> {
    fn take(bytes: &mut &[u8]) -> (u8, Vec<u8>) {
        let tag = bytes[0];
        *bytes = &bytes[1..];
        if tag & 7 == 1 {
            let value = bytes[..8].to_vec();
            *bytes = &bytes[8..];
            return (tag, value);
        }
        if tag & 7 == 0 {
            let value = vec![bytes[0]];
            *bytes = &bytes[1..];
            return (tag, value);
        }
        let (mut len, mut shift, mut used) = (0usize, 0, 0);
        loop {
            let b = bytes[used];
            len |= usize::from(b & 0x7f) << shift;
            used += 1;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let value = bytes[used..used + len].to_vec();
        *bytes = &bytes[used + len..];
        (tag, value)
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (tag, entry) = take(&mut bytes);
        assert_eq!(tag, 0x0a, "Struct.fields");
        let mut entry = entry.as_slice();
        let (key_tag, key) = take(&mut entry);
        let (value_tag, value) = take(&mut entry);
        assert_eq!((key_tag, value_tag), (0x0a, 0x12));
        let mut value = value.as_slice();
        let (kind, inner) = take(&mut value);
        out.push((String::from_utf8(key).unwrap(), kind, inner));
    }
    out
}

#[test]
fn the_struct_encoding_carries_every_published_field_with_its_type() {
    let facts = Facts {
        cache_status: "HIT",
        cache_level: Some("L2"),
        model: Some("m".repeat(200 / 2)),
        prompt_tokens: Some(10),
        tokens_saved: Some(300),
        ratelimit: "allowed",
        coalesced: true,
        ..Facts::default()
    };
    let decoded = read_struct(&facts.to_struct_proto());
    let names: Vec<&str> = decoded.iter().map(|(k, _, _)| k.as_str()).collect();
    let published: Vec<&str> = facts.fields().iter().map(|(k, _)| *k).collect();
    assert_eq!(names, published);
    for ((name, kind, bytes), (_, value)) in decoded.iter().zip(facts.fields()) {
        match value {
            FactValue::Text(s) => assert_eq!((*kind, bytes.as_slice()), (0x1a, s.as_bytes()), "{name}"),
            FactValue::Number(n) => {
                assert_eq!(*kind, 0x11, "{name}");
                assert_eq!(f64::from_le_bytes(bytes.as_slice().try_into().unwrap()), n as f64);
            }
            FactValue::Flag(b) => assert_eq!((*kind, bytes.as_slice()), (0x20, &[u8::from(b)][..]), "{name}"),
        }
    }
}
