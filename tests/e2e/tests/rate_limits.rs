//! Rate limits through real Envoy: exact across workers, token reservations settled against
//! real usage, OpenAI-style answers and headers.
mod common;
use aurelis_devstack::StackOptions;
use common::*;
use serde_json::json;

/// Consumers `one`, `another`, `small-team` and `big-team`, and anonymous clients.
fn limited(rate_limit: serde_json::Value) -> StackOptions {
    let auth = auth_with(
        &[
            ("one", "one", "sk-one-tenant"),
            ("another", "another", "sk-another"),
            ("small-team", "small", "sk-small"),
            ("big-team", "big", "sk-big"),
        ],
        true,
    );
    let filter_config = json!({ "auth": auth, "rate_limit": rate_limit });
    StackOptions { envoy_workers: 2, filter_config, ..StackOptions::default() }
}

/// A request the cache will not answer (sampling), so every one reaches the limiter and upstream.
fn sampled(prompt: &str) -> serde_json::Value {
    json!({ "model": "gpt-4o-mini", "temperature": 0.7, "messages": [{ "role": "user", "content": prompt }] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_limit_is_admitted_across_workers() {
    // A burst of 50 refilled at one a minute: nothing refills while the test runs, however slow.
    let stack = start(limited(json!({ "enabled": true, "requests": { "rate": 1, "per": "minute", "burst": 50 } })));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (url, body) = (stack.url("/v1/chat/completions"), sampled(&format!("burst {i}")).to_string());
        tasks.push(tokio::spawn(async move {
            // One client per request: fresh connections spread over both Envoy workers.
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("authorization", "Bearer sk-one-tenant")
                .body(body)
                .send()
                .await;
            match r {
                Ok(r) => (r.status().as_u16(), r.headers().clone(), r.text().await.unwrap_or_default()),
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut admitted = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, headers, body) = t.await.unwrap_or_else(|e| panic!("{e}"));
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(h("x-ratelimit-limit-requests").as_deref(), Some("50"));
        match status {
            200 => admitted += 1,
            429 => {
                refused += 1;
                assert!(h("retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)));
                assert_eq!(h("x-ratelimit-remaining-requests").as_deref(), Some("0"));
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                assert_eq!(v["error"]["type"], "rate_limit_exceeded", "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!((admitted, refused), (50, 150));
    assert_eq!(stack.mock().request_count(), 50, "refused requests never reach the provider");
    assert_eq!(stack.counter("wasmcustom.aurelis_ratelimited_total.reason.requests"), 150);
    // Another API key has its own budget.
    let other = post_json(&stack, &sampled("other"), &[("authorization", "Bearer sk-another")]).await;
    assert_eq!(other.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reservations_are_refused_up_front_and_refunded_after() {
    let stack = start(limited(json!({ "enabled": true, "tokens_per_minute": 1000 })));
    let big = json!({ "model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 5000, "messages": [{ "role": "user", "content": "x" }] });
    // 5000 tokens can never fit 1000/min: admitted only on a full bucket (then in debt) ...
    let small = |n: u64| json!({ "model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": n, "messages": [{ "role": "user", "content": "hi" }] });
    let first = post_json(&stack, &small(600), &[]).await;
    assert_eq!(first.status, 200);
    let remaining_after_reserve: u64 =
        first.header("x-ratelimit-remaining-tokens").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(remaining_after_reserve <= 400, "600 + prompt reserved: {remaining_after_reserve}");
    // The answer used far fewer than 600 tokens: the rest came back.
    let second = post_json(&stack, &small(600), &[]).await;
    assert_eq!(second.status, 200, "refund made room: {:?}", String::from_utf8_lossy(&second.body));
    let third = post_json(&stack, &big, &[]).await;
    assert_eq!(third.status, 429, "a reservation that does not fit is refused before the provider sees it");
    assert_eq!(third.header("x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(stack.mock().request_count(), 2);
    assert!(stack.counter("wasmcustom.aurelis_ratelimit_tokens_total.kind.refunded") > 0);
    assert_eq!(stack.counter("wasmcustom.aurelis_ratelimited_total.reason.tokens"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_answers_carry_ratelimit_headers_even_streamed_and_hits_spend_no_tokens() {
    let stack = start(limited(
        json!({ "enabled": true, "requests": { "rate": 100, "per": "minute" }, "tokens_per_minute": 100000 }),
    ));
    let stream = json!({ "model": "gpt-4o-mini", "temperature": 0, "stream": true, "messages": [{ "role": "user", "content": "s" }] });
    let r = post_json(&stack, &stream, &[]).await;
    assert_eq!(r.status, 200);
    for h in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ] {
        assert!(r.header(h).is_some(), "missing {h} on a streamed answer");
    }
    let request = chat("cached under limits");
    let miss = post_json(&stack, &request, &[]).await;
    let hit = post_json(&stack, &request, &[]).await;
    assert_eq!(hit.cache(), "HIT");
    let tokens = |r: &Reply| r.header("x-ratelimit-remaining-tokens").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let requests =
        |r: &Reply| r.header("x-ratelimit-remaining-requests").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    assert!(tokens(&hit) >= tokens(&miss), "a hit spends no tokens");
    assert_eq!(requests(&hit), requests(&miss) - 1, "a hit counts as a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_overrides_apply() {
    let stack = start(limited(json!({
        "enabled": true,
        "requests": { "rate": 100, "per": "minute" },
        "overrides": [{ "identity": "small-team", "requests": { "rate": 1, "per": "minute" } }]
    })));
    let small = [("x-api-key", "sk-small")];
    assert_eq!(post_json(&stack, &sampled("a"), &small).await.status, 200);
    assert_eq!(post_json(&stack, &sampled("b"), &small).await.status, 429);
    // A header naming another identity changes nothing: the identity is the verified consumer.
    let dodge = [("x-api-key", "sk-small"), ("x-tenant", "big-team"), ("x-forwarded-for", "10.9.9.9")];
    assert_eq!(post_json(&stack, &sampled("c"), &dodge).await.status, 429);
    assert_eq!(post_json(&stack, &sampled("d"), &[("x-api-key", "sk-big")]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_token_reservations_never_overshoot() {
    // 10,000 tokens a minute; each request reserves its prompt estimate plus max_tokens 3,000,
    // so 3 fit at once whatever the interleaving across the two workers, and the 4th would need
    // about 13 s of refill. Answers (and their refunds) come only after 3 s.
    let stack = start(StackOptions {
        mock: aurelis_mock_upstream::MockConfig { latency_ms: 3000, ..Default::default() },
        ..limited(json!({ "enabled": true, "tokens_per_minute": 10000 }))
    });
    let mut tasks = Vec::new();
    for i in 0..40 {
        let body = json!({ "model": "gpt-4o-mini", "temperature": 0.7, "max_tokens": 3000,
                           "messages": [{ "role": "user", "content": format!("t{i}") }] })
        .to_string();
        let url = stack.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new().post(url).header("content-type", "application/json").body(body).send().await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap_or(0) {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 3, "reservations are taken before admission, so concurrency cannot overshoot");
    assert_eq!(stack.mock().request_count(), 3);
}
