//! Safe to expose, through real Envoy: every model call is admitted against its model's limits
//! whatever the cache decides; a client cannot become someone else with a random key or a
//! header; a cached answer never crosses a path or an `api-version`; refusals are OpenAI-shaped.
mod common;
use aurelis_devstack::StackOptions;
use common::*;
use serde_json::json;

const KEY: (&str, &str) = ("authorization", "Bearer sk-team");

/// One consumer (`team`), one restricted consumer (`intern`: gpt-4o only), and a limit of one
/// gpt-4o-mini request a minute for everybody.
fn guarded() -> StackOptions {
    let mut auth = auth_with(&[("team", "acme", "sk-team"), ("intern", "acme", "sk-intern")], false);
    auth["consumers"][1]["models"] = json!(["gpt-4o"]);
    let filter_config = json!({
        "auth": auth,
        "cache": { "max_body_bytes": 1024 },
        "rate_limit": { "enabled": true,
            "overrides": [{ "model": "gpt-4o-mini", "requests": { "rate": 1, "per": "minute" } }] },
    });
    StackOptions { filter_config, ..StackOptions::default() }
}

fn body(prompt: &str) -> Vec<u8> {
    chat(prompt).to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dodge_escapes_the_model_limit() {
    let big = |p: &str| body(&format!("{p}{}", "x".repeat(4096)));
    // (why, content type, body, extra headers)
    type Dodge<'a> = (&'a str, &'a str, Vec<u8>, &'a [(&'a str, &'a str)]);
    let dodges: [Dodge; 4] = [
        ("no-store", "application/json", body("n"), &[("cache-control", "no-store")]),
        ("another content type", "text/plain", body("c"), &[]),
        ("a body too large to cache", "application/json", big("b"), &[]),
        ("a query parameter", "application/json", body("q"), &[]),
    ];
    for (why, content_type, payload, extra) in dodges {
        let stack = start(guarded());
        let path = if why == "a query parameter" { "/v1/chat/completions?x=1" } else { "/v1/chat/completions" };
        let mut headers = vec![KEY];
        headers.extend_from_slice(extra);
        let first = post_raw(&stack, path, content_type, payload.clone(), &headers).await;
        // The mock may refuse a body it cannot read (400): what matters is that it was let through.
        assert!(first.status != 429 && first.cache() == "BYPASS", "{why}: {}", first.status);
        let second = post_raw(&stack, path, content_type, payload, &headers).await;
        assert_eq!(second.status, 429, "{why}: {}", String::from_utf8_lossy(&second.body));
        assert_eq!(stack.mock().request_count(), 1, "{why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_key_per_request_gets_nothing() {
    let stack = start(guarded());
    for i in 0..20 {
        let key = format!("Bearer sk-random-{i}");
        let r = post_json(&stack, &chat(&format!("r{i}")), &[("authorization", key.as_str())]).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    }
    assert_eq!(stack.mock().request_count(), 0);
    assert_eq!(stack.counter("wasmcustom.aurelis_refused_total.reason.invalid_api_key"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_the_consumer_may_not_use_is_a_403() {
    let stack = start(guarded());
    let r = post_json(&stack, &chat("hi"), &[("x-api-key", "sk-intern")]).await;
    assert_eq!(r.status, 403);
    let error = &r.json()["error"];
    assert_eq!((error["code"].as_str(), error["type"].as_str()), (Some("model_not_allowed"), Some("permission_error")));
    assert!(error["message"].as_str().is_some_and(|m| m.contains("gpt-4o-mini")));
    // A routing header does not change what the body asks for.
    let r = post_json(&stack, &chat("hi"), &[("x-api-key", "sk-intern"), ("x-aurelis-model", "gpt-4o")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(stack.mock().request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_api_versions_never_share_an_entry() {
    let stack = start(StackOptions {
        filter_config: json!({ "auth": auth_with(&[("team", "acme", "sk-team")], false) }),
        ..StackOptions::default()
    });
    let ask = |path: &'static str| {
        let stack = &stack;
        async move { post_raw(stack, path, "application/json", body("same body"), &[KEY]).await.cache().to_string() }
    };
    assert_eq!(ask("/v1/chat/completions").await, "MISS");
    assert_eq!(ask("/v1/chat/completions").await, "HIT");
    assert_eq!(ask("/v1/embeddings").await, "MISS", "another path, same body");
    assert_eq!(ask("/v1/chat/completions?api-version=2024-10-21").await, "MISS");
    assert_eq!(ask("/v1/chat/completions?api-version=2025-01-01").await, "MISS");
    assert_eq!(ask("/v1/chat/completions?api-version=2025-01-01").await, "HIT");
    assert_eq!(stack.mock().request_count(), 4);
}
