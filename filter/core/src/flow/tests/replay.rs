//! One stored answer serves JSON and streaming clients (`replay`), through the whole flow.
use super::*;
use crate::http::Headers;
use crate::replay::Completion;

fn streaming(prompt: &str, include_usage: bool) -> Vec<u8> {
    json!({ "model": "gpt-4o-mini", "temperature": 0, "stream": true,
        "stream_options": { "include_usage": include_usage },
        "messages": [{ "role": "user", "content": prompt }] })
    .to_string()
    .into_bytes()
}

/// A complete upstream stream: role chunk, two content chunks, finish chunk, usage on request.
fn stream_answer(usage: bool) -> Vec<u8> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        json!({ "id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
    };
    let mut events = vec![
        chunk(json!({ "role": "assistant", "content": "" }), json!(null)),
        chunk(json!({ "content": "hel" }), json!(null)),
        chunk(json!({ "content": "lo" }), json!(null)),
        chunk(json!({}), json!("stop")),
    ];
    if usage {
        events.push(json!({ "id": "chatcmpl-s", "object": "chat.completion.chunk", "choices": [],
            "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 } }));
    }
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    body.into_bytes()
}

/// The upstream streams `body` (SSE) in one chunk.
fn answer_sse(w: &Worker, host: &mut Fake<'_>, req: &mut Request, body: &[u8]) {
    host.response_headers = Headers::from(vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "text/event-stream; charset=utf-8".into()),
    ]);
    host.response_body = body.to_vec();
    req.on_response_headers(w, host, false);
    req.on_response_body(w, host, body.len(), true);
    req.on_stream_end(w, host);
}

fn content_of(completion: &Completion) -> Option<&str> {
    completion.choices.first().and_then(|c| c.content.as_deref())
}

#[test]
fn a_stored_json_answer_serves_streaming_clients_and_a_stored_stream_json_clients() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    assert!(exchange(&envoy, &w, 1, &chat("a")).1, "JSON stored");
    let (hit, upstream) = exchange(&envoy, &w, 2, &streaming("a", true));
    assert!(!upstream);
    let reply = hit.reply().unwrap();
    assert_eq!(header(reply, "x-aurelis-cache").as_deref(), Some("HIT"));
    assert_eq!(header(reply, "content-type").as_deref(), Some("text/event-stream; charset=utf-8"));
    let replayed = Completion::from_sse(&reply.body).unwrap();
    assert_eq!(replayed, Completion::from_json(&completion("hello")).unwrap(), "content, finish and usage");

    let (mut host, mut req, action) = start(&envoy, &w, 3, &streaming("b", true), &[]);
    assert_eq!(action, Action::Continue);
    answer_sse(&w, &mut host, &mut req, &stream_answer(true));
    let (hit, upstream) = exchange(&envoy, &w, 4, &chat("b"));
    assert!(!upstream, "the stream answers a JSON client");
    let reply = hit.reply().unwrap();
    assert_eq!(header(reply, "content-type").as_deref(), Some("application/json"));
    let json = Completion::from_json(&reply.body).unwrap();
    assert_eq!(json, Completion::from_sse(&stream_answer(true)).unwrap());
    assert_eq!(content_of(&json), Some("hello"));
    let (again, _) = exchange(&envoy, &w, 5, &streaming("b", true));
    assert_eq!(again.reply().unwrap().body, stream_answer(true), "the stored mode: the upstream's bytes");
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_cache_replays_total.kind.json_to_sse"), 1);
    assert_eq!(stats.stat("aurelis_cache_replays_total.kind.sse_to_json"), 1);
    assert_eq!(stats.stat("aurelis_cache_hits_total.level.L1"), 3);
}

#[test]
fn a_stream_without_usage_cannot_answer_json_so_the_fresh_answer_replaces_it() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (mut host, mut req, _) = start(&envoy, &w, 1, &streaming("c", false), &[]);
    answer_sse(&w, &mut host, &mut req, &stream_answer(false));
    assert!(!exchange(&envoy, &w, 2, &streaming("c", false)).1, "same shape: a hit");
    assert!(exchange(&envoy, &w, 3, &chat("c")).1, "no usage to answer JSON with: upstream");
    let (hit, upstream) = exchange(&envoy, &w, 4, &streaming("c", true));
    assert!(!upstream, "the JSON answer replaced the stream and has usage");
    let events = hit.reply().unwrap().body.clone();
    assert!(String::from_utf8(events).unwrap().contains("\"usage\":{"), "usage chunk asked for and sent");
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_cache_replay_skipped_total.reason.no_usage"), 1);
    assert_eq!(stats.stat("aurelis_cache_misses_total"), 2);
}

#[test]
fn an_answer_the_other_mode_cannot_carry_is_a_counted_miss() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let with_logprobs = json!({
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": "x" },
            "logprobs": { "content": [{ "token": "x", "logprob": -0.1 }] }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 1, "completion_tokens": 1 } })
    .to_string();
    let (mut host, mut req, _) = start(&envoy, &w, 1, &chat("d"), &[]);
    answer(&w, &mut host, &mut req, 200, with_logprobs.as_bytes());
    assert!(!exchange(&envoy, &w, 2, &chat("d")).1, "JSON clients still hit");
    let (mut host, mut req, action) = start(&envoy, &w, 3, &streaming("d", false), &[]);
    assert_eq!(action, Action::Continue, "a streaming client goes upstream");
    answer_sse(&w, &mut host, &mut req, &stream_answer(false));
    assert_eq!(flushed(&envoy, &w).stat("aurelis_cache_replay_skipped_total.reason.unsupported"), 1);
}

#[test]
fn a_streaming_waiter_of_a_json_leader_gets_a_stream() {
    let envoy = Envoy::new();
    let w = envoy.worker(json!({}));
    let (mut leader_host, mut leader, action) = start(&envoy, &w, 1, &chat("e"), &[]);
    assert_eq!(action, Action::Continue);
    let (_host, _waiter, action) = start(&envoy, &w, 2, &streaming("e", true), &[]);
    assert_eq!(action, Action::Pause, "same key whatever the mode: it waits");
    answer(&w, &mut leader_host, &mut leader, 200, &completion("once"));
    let mut worker_host = envoy.host();
    w.on_wake(&mut worker_host);
    let replies = worker_host.replies_to();
    assert_eq!(replies.len(), 1);
    let reply = replies[0].1;
    assert!(header(reply, "content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    assert_eq!(Completion::from_sse(&reply.body).unwrap(), Completion::from_json(&completion("once")).unwrap());
    let stats = flushed(&envoy, &w);
    assert_eq!(stats.stat("aurelis_coalesced_requests_total"), 1);
    assert_eq!(stats.stat("aurelis_cache_replays_total.kind.json_to_sse"), 1);
}
