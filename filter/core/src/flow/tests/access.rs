//! Identity, allowed models, limits nobody can dodge, and a key bound to everything that
//! changes the answer.
use super::*;
use crate::auth::key_sha256;

const CHAT: &str = "/v1/chat/completions";

/// Two tenants: `acme` (consumers a1 and a2, a1 restricted to gpt-4o-mini) and `initech` (b).
fn consumers(extra: serde_json::Value) -> serde_json::Value {
    let mut config = json!({ "auth": { "consumers": [
        { "name": "a1", "tenant": "acme", "models": ["gpt-4o-mini"], "key_sha256": [key_sha256("sk-a1")] },
        { "name": "a2", "tenant": "acme", "key_sha256": [key_sha256("sk-a2")] },
        { "name": "b", "tenant": "initech", "key_sha256": [key_sha256("sk-b")] },
    ] } });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    config
}

fn with_model(model: &str, prompt: &str) -> Vec<u8> {
    json!({ "model": model, "temperature": 0, "messages": [{ "role": "user", "content": prompt }] })
        .to_string()
        .into_bytes()
}

fn status(host: &Fake<'_>) -> Option<u16> {
    host.reply().map(|r| r.status)
}

fn error_code(host: &Fake<'_>) -> String {
    let body: serde_json::Value = serde_json::from_slice(&host.reply().unwrap().body).unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[test]
fn no_key_an_unknown_key_or_basic_is_a_401_before_any_work() {
    let envoy = Envoy::new();
    let w = envoy.worker(consumers(json!({})));
    let writes = envoy.store.writes();
    for (i, extra) in [
        &[][..],
        &[("authorization", "Bearer sk-random")],
        &[("authorization", "Basic YTpi")],
        &[("x-api-key", "sk-a1"), ("api-key", "sk-b")],
    ]
    .into_iter()
    .enumerate()
    {
        let (host, upstream) = exchange_at(&envoy, &w, i as u32, CHAT, &chat("hi"), extra);
        assert!(!upstream, "{extra:?}");
        assert_eq!(status(&host), Some(401), "{extra:?}");
        assert!(["missing_api_key", "invalid_api_key", "unsupported_authorization_scheme", "ambiguous_api_key"]
            .contains(&error_code(&host).as_str()));
        assert!(host.dispatched().is_empty());
    }
    assert_eq!(envoy.store.writes(), writes, "no cache, flight or limit work");
    assert_eq!(flushed(&envoy, &w).stat("aurelis_refused_total.reason.invalid_api_key"), 1);
}

#[test]
fn the_config_default_refuses_everybody() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({ "auth": {} }));
    let (host, upstream) = exchange_at(&envoy, &w, 1, CHAT, &chat("hi"), &[]);
    assert!(!upstream);
    assert_eq!(status(&host), Some(401));
}

#[test]
fn tenants_never_share_and_every_key_form_is_one_consumer() {
    let envoy = Envoy::new();
    let w = envoy.worker(consumers(json!({})));
    let ask = |stream, extra: &[(&str, &str)]| exchange_at(&envoy, &w, stream, CHAT, &chat("hi"), extra).1;
    assert!(ask(1, &[("authorization", "Bearer sk-a2")]), "first ask: MISS");
    assert!(!ask(2, &[("x-api-key", "sk-a2")]), "same consumer, x-api-key: HIT");
    assert!(!ask(3, &[("api-key", "sk-a1")]), "same tenant, other consumer: HIT");
    assert!(ask(4, &[("api-key", "sk-b")]), "other tenant: MISS");
    // A client-sent tenant or routing header changes nothing.
    assert!(!ask(5, &[("api-key", "sk-b"), ("x-tenant-id", "acme"), ("x-aurelis-tenant", "acme")]));
}

#[test]
fn anonymous_clients_are_scoped_per_address_unless_shared() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({ "auth": { "anonymous": {} } }));
    let ask = |stream, client: &str| {
        let mut host = envoy.host();
        host.client = client.into();
        let mut req = Request::new(stream);
        send(&w, &mut host, &mut req, &chat("hi"), &[]) == Action::Continue
    };
    assert!(ask(1, "10.0.0.1"));
    assert!(ask(2, "10.0.0.2"), "another client does not see the first one's answer");
}

#[test]
fn a_model_the_consumer_may_not_use_is_a_403_cached_or_not() {
    let envoy = Envoy::new();
    let w = envoy.worker(consumers(json!({})));
    let key = [("authorization", "Bearer sk-a1")];
    let (host, upstream) = exchange_at(&envoy, &w, 1, CHAT, &with_model("gpt-4o", "hi"), &key);
    assert!(!upstream);
    assert_eq!((status(&host), error_code(&host).as_str()), (Some(403), "model_not_allowed"));
    let no_store = [("authorization", "Bearer sk-a1"), ("cache-control", "no-store")];
    let (host, upstream) = exchange_at(&envoy, &w, 2, CHAT, &with_model("gpt-4o", "hi"), &no_store);
    assert!(!upstream);
    assert_eq!(status(&host), Some(403));
    let (_, upstream) = exchange_at(&envoy, &w, 3, CHAT, &with_model("gpt-4o-mini", "hi"), &key);
    assert!(upstream);
}

/// The dodges of a per-model limit: every one of these requests is admitted with its model.
#[test]
fn bypassed_requests_are_limited_with_their_model() {
    let dodges: [(&str, &[(&str, &str)]); 4] = [
        ("no-store", &[("cache-control", "no-store")]),
        ("other content type", &[("content-type", "text/plain")]),
        ("no-cache", &[("cache-control", "no-cache")]),
        ("query", &[]),
    ];
    for (why, extra) in dodges {
        let envoy = Envoy::new();
        let config = json!({ "rate_limit": { "enabled": true, "overrides": [
            { "model": "gpt-4o", "requests": { "rate": 1, "per": "minute" } }
        ] } });
        let w = envoy.worker(consumers(config));
        let path = if why == "query" { "/v1/chat/completions?debug=1" } else { CHAT };
        let mut headers = vec![("authorization", "Bearer sk-b")];
        headers.extend_from_slice(extra);
        let first = exchange_at(&envoy, &w, 1, path, &with_model("gpt-4o", "p1"), &headers);
        assert!(first.1, "{why}: the first is admitted");
        let second = exchange_at(&envoy, &w, 2, path, &with_model("gpt-4o", "p2"), &headers);
        assert_eq!(status(&second.0), Some(429), "{why}: the second is limited");
    }
}

#[test]
fn a_body_over_the_cache_limit_is_limited_and_one_over_the_request_limit_is_a_413() {
    let envoy = Envoy::new();
    let config = json!({ "max_request_body_bytes": 4096, "cache": { "max_body_bytes": 512 },
        "rate_limit": { "enabled": true, "overrides": [{ "model": "gpt-4o", "requests": { "rate": 1, "per": "minute" } }] } });
    let w = envoy.worker(consumers(config));
    let key = [("authorization", "Bearer sk-b")];
    let big = |p: &str| with_model("gpt-4o", &format!("{p}{}", "x".repeat(1000)));
    assert!(exchange_at(&envoy, &w, 1, CHAT, &big("a"), &key).1);
    assert_eq!(status(&exchange_at(&envoy, &w, 2, CHAT, &big("b"), &key).0), Some(429));
    let huge = with_model("gpt-4o-mini", &"x".repeat(5000));
    let (host, upstream) = exchange_at(&envoy, &w, 3, CHAT, &huge, &key);
    assert!(!upstream);
    assert_eq!((status(&host), error_code(&host).as_str()), (Some(413), "request_too_large"));
}

#[test]
fn a_compressed_body_is_a_415() {
    let envoy = Envoy::new();
    let w = envoy.worker(consumers(json!({})));
    let extra = [("authorization", "Bearer sk-b"), ("content-encoding", "gzip")];
    let (host, upstream) = exchange_at(&envoy, &w, 1, CHAT, &chat("hi"), &extra);
    assert!(!upstream);
    assert_eq!(status(&host), Some(415));
}

#[test]
fn path_query_and_keyed_headers_never_share_an_entry() {
    let envoy = Envoy::new();
    let w = envoy.worker(consumers(json!({})));
    let key = ("authorization", "Bearer sk-b");
    let ask = |stream, path: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![key];
        headers.extend_from_slice(extra);
        exchange_at(&envoy, &w, stream, path, &chat("hi"), &headers).1
    };
    assert!(ask(1, CHAT, &[]));
    assert!(!ask(2, CHAT, &[]), "the same request hits");
    assert!(ask(3, "/v1/embeddings", &[]), "another path");
    assert!(ask(4, "/v1/chat/completions?api-version=2024-10-21", &[]), "an api-version");
    assert!(ask(5, "/v1/chat/completions?api-version=2025-01-01", &[]), "another api-version");
    assert!(!ask(6, "/v1/chat/completions?api-version=2025-01-01", &[]), "the same api-version hits");
    assert!(ask(7, CHAT, &[("openai-organization", "org-1")]), "a keyed header");
    assert!(ask(8, "/v1/chat/completions?trace=1", &[]), "other query parameters bypass");
    assert!(ask(9, "/v1/chat/completions?trace=1", &[]), "... every time");
}

#[test]
fn a_stream_that_is_not_a_boolean_bypasses() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let body = br#"{"model":"gpt-4o-mini","temperature":0,"stream":"yes","messages":[]}"#;
    let (host, upstream) = exchange(&envoy, &w, 1, body);
    assert!(upstream);
    assert_eq!(host.response_header("x-aurelis-cache-reason"), Some("stream_not_boolean"));
}

#[test]
fn embeddings_are_cached_without_temperature() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let body = br#"{"model":"text-embedding-3-small","input":"hello"}"#;
    assert!(exchange_at(&envoy, &w, 1, "/v1/embeddings", body, &[]).1);
    assert!(!exchange_at(&envoy, &w, 2, "/v1/embeddings", body, &[]).1, "HIT");
}

#[test]
fn a_json_answer_to_a_streaming_request_is_stored_and_replayed_as_a_stream() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let body = br#"{"model":"gpt-4o-mini","temperature":0,"stream":true,"messages":[]}"#;
    // The upstream answers JSON to a streaming request (`exchange` answers JSON).
    assert!(exchange(&envoy, &w, 1, body).1);
    let (hit, upstream) = exchange(&envoy, &w, 2, body);
    assert!(!upstream, "stored: the key names no mode");
    let reply = hit.reply().unwrap();
    assert!(header(reply, "content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    assert!(reply.body.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(flushed(&envoy, &w).stat("aurelis_cache_replays_total.kind.json_to_sse"), 1);
}

#[test]
fn a_verified_jwt_is_the_identity() {
    let envoy = Envoy::new();
    let w = envoy.worker(consumers(json!({ "auth": { "jwt": { "tenant_claim": "org" }, "consumers": [] } })));
    let ask = |stream, sub: Option<&str>, org: &str| {
        let mut host = envoy.host();
        if let Some(sub) = sub {
            host.metadata.push(("envoy.filters.http.jwt_authn.aurelis_jwt.sub".into(), sub.into()));
            host.metadata.push(("envoy.filters.http.jwt_authn.aurelis_jwt.org".into(), org.into()));
        }
        let mut req = Request::new(stream);
        host.request_headers = post_headers(&chat("hi"), &[("authorization", "Bearer eyJhbGciOi.x.y")]);
        host.request_body = chat("hi");
        let action = req.on_request_headers(&w, &mut host, false);
        if host.reply().is_some() {
            return host.reply().map(|r| r.status);
        }
        assert_eq!(action, Action::Pause);
        (req.on_request_body(&w, &mut host, chat("hi").len(), true) == Action::Continue).then_some(0)
    };
    assert_eq!(ask(1, None, ""), Some(401), "a token jwt_authn did not verify is refused");
    assert_eq!(ask(2, Some("alice"), "acme"), Some(0), "verified: goes upstream");
}

#[test]
fn a_closed_failure_policy_refuses_when_limits_cannot_be_checked() {
    let envoy = Envoy::new();
    let config = json!({ "rate_limit": { "enabled": true, "identity": "route", "failure_policy": "closed",
        "requests": { "rate": 5 } } });
    let w = envoy.worker(config);
    envoy.store.fail_reads(true);
    let (host, upstream) = exchange(&envoy, &w, 1, &chat("hi"));
    assert!(!upstream);
    assert_eq!((status(&host), error_code(&host).as_str()), (Some(503), "rate_limit_unavailable"));
}
