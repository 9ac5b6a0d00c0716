//! What keeps one client from poisoning another's entries, through the router against a real
//! Redis: the namespace comes from the token (a request naming another is refused and counted),
//! and a sealed entry PUT with a future stored_at is stored with stored_at clamped to now.
mod support;

use aurelis_cache_service::api::{Access, TokenTable};
use aurelis_cache_service::store::layout::unix_ms;
use aurelis_cache_service::store::Target;
use aurelis_core::cache::sealed::{self, SigningKey};
use aurelis_core::cache::Entry;
use aurelis_core::gate::BodyFormat;
use axum::http::StatusCode;
use std::sync::Arc;
use std::time::SystemTime;
use support::*;

const TOKEN_A: &str = "fleet-a-token-0123456789abcdef0123456789";
const TOKEN_B: &str = "fleet-b-token-0123456789abcdef0123456789";

fn with_tokens(target: &Target) -> aurelis_cache_service::api::AppState {
    let mut table = TokenTable::default();
    table.bind_token("fleet-a", TOKEN_A).unwrap();
    table.bind_token("fleet-b", TOKEN_B).unwrap();
    let mut state = app(target);
    state.access = Access::Tokens(Arc::new(table));
    state
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn request(method: &str, token: &str, namespace: Option<&str>, body: &[u8]) -> axum::http::Request<axum::body::Body> {
    let mut b = axum::http::Request::builder().method(method).uri("/v1/entries/k");
    let (name, value) = bearer(token);
    b = b.header(name, value);
    if let Some(ns) = namespace {
        b = b.header("x-aurelis-namespace", ns);
    }
    b.body(axum::body::Body::from(body.to_vec())).unwrap()
}

#[tokio::test]
async fn the_token_decides_the_namespace_and_another_is_refused() {
    let redis = RedisServer::start(&[]);
    let target = Target::Single { url: redis.url(), password: None };
    let state = with_tokens(&target);
    let mut raw = Raw::connect(&target).await;

    // Fleet A writes without naming a namespace: it lands in A's.
    assert_eq!(call(&state, request("PUT", TOKEN_A, None, b"a's answer")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(raw.get("fleet-a:e:k").await.as_deref(), Some(&b"\x00a's answer"[..]));
    // Naming its own namespace is fine.
    assert_eq!(call(&state, request("GET", TOKEN_A, Some("fleet-a"), b"")).await.body, b"a's answer");
    // B sees only its own namespace: the same key is a miss there.
    assert_eq!(call(&state, request("GET", TOKEN_B, None, b"")).await.status, StatusCode::NOT_FOUND);

    // B asking for A's namespace, to read, overwrite or delete: 403, and nothing changes.
    for method in ["GET", "PUT", "DELETE"] {
        let reply = call(&state, request(method, TOKEN_B, Some("fleet-a"), b"poisoned")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method}");
        assert!(reply.message().contains("not bound to the namespace"), "{method}: {}", reply.message());
    }
    // Nor the default namespace, which no token here is bound to.
    let reply = call(&state, request("PUT", TOKEN_A, Some("aurelis"), b"poisoned")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(raw.get("fleet-a:e:k").await.as_deref(), Some(&b"\x00a's answer"[..]), "A's entry untouched");
    assert_eq!(raw.get("aurelis:e:k").await, None);
    assert_eq!(raw.get("fleet-b:e:k").await, None, "a refused PUT writes nowhere");

    let text = state.metrics.render();
    for (op, count) in [("get", 1), ("put", 2), ("delete", 1)] {
        let line = format!("aurelis_l2_operations_total{{op=\"{op}\",outcome=\"forbidden\"}} {count}");
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    // Without a token: 401, before the namespace is even looked at.
    let reply = call(&state, put("/v1/entries/k", &[("x-aurelis-namespace", "fleet-a")], b"x".to_vec())).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

fn sealed_entry(stored_at_ms: u64) -> Vec<u8> {
    let entry = Entry {
        key: "k".into(),
        stored_at_ms,
        status: 200,
        content_type: "application/json".into(),
        format: BodyFormat::Json,
        prompt_tokens: 1,
        completion_tokens: 2,
        body: b"{}".to_vec(),
    };
    let key = SigningKey::from_env_value(Some("a-signing-key-of-at-least-32-bytes")).unwrap().unwrap();
    sealed::seal(&key, "k", &entry.encode())
}

#[tokio::test]
async fn a_future_stored_at_is_clamped_to_now_on_put() {
    let redis = RedisServer::start(&[]);
    let target = Target::Single { url: redis.url(), password: None };
    let state = with_tokens(&target);
    let now = unix_ms(SystemTime::now());

    let future = sealed_entry(now + 3_600_000);
    assert_eq!(call(&state, request("PUT", TOKEN_A, None, &future)).await.status, StatusCode::NO_CONTENT);
    let stored = call(&state, request("GET", TOKEN_A, None, b"")).await.body;
    let stored_at = sealed::stored_at(&stored).unwrap();
    let after = unix_ms(SystemTime::now());
    assert!((now..=after).contains(&stored_at), "stored_at {stored_at} not clamped into {now}..={after}");
    assert_eq!(stored.len(), future.len(), "only stored_at changed");

    // A present (or slightly skewed) date and values that are not entries are stored as sent.
    for value in [sealed_entry(now - 5_000), sealed_entry(now + 200), b"opaque".to_vec()] {
        assert_eq!(call(&state, request("PUT", TOKEN_A, None, &value)).await.status, StatusCode::NO_CONTENT);
        assert_eq!(call(&state, request("GET", TOKEN_A, None, b"")).await.body, value);
    }
    let text = state.metrics.render();
    assert!(text.contains(r#"aurelis_l2_operations_total{op="put",outcome="clamped"} 1"#), "{text}");
    assert!(text.contains(r#"aurelis_l2_operations_total{op="put",outcome="stored"} 3"#), "{text}");
}
