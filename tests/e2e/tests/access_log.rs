//! Envoy's JSON access log, through real Envoy with the built filter (either host: run again
//! with `AURELIS_FILTER=native`): one line per request with Envoy's fields and the filter's
//! per-request facts, the same fields from both hosts, and never the prompt or the key.
mod common;
use aurelis_devstack::{Stack, StackOptions};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET_PROMPT: &str = "the-prompt-text-zq81x must never be logged";
const KEY_VALUE: &str = "sk-facts-key-3b1c9e";

/// One consumer (`team-a` of tenant `acme`), limited to four requests a minute.
fn options() -> StackOptions {
    let filter_config = json!({
        "auth": auth_with(&[("team-a", "acme", KEY_VALUE)], false),
        "rate_limit": { "enabled": true, "identity": "consumer", "requests": { "rate": 4, "per": "minute" } },
    });
    StackOptions { filter_config, ..StackOptions::default() }
}

/// The access log once it holds `n` lines: Envoy flushes the file about once a second, so the
/// test waits for the lines themselves (bounded), not for a fixed time.
fn lines(stack: &Stack, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = stack.access_log_lines();
        if lines.len() >= n || Instant::now() > deadline {
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn line<'a>(lines: &'a [Value], cache_status: &str) -> &'a Value {
    let found: Vec<&Value> = lines.iter().filter(|l| l["cache_status"] == cache_status).collect();
    assert_eq!(found.len(), 1, "one {cache_status} line in {lines:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_one_line_with_its_facts_and_no_prompt_or_key() {
    let stack = start(options());
    let key = ("authorization", format!("Bearer {KEY_VALUE}"));
    let key = [(key.0, key.1.as_str())];
    let request = chat(SECRET_PROMPT);

    let miss = post_json(&stack, &request, &key).await;
    assert_eq!((miss.status, miss.cache()), (200, "MISS"));
    let hit = post_json(&stack, &request, &key).await;
    assert_eq!((hit.status, hit.cache()), (200, "HIT"));
    let undecided = json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": SECRET_PROMPT }] });
    let bypass = post_json(&stack, &undecided, &key).await;
    assert_eq!((bypass.status, bypass.cache()), (200, "BYPASS"));
    let streamed = json!({
        "model": "gpt-4o-mini", "temperature": 0, "stream": true,
        "messages": [{ "role": "user", "content": "a streamed one" }],
    });
    let stream = post_json(&stack, &streamed, &key).await;
    assert_eq!((stream.status, stream.cache()), (200, "MISS"));
    let limited = post_json(&stack, &chat("a fifth one"), &key).await;
    assert_eq!(limited.status, 429, "the fifth request of the minute");
    let anonymous = post_json(&stack, &request, &[]).await;
    assert_eq!(anonymous.status, 401);

    let lines = lines(&stack, 6);
    assert_eq!(lines.len(), 6, "one line per request: {lines:#?}");
    let (streams, lines): (Vec<Value>, Vec<Value>) = lines.into_iter().partition(|l| !l["ttfb_ms"].is_null());
    assert_eq!(streams.len(), 1, "only the streamed request has a time to first byte: {streams:#?}");
    let s = &streams[0];
    assert_eq!((s["cache_status"].as_str(), s["status"].as_u64()), (Some("MISS"), Some(200)));
    assert!(s["ttfb_ms"].as_str().is_some_and(|t| t.parse::<u64>().is_ok()), "milliseconds: {s}");
    assert!(s["prompt_tokens"].is_null(), "a stream without `include_usage` has no usage to log: {s}");
    let usage = &miss.json()["usage"];
    let (prompt, completion) =
        (usage["prompt_tokens"].as_u64().unwrap_or(0), usage["completion_tokens"].as_u64().unwrap_or(0));
    assert!(prompt > 0 && completion > 0, "{usage}");

    let m = line(&lines, "MISS");
    assert_eq!((m["status"].as_u64(), m["method"].as_str()), (Some(200), Some("POST")));
    assert_eq!(m["path"], "/v1/chat/completions");
    assert_eq!(m["model"], "gpt-4o-mini");
    assert_eq!(m["upstream_cluster"], "mock", "the provider Envoy chose");
    assert_eq!(m["consumer"], "team-a");
    assert_eq!(
        (m["prompt_tokens"].clone(), m["completion_tokens"].clone()),
        (json!(prompt.to_string()), json!(completion.to_string()))
    );
    assert_eq!(m["ratelimit"], "allowed");
    assert_eq!(m["coalesced"], "false");
    assert!(m["duration_ms"].is_u64() && m["bytes_sent"].as_u64().unwrap_or(0) > 0, "{m}");
    let scope = m["tenant_scope"].as_str().unwrap_or_default();
    assert!(scope.len() == 16 && scope.bytes().all(|b| b.is_ascii_hexdigit()), "a hash of the tenant: {scope}");
    assert!(m["cache_level"].is_null() && m["tokens_saved"].is_null() && m["ttfb_ms"].is_null(), "{m}");

    let h = line(&lines, "HIT");
    assert_eq!((h["status"].as_u64(), h["cache_level"].as_str()), (Some(200), Some("L1")));
    assert_eq!(h["tokens_saved"], json!((prompt + completion).to_string()));
    assert_eq!(h["prompt_tokens"], m["prompt_tokens"], "the stored entry's usage");
    assert_eq!((h["tenant_scope"].as_str(), h["consumer"].as_str()), (Some(scope), Some("team-a")));

    let b = line(&lines, "BYPASS");
    assert_eq!((b["status"].as_u64(), b["bypass_reason"].as_str()), (Some(200), Some("non_deterministic")));
    assert_eq!(b["upstream_cluster"], "mock");

    let l = line(&lines, "LIMITED");
    assert_eq!((l["status"].as_u64(), l["ratelimit"].as_str()), (Some(429), Some("refused_requests")));

    let r = line(&lines, "REFUSED");
    assert_eq!((r["status"].as_u64(), r["refusal"].as_str()), (Some(401), Some("missing_api_key")));
    assert!(r["consumer"].is_null() && r["model"].is_null(), "refused before its body was read: {r}");

    let everything = stack.access_log_lines().join("\n");
    assert!(!everything.contains("zq81x"), "the prompt is nowhere in the log");
    assert!(!everything.contains(KEY_VALUE) && !everything.contains("acme"), "nor the key or the raw tenant");
    assert_eq!(stack.mock().request_count(), 3, "the two misses and the bypass");
}
