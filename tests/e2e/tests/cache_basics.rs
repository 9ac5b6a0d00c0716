//! The first behaviours of the cache, through real Envoy with the freshly built filter.
mod common;
use aurelis_devstack::StackOptions;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_request_twice_is_a_miss_then_a_byte_identical_hit() {
    let stack = start(StackOptions::default());
    let request = chat("What is the capital of France?");

    let first = post_json(&stack, &request, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.cache(), "MISS");
    assert_eq!(first.header("content-type"), Some("application/json"));

    let second = post_json(&stack, &request, &[]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.cache(), "HIT");
    assert_eq!(second.header("x-aurelis-cache-level"), Some("L1"));
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert!(second.header("age").is_some(), "hits carry an age header");
    assert_eq!(first.body, second.body, "a hit replays the stored body byte for byte");
    assert_eq!(stack.mock().request_count(), 1, "the upstream saw exactly one request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_bypassed_and_relayed_nowhere() {
    let stack = start(StackOptions::default());
    let body = br#"{"model": "gpt-4o-mini", "messages": [ {"role": "user", "content": "hi"} "#.to_vec();
    let reply = post_raw(&stack, "/v1/chat/completions", "application/json", body.clone(), &[]).await;
    assert_eq!(reply.cache(), "BYPASS");
    assert_eq!(reply.header("x-aurelis-cache-reason"), Some("invalid_json"));
    // The filter could not read a model, so no model's route matches: Envoy refuses it rather
    // than relaying it to some provider (there is no catch-all model unless the file names one).
    assert_eq!(reply.status, 404, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["error"]["code"], "model_not_found");
    assert_eq!(stack.mock().request_count(), 0, "nothing reached the provider");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_content_type_passes_through_untouched() {
    let stack = start(StackOptions::default());
    let body = chat("hello").to_string().into_bytes();
    let reply = post_raw(&stack, "/v1/chat/completions", "text/plain", body.clone(), &[]).await;
    assert_eq!(reply.cache(), "BYPASS");
    assert_eq!(reply.header("x-aurelis-cache-reason"), Some("content_type"));
    assert!(reply.status < 500, "status {}", reply.status);
    assert_eq!(stack.mock().last_request().map(|r| r.body).unwrap_or_default(), body);
    // Twice: never cached.
    let again = post_raw(&stack, "/v1/chat/completions", "text/plain", body, &[]).await;
    assert_eq!(again.cache(), "BYPASS");
    assert_eq!(stack.mock().request_count(), 2);
}
