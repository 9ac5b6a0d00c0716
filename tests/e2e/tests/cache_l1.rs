//! The L1 cache through real Envoy: sharing across workers, TTL, SSE replay, the cacheability
//! gate, upstream errors, tenant isolation, coalescing, and the stats users scrape.
mod common;
use aurelis_devstack::StackOptions;
use aurelis_mock_upstream::MockConfig;
use common::*;
use serde_json::json;
use std::time::Duration;

fn with_filter_config(config: serde_json::Value) -> StackOptions {
    StackOptions { filter_config: config, ..StackOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fill_on_one_worker_is_a_hit_on_every_worker() {
    let stack = start(StackOptions { envoy_workers: 2, ..StackOptions::default() });
    let request = chat("shared across workers");
    let first = post_json(&stack, &request, &[]).await;
    assert_eq!(first.cache(), "MISS");
    // Fresh clients = fresh connections, which the kernel spreads over both workers.
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (url, body) = (stack.url("/v1/chat/completions"), request.to_string());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let r = client.post(url).header("content-type", "application/json").body(body).send().await;
            match r {
                Ok(r) => (
                    r.headers().get("x-aurelis-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
                    r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
                ),
                Err(e) => (format!("error {e}"), Vec::new()),
            }
        }));
    }
    for t in tasks {
        let (cache, body) = t.await.unwrap_or_default();
        assert_eq!(cache, "HIT");
        assert_eq!(body, first.body);
    }
    assert_eq!(stack.mock().request_count(), 1);
    let hits = stack.counter("wasmcustom.aurelis_cache_hits_total.level.L1");
    assert_eq!(hits, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_after_their_ttl() {
    let stack = start(with_filter_config(json!({ "cache": { "ttl_seconds": 1 } })));
    let request = chat("short lived");
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "MISS");
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "HIT");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "MISS", "expired after 1 s");
    assert_eq!(stack.mock().request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_replayed_event_for_event() {
    let stack = start(StackOptions::default());
    let request = json!({
        "model": "gpt-4o-mini", "temperature": 0, "stream": true, "stream_options": { "include_usage": true },
        "messages": [{ "role": "user", "content": "stream me" }]
    });
    let first = post_json(&stack, &request, &[]).await;
    assert_eq!(first.cache(), "MISS");
    assert!(first.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    let text = String::from_utf8_lossy(&first.body).to_string();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let second = post_json(&stack, &request, &[]).await;
    assert_eq!(second.cache(), "HIT");
    assert!(second.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    assert_eq!(second.body, first.body, "same event sequence, byte for byte");
    // A JSON client of the same prompt gets a JSON answer, not the stream: the stored stream
    // rewritten (`replay`; `cache_replay.rs` checks its content).
    let json_client = post_json(&stack, &chat("stream me"), &[]).await;
    assert_eq!(json_client.cache(), "HIT");
    assert_eq!(json_client.header("content-type"), Some("application/json"));
    assert_eq!(stack.mock().request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_explains_every_refusal() {
    let stack = start(StackOptions::default());
    let sampled =
        json!({ "model": "gpt-4o-mini", "temperature": 0.7, "messages": [{ "role": "user", "content": "x" }] });
    let r = post_json(&stack, &sampled, &[]).await;
    assert_eq!((r.cache(), r.header("x-aurelis-cache-reason")), ("BYPASS", Some("non_deterministic")));
    let seeded = json!({ "model": "gpt-4o-mini", "temperature": 0.7, "seed": 7, "messages": [{ "role": "user", "content": "x" }] });
    assert_eq!(post_json(&stack, &seeded, &[]).await.cache(), "MISS", "a seed makes sampling reproducible");
    let several =
        json!({ "model": "gpt-4o-mini", "temperature": 0, "n": 2, "messages": [{ "role": "user", "content": "x" }] });
    assert_eq!(post_json(&stack, &several, &[]).await.header("x-aurelis-cache-reason"), Some("n_greater_than_1"));
    let no_model = json!({ "temperature": 0, "messages": [{ "role": "user", "content": "x" }] });
    assert_eq!(post_json(&stack, &no_model, &[]).await.header("x-aurelis-cache-reason"), Some("missing_model"));
    let r = post_raw(&stack, "/v1/chat/completions", "application/json", vec![0xff, 0xfe, b'{'], &[]).await;
    assert_eq!(r.header("x-aurelis-cache-reason"), Some("invalid_utf8"));
    assert!(r.status < 500);
    // A compressed body's model cannot be read (for limits and routing): refused, not passed.
    let r = post_json(&stack, &chat("gz"), &[("content-encoding", "gzip")]).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (415, Some("unsupported_content_encoding")));
    let r = post_json(&stack, &chat("q"), &[]).await;
    assert_eq!(r.cache(), "MISS");
    let r =
        post_raw(&stack, "/v1/chat/completions?trace=1", "application/json", chat("q").to_string().into(), &[]).await;
    assert_eq!(r.header("x-aurelis-cache-reason"), Some("query"), "a query parameter that may change the answer");
    let r = client().get(stack.url("/v1/models")).send().await.map(|r| r.headers().clone()).unwrap_or_default();
    assert_eq!(r.get("x-aurelis-cache-reason").and_then(|v| v.to_str().ok()), Some("method"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_no_store_and_no_cache() {
    let stack = start(StackOptions::default());
    let request = chat("cache control");
    let r = post_json(&stack, &request, &[("cache-control", "no-store")]).await;
    assert_eq!((r.cache(), r.header("x-aurelis-cache-reason")), ("BYPASS", Some("no_store")));
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "MISS", "no-store stored nothing");
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "HIT");
    let fresh = post_json(&stack, &request, &[("cache-control", "no-cache")]).await;
    assert_eq!(fresh.cache(), "MISS", "no-cache skips the lookup");
    let after = post_json(&stack, &request, &[]).await;
    assert_eq!(after.cache(), "HIT");
    assert_eq!(after.body, fresh.body, "...and stores the fresh answer");
    assert_eq!(stack.mock().request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_and_unfinished_answers_are_never_cached() {
    let stack = start(StackOptions::default());
    let request = chat("errors");
    for status in [500u16, 503, 429] {
        stack.mock().fail_next(status, 1);
        let r = post_json(&stack, &request, &[]).await;
        assert_eq!(r.status, status);
        assert_eq!(r.cache(), "MISS");
    }
    let filtered = post_json(&stack, &request, &[("x-mock-finish-reason", "content_filter")]).await;
    assert_eq!(filtered.status, 200);
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "MISS", "nothing stored so far");
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "HIT");
    assert_eq!(stack.mock().request_count(), 5);
    assert_eq!(stack.counter("wasmcustom.aurelis_cache_store_skipped_total.reason.status"), 3);
    assert_eq!(stack.counter("wasmcustom.aurelis_cache_store_skipped_total.reason.finish_reason"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_share_entries_by_default() {
    // Alice and Bob are consumers of two tenants; Carol is Alice's colleague (same tenant).
    let consumer = |name: &str, tenant: &str, key: &str| json!({ "name": name, "tenant": tenant, "key_sha256": [aurelis_core::auth::key_sha256(key)] });
    let auth = json!({ "consumers": [
        consumer("alice", "acme", "sk-alice"), consumer("carol", "acme", "sk-carol"), consumer("bob", "initech", "sk-bob"),
    ] });
    let stack = start(with_filter_config(json!({ "auth": auth })));
    let request = chat("tenant isolation");
    let ask = |extra: &'static [(&'static str, &'static str)]| {
        let stack = &stack;
        let request = &request;
        async move { post_json(stack, request, extra).await.cache().to_string() }
    };
    assert_eq!(ask(&[("authorization", "Bearer sk-alice")]).await, "MISS");
    assert_eq!(ask(&[("x-api-key", "sk-bob")]).await, "MISS", "another tenant, another key form");
    assert_eq!(ask(&[("api-key", "sk-alice")]).await, "HIT", "one consumer, whatever the header");
    assert_eq!(ask(&[("x-api-key", "sk-carol")]).await, "HIT", "one tenant");
    assert_eq!(ask(&[("authorization", "Bearer sk-bob")]).await, "HIT");
    // A client-sent tenant or x-aurelis-* header changes nothing.
    let forged = [("x-api-key", "sk-bob"), ("x-tenant-id", "acme"), ("x-aurelis-tenant", "acme")];
    assert_eq!(post_json(&stack, &request, &forged).await.cache(), "HIT");
    assert_eq!(stack.mock().request_count(), 2);
    for refused in [&[("authorization", "Basic YWxpY2U6c2stYWxpY2U=")][..], &[("x-api-key", "sk-random")], &[]] {
        let r = post_json(&stack, &request, refused).await;
        assert_eq!(r.status, 401, "{refused:?}");
        assert!(r.json()["error"]["message"].is_string() && r.json()["error"]["code"].is_string(), "OpenAI-shaped");
    }
    assert_eq!(stack.mock().request_count(), 2, "refused before upstream");

    let shared = start(with_filter_config(json!({ "auth": auth, "tenant": { "shared_scope": true } })));
    assert_eq!(post_json(&shared, &request, &[("x-api-key", "sk-alice")]).await.cache(), "MISS");
    assert_eq!(post_json(&shared, &request, &[("x-api-key", "sk-bob")]).await.cache(), "HIT", "opt-in shared scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_concurrent_misses_send_one_request_upstream() {
    let stack = start(StackOptions {
        mock: MockConfig { latency_ms: 500, ..MockConfig::default() },
        ..StackOptions::default()
    });
    let replies = concurrent_posts(&stack, &chat("coalesce me"), 20, false).await;
    assert!(replies.iter().all(|(status, _)| *status == 200));
    let bodies: Vec<Vec<u8>> = replies.into_iter().map(|(_, b)| b).collect();
    assert_eq!(stack.mock().request_count(), 1, "one request upstream for 20 identical misses");
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "all 20 got the same body");
    // Waiters answered from the fill, or (on a slow machine) late arrivals that hit the stored entry.
    assert_eq!(stack.counter("wasmcustom.aurelis_cache_hits_total.level.L1"), 19);
    assert!(stack.counter("wasmcustom.aurelis_coalesced_requests_total") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_go_upstream_after_the_coalesce_timeout() {
    let stack = start(StackOptions {
        mock: MockConfig { latency_ms: 800, ..MockConfig::default() },
        filter_config: json!({ "cache": { "coalesce_timeout_ms": 100 } }),
        ..StackOptions::default()
    });
    let replies = concurrent_posts(&stack, &chat("slow leader"), 3, false).await;
    assert!(replies.iter().all(|(status, _)| *status == 200));
    assert_eq!(stack.mock().request_count(), 3, "waiters gave up after 100 ms and went upstream");
    assert_eq!(stack.counter("wasmcustom.aurelis_coalesce_timeouts_total"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_pass_through_whole() {
    let stack = start(with_filter_config(json!({ "cache": { "max_body_bytes": 1024 } })));
    let big = chat(&"x".repeat(4096)).to_string().into_bytes();
    let r = post_raw(&stack, "/v1/chat/completions", "application/json", big.clone(), &[]).await;
    assert_eq!((r.status, r.cache(), r.header("x-aurelis-cache-reason")), (200, "BYPASS", Some("body_too_large")));
    assert_eq!(stack.mock().last_request().map(|r| r.body).unwrap_or_default(), big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_header_explains_the_key_without_the_prompt() {
    let auth = auth_with(&[("secret-keeper", "t1", "sk-secret-token")], true);
    let stack = start(with_filter_config(json!({ "debug_headers": true, "auth": auth })));
    let request = json!({ "model": "gpt-4o-mini", "temperature": 0, "top_p": 1, "user": "u1",
                          "messages": [{ "role": "user", "content": "secret prompt text" }] });
    let r = post_json(&stack, &request, &[("authorization", "Bearer sk-secret-token")]).await;
    let info = r.header("x-aurelis-cache-key-info").unwrap_or_default().to_string();
    assert!(info.contains("v=3") && info.contains("scope=tenant") && info.contains("messages"), "{info}");
    assert!(info.contains("dropped=user") && info.contains("top_p"), "{info}");
    assert!(!info.contains("secret"), "never echoes prompt or token: {info}");
    let plain = start(StackOptions::default());
    assert!(post_json(&plain, &request, &[]).await.header("x-aurelis-cache-key-info").is_none(), "opt-in only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_stays_within_its_entry_bound() {
    let stack = start(with_filter_config(
        json!({ "cache": { "max_entries": 16, "max_bytes": 65536, "max_entry_bytes": 4096 } }),
    ));
    for i in 0..160 {
        assert_eq!(post_json(&stack, &chat(&format!("fill {i}")), &[]).await.status, 200);
    }
    let entries = gauges_refreshed(&stack);
    let bytes = stack.counter("wasmcustom.aurelis_l1_bytes");
    assert!(entries > 0 && entries <= 16, "entries {entries}");
    assert!(bytes <= 65536, "bytes {bytes}");
    assert!(stack.counter("wasmcustom.aurelis_l1_evictions_total") >= 144 - 16);
}

/// Once L1 is full of fresh entries (its normal state in production), every new key still
/// costs one upstream call: MISS, then HIT. (A bug blanked the slot an insert had just
/// written, so each new key went upstream twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_capacity_each_new_key_goes_upstream_once() {
    let stack = start(with_filter_config(
        json!({ "cache": { "max_entries": 8, "max_bytes": 65536, "max_entry_bytes": 4096 } }),
    ));
    let mock = stack.mock.request_count();
    for i in 0..40 {
        let body = chat(&format!("new key {i}"));
        assert_eq!(post_json(&stack, &body, &[]).await.cache(), "MISS", "key {i}");
        let again = post_json(&stack, &body, &[]).await;
        assert_eq!(again.cache(), "HIT", "key {i}: stored on the first pass");
    }
    let upstream = stack.mock.request_count() - mock;
    assert_eq!(upstream, 40, "one upstream call per new key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_names_are_stable() {
    let stack = start(StackOptions::default());
    post_json(&stack, &chat("metrics"), &[]).await;
    post_json(&stack, &chat("metrics"), &[]).await;
    post_raw(&stack, "/v1/chat/completions", "text/plain", b"x".to_vec(), &[]).await;
    gauges_refreshed(&stack);
    let text = stack.prometheus().unwrap_or_default();
    for pinned in [
        r#"aurelis_requests_total{cache_status="MISS",model="gpt-4o-mini"} 1"#,
        r#"aurelis_requests_total{cache_status="HIT",model="gpt-4o-mini"} 1"#,
        r#"aurelis_requests_total{cache_status="BYPASS",model="unknown"} 1"#,
        r#"aurelis_bypass_total{reason="content_type"} 1"#,
        r#"aurelis_cache_hits_total{level="L1"} 1"#,
        "aurelis_cache_misses_total{} 1",
        "aurelis_cache_stores_total{} 1",
        "aurelis_tokens_saved_total{}",
        r#"aurelis_tokens_total{kind="prompt"}"#,
        r#"aurelis_tokens_total{kind="completion"}"#,
        "aurelis_l1_entries{} 1",
        "aurelis_l1_bytes{}",
        "aurelis_l1_evictions_total{} 0",
        "aurelis_l1_expired_total{} 0",
        "aurelis_coalesced_requests_total{} 0",
        // Warming's labelled counters (`aurelis_l1_warm_total{result}`, ...) are pinned by
        // `cache_warm`, where they move.
        "aurelis_l1_hits_unreported_total{} 0",
        // Refresh-ahead (docs/security.md): at 0 from the start, so alerts can watch them.
        r#"aurelis_refreshes_total{result="admitted"} 0"#,
        "aurelis_refresh_tokens_total{} 0",
        r#"aurelis_refused_total{reason="refresh_grant_forged"} 0"#,
        r#"aurelis_refused_total{reason="refresh_budget_exhausted"} 0"#,
        "aurelis_l1_purged_total{} 0",
        // Replays across modes (`cache_replay.rs`), at 0 from the start.
        r#"aurelis_cache_replays_total{kind="json_to_sse"} 0"#,
        r#"aurelis_cache_replays_total{kind="sse_to_json"} 0"#,
        r#"aurelis_cache_replays_total{kind="sse_to_sse"} 0"#,
        r#"aurelis_cache_replay_skipped_total{reason="malformed"} 0"#,
        r#"aurelis_cache_replay_skipped_total{reason="incomplete"} 0"#,
        r#"aurelis_cache_replay_skipped_total{reason="unsupported"} 0"#,
        r#"aurelis_cache_replay_skipped_total{reason="no_usage"} 0"#,
        r#"aurelis_cache_replay_skipped_total{reason="too_large"} 0"#,
        r#"aurelis_response_time_ms_bucket{cache_status="HIT""#,
        r#"aurelis_response_time_ms_bucket{cache_status="MISS""#,
    ] {
        assert!(
            text.contains(pinned),
            "missing `{pinned}` in /stats/prometheus:\n{}",
            text.lines().filter(|l| l.contains("aurelis")).collect::<Vec<_>>().join("\n")
        );
    }
}

#[test]
fn an_invalid_filter_config_is_refused_naming_the_field() {
    let err = aurelis_devstack::Stack::start(with_filter_config(json!({ "cache": { "ttl_seconds": 0 } })));
    let message = match err {
        Ok(_) => panic!("Envoy accepted an invalid filter configuration"),
        Err(e) => format!("{e:#}"),
    };
    assert!(message.contains("cache.ttl_seconds"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_miss_reaches_the_client_chunk_by_chunk() {
    use futures::StreamExt;
    let stack = start(StackOptions {
        mock: MockConfig { per_token_latency_ms: 40, ..MockConfig::default() },
        ..StackOptions::default()
    });
    let request = json!({ "model": "gpt-4o-mini", "temperature": 0, "stream": true, "messages": [{ "role": "user", "content": "drip" }] });
    let resp = client()
        .post(stack.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.headers().get("x-aurelis-cache").and_then(|v| v.to_str().ok()), Some("MISS"));
    let started = std::time::Instant::now();
    let mut arrivals = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        if chunk.is_ok() {
            arrivals.push(started.elapsed());
        }
    }
    // At 40 ms a token over 12+ tokens, a buffering filter would deliver everything at once.
    assert!(arrivals.len() >= 5, "{} chunks", arrivals.len());
    let spread = arrivals.last().copied().unwrap_or_default() - arrivals.first().copied().unwrap_or_default();
    assert!(spread >= Duration::from_millis(200), "chunks arrived within {spread:?}: buffered?");
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "HIT", "the complete stream was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_done_is_not_stored() {
    let stack = start(StackOptions::default());
    let request = json!({ "model": "gpt-4o-mini", "temperature": 0, "stream": true, "messages": [{ "role": "user", "content": "cut" }] });
    let cut = post_json(&stack, &request, &[("x-mock-truncate-stream", "1")]).await;
    assert_eq!(cut.cache(), "MISS");
    assert!(!String::from_utf8_lossy(&cut.body).contains("[DONE]"));
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "MISS", "the cut stream was not stored");
    assert_eq!(post_json(&stack, &request, &[]).await.cache(), "HIT");
    assert_eq!(stack.counter("wasmcustom.aurelis_cache_store_skipped_total.reason.incomplete"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_misses_on_different_workers_are_coalesced_too() {
    let stack = start(StackOptions {
        envoy_workers: 2,
        mock: MockConfig { latency_ms: 500, ..MockConfig::default() },
        ..StackOptions::default()
    });
    let replies = concurrent_posts(&stack, &chat("coalesce across workers"), 20, true).await;
    assert!(replies.iter().all(|(status, _)| *status == 200));
    let bodies: Vec<Vec<u8>> = replies.into_iter().map(|(_, b)| b).collect();
    assert_eq!(stack.mock().request_count(), 1, "one request upstream for both workers");
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

/// The filter refreshes its L1 gauges every 2 s: waits for that event (the entry
/// gauge turning non-zero after a store) and returns the entry count.
fn gauges_refreshed(stack: &aurelis_devstack::Stack) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let entries = stack.counter("wasmcustom.aurelis_l1_entries");
        if entries > 0 || std::time::Instant::now() > deadline {
            return entries;
        }
    }
}
