//! Replay across modes through real Envoy: a JSON answer stored by one client is a HIT for a
//! streaming client of the same prompt (and the reverse), with the same content, finish reason,
//! tool calls and usage as the original — reassembled here from the SSE events, independently
//! of the filter's own code.
mod common;

use aurelis_devstack::{Stack, StackOptions};
use common::*;
use serde_json::{json, Value};

/// What a client makes of an answer, whatever its mode.
#[derive(Debug, PartialEq)]
struct Reassembled {
    content: Option<String>,
    finish_reason: Option<String>,
    /// (id, type, name, arguments) per call, in index order.
    tool_calls: Vec<(String, String, String, String)>,
    usage: Option<Value>,
}

fn from_json(body: &[u8]) -> Reassembled {
    let v: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let choice = &v["choices"][0];
    let message = &choice["message"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let tool_calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    (text(&c["id"]), text(&c["type"]), text(&c["function"]["name"]), text(&c["function"]["arguments"]))
                })
                .collect()
        })
        .unwrap_or_default();
    Reassembled {
        content: message["content"].as_str().map(str::to_owned),
        finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
        tool_calls,
        usage: v.get("usage").cloned(),
    }
}

/// The events of a stream, which must end with `data: [DONE]`.
fn events(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body);
    assert!(text.ends_with("data: [DONE]\n\n"), "a complete stream: {text}");
    text.split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap_or_else(|e| panic!("event {data}: {e}")))
        .collect()
}

/// Joins the deltas the way an SDK does: content and arguments appended, ids set once.
fn from_sse(body: &[u8]) -> Reassembled {
    let mut out = Reassembled { content: None, finish_reason: None, tool_calls: Vec::new(), usage: None };
    for event in events(body) {
        if let Some(usage) = event.get("usage").filter(|u| !u.is_null()) {
            out.usage = Some(usage.clone());
        }
        let Some(choice) = event["choices"].get(0) else { continue };
        let delta = &choice["delta"];
        if let Some(piece) = delta["content"].as_str() {
            out.content.get_or_insert_with(String::new).push_str(piece);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index =
                call["index"].as_u64().unwrap_or_else(|| panic!("a streamed tool call names its index: {call}"));
            let index = usize::try_from(index).unwrap_or(usize::MAX);
            if index == out.tool_calls.len() {
                out.tool_calls.push(Default::default());
            }
            let slot = &mut out.tool_calls[index];
            if let Some(id) = call["id"].as_str() {
                slot.0 = id.to_string();
            }
            if let Some(kind) = call["type"].as_str() {
                slot.1 = kind.to_string();
            }
            slot.2.push_str(call["function"]["name"].as_str().unwrap_or_default());
            slot.3.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            out.finish_reason = Some(reason.to_string());
        }
    }
    out
}

fn with_stream(mut request: Value, include_usage: bool) -> Value {
    request["stream"] = json!(true);
    request["stream_options"] = json!({ "include_usage": include_usage });
    request
}

fn with_tools(mut request: Value) -> Value {
    request["tools"] = json!([{ "type": "function", "function": { "name": "search",
        "parameters": { "type": "object", "properties": { "query": { "type": "string" } } } } }]);
    request
}

fn stack() -> Stack {
    // Tool-call answers are stored only when their finish reason is cacheable.
    let filter_config = json!({ "cache": { "cacheable_finish_reasons": ["stop", "length", "tool_calls"] } });
    start(StackOptions { filter_config, ..StackOptions::default() })
}

fn is_stream(reply: &Reply) -> bool {
    reply.header("content-type").is_some_and(|c| c.starts_with("text/event-stream"))
}

async fn stored_json_then_streaming_hit(stack: &Stack, request: Value) -> (Reassembled, Reply) {
    let original = post_json(stack, &request, &[]).await;
    assert_eq!((original.status, original.cache()), (200, "MISS"));
    assert_eq!(original.header("content-type"), Some("application/json"));
    let replay = post_json(stack, &with_stream(request, true), &[]).await;
    assert_eq!((replay.status, replay.cache()), (200, "HIT"));
    assert!(is_stream(&replay), "{:?}", replay.header("content-type"));
    (from_json(&original.body), replay)
}

async fn stored_stream_then_json_hit(stack: &Stack, request: Value) -> (Reassembled, Reply) {
    let original = post_json(stack, &with_stream(request.clone(), true), &[]).await;
    assert_eq!((original.status, original.cache()), (200, "MISS"));
    assert!(is_stream(&original));
    let replay = post_json(stack, &request, &[]).await;
    assert_eq!((replay.status, replay.cache()), (200, "HIT"));
    assert_eq!(replay.header("content-type"), Some("application/json"));
    (from_sse(&original.body), replay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_finish_reason_and_usage_replay_across_modes() {
    let stack = stack();
    let (original, replay) = stored_json_then_streaming_hit(&stack, chat("json first")).await;
    assert!(original.content.as_deref().is_some_and(|c| c.len() > 20), "{original:?}");
    assert!(original.usage.is_some());
    assert_eq!(from_sse(&replay.body), original, "content, finish reason and usage");
    let events = events(&replay.body);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant", "a role chunk first");
    assert_eq!(events.last().map(|e| e["choices"].clone()), Some(json!([])), "then the usage chunk");

    let without_usage = post_json(&stack, &with_stream(chat("json first"), false), &[]).await;
    assert_eq!(without_usage.cache(), "HIT");
    let bare = from_sse(&without_usage.body);
    assert_eq!(bare.usage, None, "no usage chunk unless asked for");
    assert_eq!((bare.content, bare.finish_reason), (original.content, original.finish_reason));

    let (original, replay) = stored_stream_then_json_hit(&stack, chat("stream first")).await;
    assert!(original.content.as_deref().is_some_and(|c| c.len() > 20), "{original:?}");
    assert_eq!(from_json(&replay.body), original, "content, finish reason and usage");

    assert_eq!(stack.mock().request_count(), 2, "one upstream call per prompt");
    assert_eq!(stack.counter("wasmcustom.aurelis_cache_replays_total.kind.json_to_sse"), 2);
    assert_eq!(stack.counter("wasmcustom.aurelis_cache_replays_total.kind.sse_to_json"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_replay_across_modes_with_streamed_argument_deltas() {
    let stack = stack();
    let (original, replay) = stored_json_then_streaming_hit(&stack, with_tools(chat("weather, JSON first"))).await;
    assert_eq!(original.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(original.tool_calls.len(), 1, "{original:?}");
    assert_eq!(from_sse(&replay.body), original, "tool calls, finish reason and usage");

    let (original, replay) = stored_stream_then_json_hit(&stack, with_tools(chat("weather, stream first"))).await;
    let (_, kind, name, arguments) = &original.tool_calls[0];
    assert_eq!((kind.as_str(), name.as_str()), ("function", "search"));
    assert!(arguments.starts_with("{\"query\":"), "the upstream's deltas joined: {arguments}");
    assert_eq!(from_json(&replay.body), original, "tool calls, finish reason and usage");
    assert_eq!(stack.mock().request_count(), 2);
}
