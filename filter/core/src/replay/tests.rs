use super::*;
use crate::completion::{check_json, check_sse, sse_data_events};
use proptest::prelude::*;
use serde_json::{json, Value};

fn entry(format: BodyFormat, body: Vec<u8>, tokens: (u32, u32)) -> Entry {
    Entry {
        key: "k".into(),
        stored_at_ms: 7,
        status: 200,
        content_type: match format {
            BodyFormat::Json => JSON_CONTENT_TYPE.into(),
            BodyFormat::Sse => SSE_CONTENT_TYPE.into(),
        },
        format,
        prompt_tokens: tokens.0,
        completion_tokens: tokens.1,
        body,
    }
}

const USAGE: &str =
    r#"{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0}}"#;

/// `value` with `"usage": USAGE` appended as raw bytes (in the provider's own key order).
fn with_usage(value: Value) -> String {
    let text = value.to_string();
    format!("{},\"usage\":{USAGE}}}", text.strip_suffix('}').unwrap())
}

fn json_answer(message: Value, finish: &str) -> Vec<u8> {
    with_usage(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
        "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish }]
    }))
    .into_bytes()
}

fn usage_in(body: &[u8]) -> bool {
    body.windows(USAGE.len()).any(|w| w == USAGE.as_bytes())
}

fn text_answer(text: &str) -> Vec<u8> {
    json_answer(json!({ "role": "assistant", "content": text, "refusal": null }), "stop")
}

fn tool_answer() -> Vec<u8> {
    json_answer(
        json!({ "role": "assistant", "content": null, "tool_calls": [
            { "id": "call_a", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
            { "id": "call_b", "type": "function", "function": { "name": "get_time", "arguments": "{}" } }
        ] }),
        "tool_calls",
    )
}

/// A stream as OpenAI sends it: role chunk, one chunk per word, finish chunk, usage chunk.
fn upstream_stream(words: &[&str], usage: bool) -> Vec<u8> {
    let chunk = |delta: Value, finish: Value| {
        json!({ "id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1700000001, "model": "gpt-4o-mini",
            "system_fingerprint": "fp_2", "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }] })
    };
    let mut events = vec![chunk(json!({ "role": "assistant", "content": "" }), Value::Null)];
    events.extend(words.iter().map(|w| chunk(json!({ "content": w }), Value::Null)));
    events.push(chunk(json!({}), json!("stop")));
    let mut out: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    if usage {
        let chunk = json!({ "id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1700000001,
            "model": "gpt-4o-mini", "choices": [] });
        out.push_str(&format!("data: {}\n\n", with_usage(chunk)));
    }
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

fn events(body: &[u8]) -> Vec<Value> {
    sse_data_events(body).filter(|d| *d != b"[DONE]").map(|d| serde_json::from_slice(d).unwrap()).collect()
}

fn reshaped(e: Entry, want: ReplyShape) -> (Entry, Option<ReplayKind>) {
    reshape(e, want, usize::MAX).unwrap()
}

const SSE: ReplyShape = ReplyShape::Sse { include_usage: false };
const SSE_USAGE: ReplyShape = ReplyShape::Sse { include_usage: true };

#[test]
fn a_hit_in_the_stored_mode_is_the_stored_bytes() {
    let json = entry(BodyFormat::Json, text_answer("hi"), (9, 3));
    assert_eq!(reshaped(json.clone(), ReplyShape::Json), (json, None));
    let sse = entry(BodyFormat::Sse, upstream_stream(&["a"], true), (9, 3));
    assert_eq!(reshaped(sse.clone(), SSE_USAGE), (sse, None));
    let bare = entry(BodyFormat::Sse, upstream_stream(&["a"], false), (0, 0));
    assert_eq!(reshaped(bare.clone(), SSE), (bare, None));
}

#[test]
fn a_json_answer_streams_as_role_content_finish_usage_done() {
    let (sse, kind) = reshaped(entry(BodyFormat::Json, text_answer("Hello there"), (9, 3)), SSE_USAGE);
    assert_eq!(kind, Some(ReplayKind::JsonToSse));
    assert_eq!((sse.format, sse.content_type.as_str()), (BodyFormat::Sse, SSE_CONTENT_TYPE));
    assert!(sse.body.ends_with(b"data: [DONE]\n\n"));
    let events = events(&sse.body);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0]["choices"][0]["delta"], json!({ "role": "assistant", "content": "" }));
    assert_eq!(events[1]["choices"][0]["delta"], json!({ "content": "Hello there" }));
    assert_eq!(events[2]["choices"][0]["delta"], json!({}));
    assert_eq!(events[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[3]["choices"], json!([]));
    assert!(usage_in(&sse.body), "usage byte for byte");
    for e in &events {
        assert_eq!((e["id"].as_str(), e["object"].as_str()), (Some("chatcmpl-1"), Some("chat.completion.chunk")));
        assert_eq!((e["created"].as_u64(), e["model"].as_str()), (Some(1700000000), Some("gpt-4o-mini")));
    }
    assert!(check_sse(&sse.body, &["stop".into()]).is_ok(), "a complete stream by the store's own check");
    let (bare, _) = reshaped(entry(BodyFormat::Json, text_answer("x"), (9, 3)), SSE);
    assert!(events_of_usage(&bare.body).is_empty(), "no usage chunk unless asked for");
}

fn events_of_usage(body: &[u8]) -> Vec<Value> {
    events(body).into_iter().filter(|e| e.get("usage").is_some()).collect()
}

#[test]
fn a_stream_answers_json_with_the_same_content_finish_and_usage() {
    let stored = upstream_stream(&["Paris ", "is ", "the ", "capital"], true);
    let (json, kind) = reshaped(entry(BodyFormat::Sse, stored, (9, 3)), ReplyShape::Json);
    assert_eq!(kind, Some(ReplayKind::SseToJson));
    assert_eq!(json.content_type, JSON_CONTENT_TYPE);
    let v: Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-2");
    assert_eq!(
        v["choices"][0]["message"],
        json!({ "role": "assistant", "content": "Paris is the capital", "refusal": null })
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(usage_in(&json.body), "usage byte for byte");
    assert!(check_json(&json.body, &["stop".into()]).is_ok());
}

#[test]
fn a_stream_with_usage_streams_without_it_when_not_asked() {
    let stored = upstream_stream(&["a ", "b"], true);
    let (sse, kind) = reshaped(entry(BodyFormat::Sse, stored.clone(), (9, 3)), SSE);
    assert_eq!(kind, Some(ReplayKind::SseToSse));
    assert!(events_of_usage(&sse.body).is_empty());
    assert_eq!(Completion::from_sse(&sse.body).unwrap().choices, Completion::from_sse(&stored).unwrap().choices);
}

#[test]
fn without_usage_a_stream_answers_neither_json_nor_a_usage_request() {
    let bare = entry(BodyFormat::Sse, upstream_stream(&["a"], false), (0, 0));
    assert_eq!(reshape(bare.clone(), ReplyShape::Json, usize::MAX), Err(ReplayError::NoUsage));
    assert_eq!(reshape(bare, SSE_USAGE, usize::MAX), Err(ReplayError::NoUsage));
}

#[test]
fn tool_calls_stream_with_argument_deltas_and_fold_back() {
    let original = Completion::from_json(&tool_answer()).unwrap();
    let mut long = original.clone();
    long.choices[0].tool_calls[0].arguments = format!("{{\"q\":\"{}\"}}", "é".repeat(300));
    for completion in [original, long] {
        let body = write::json(&completion);
        let (sse, _) = reshaped(entry(BodyFormat::Json, body, (9, 3)), SSE_USAGE);
        let events = events(&sse.body);
        let starts: Vec<&Value> = events
            .iter()
            .filter_map(|e| {
                e["choices"][0]["delta"]["tool_calls"][0]
                    .as_object()
                    .map(|_| &e["choices"][0]["delta"]["tool_calls"][0])
            })
            .filter(|t| t.get("id").is_some())
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(
            starts[0],
            &json!({ "index": 0, "id": "call_a", "type": "function", "function": { "name": "get_weather", "arguments": "" } })
        );
        assert!(events.last().unwrap().get("usage").is_some() && usage_in(&sse.body));
        assert_eq!(Completion::from_sse(&sse.body).unwrap(), completion, "content, tool calls, finish, usage");
        let (back, kind) = reshaped(sse, ReplyShape::Json);
        assert_eq!(kind, Some(ReplayKind::SseToJson));
        assert_eq!(Completion::from_json(&back.body).unwrap(), completion);
    }
}

#[test]
fn streamed_tool_call_arguments_are_joined_by_index() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({ "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
        )
    };
    let mut body = String::new();
    body += &chunk(
        json!({ "role": "assistant", "content": null, "tool_calls": [{ "index": 0, "id": "c1", "type": "function", "function": { "name": "f", "arguments": "" } }] }),
        Value::Null,
    );
    body += &chunk(
        json!({ "tool_calls": [{ "index": 1, "id": "c2", "type": "function", "function": { "name": "g", "arguments": "{\"b\"" } }] }),
        Value::Null,
    );
    body += &chunk(json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"a\":" } }] }), Value::Null);
    body += &chunk(
        json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "1}" } }, { "index": 1, "function": { "arguments": ":2}" } }] }),
        Value::Null,
    );
    body += &chunk(json!({}), json!("tool_calls"));
    body += "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
    let (json, _) = reshaped(entry(BodyFormat::Sse, body.into_bytes(), (1, 2)), ReplyShape::Json);
    let v: Value = serde_json::from_slice(&json.body).unwrap();
    let message = &v["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(
        message["tool_calls"][0],
        json!({ "id": "c1", "type": "function", "function": { "name": "f", "arguments": "{\"a\":1}" } })
    );
    assert_eq!(message["tool_calls"][1]["function"]["arguments"], "{\"b\":2}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn multibyte_content_is_cut_at_character_boundaries() {
    let text = "ü€😀".repeat(200);
    let (sse, _) = reshaped(entry(BodyFormat::Json, text_answer(&text), (9, 3)), SSE);
    let pieces: Vec<String> = events(&sse.body)
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(pieces.len() > 3, "streamed in several pieces");
    assert_eq!(pieces.concat(), text);
}

#[test]
fn hostile_stored_bodies_are_refused_never_a_panic() {
    let json_cases: Vec<(Vec<u8>, ReplayError)> = vec![
        (b"{not json".to_vec(), ReplayError::Malformed),
        (vec![0xff, 0xfe, b'{'], ReplayError::Malformed),
        (b"[]".to_vec(), ReplayError::Malformed),
        ("[".repeat(10_000).into_bytes(), ReplayError::Malformed),
        (br#"{"choices":"many"}"#.to_vec(), ReplayError::Malformed),
        (br#"{"id":"x"}"#.to_vec(), ReplayError::Incomplete),
        (br#"{"choices":[]}"#.to_vec(), ReplayError::Incomplete),
        (br#"{"choices":[{"message":{"content":"x"}}]}"#.to_vec(), ReplayError::Incomplete),
        (br#"{"choices":[{"finish_reason":"stop"}]}"#.to_vec(), ReplayError::Incomplete),
        (br#"{"choices":[{"message":{"content":7},"finish_reason":"stop"}]}"#.to_vec(), ReplayError::Malformed),
        (br#"{"choices":[{"message":{"tool_calls":[{"id":"c"}]},"finish_reason":"stop"}]}"#.to_vec(), ReplayError::Incomplete),
        (br#"{"object":"text_completion","choices":[{"text":"x","finish_reason":"stop"}]}"#.to_vec(), ReplayError::Unsupported),
        (br#"{"choices":[{"message":{"content":"x"},"logprobs":{"content":[]},"finish_reason":"stop"}]}"#.to_vec(), ReplayError::Unsupported),
        (br#"{"choices":[{"message":{"content":"x","reasoning_content":"hm"},"finish_reason":"stop"}]}"#.to_vec(), ReplayError::Unsupported),
        (br#"{"choices":[{"message":{"content":"x","audio":{"id":"a"}},"finish_reason":"stop"}]}"#.to_vec(), ReplayError::Unsupported),
        (br#"{"choices":[{"message":{"tool_calls":[{"type":"custom","custom":{"name":"n","input":"i"}}]},"finish_reason":"stop"}]}"#.to_vec(), ReplayError::Unsupported),
    ];
    for (body, expected) in json_cases {
        let shown = String::from_utf8_lossy(&body).chars().take(60).collect::<String>();
        assert_eq!(reshape(entry(BodyFormat::Json, body, (1, 1)), SSE_USAGE, usize::MAX), Err(expected), "{shown}");
    }
    let done = "data: [DONE]\n\n";
    let stop =
        r#"data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}"#;
    let sse_cases: Vec<(String, ReplayError)> = vec![
        (format!("{stop}\n\n"), ReplayError::Incomplete),
        (format!("{stop}\n\n{done}{stop}\n\n"), ReplayError::Malformed),
        (format!("data: {{broken\n\n{done}"), ReplayError::Malformed),
        (done.to_string(), ReplayError::Incomplete),
        (format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"x\"}}}}]}}\n\n{done}"), ReplayError::Incomplete),
        (format!("data: {{\"error\":{{\"message\":\"boom\"}}}}\n\n{done}"), ReplayError::Incomplete),
        (format!("data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"function\":{{\"arguments\":\"x\"}}}}]}},\"finish_reason\":\"stop\"}}]}}\n\n{done}"), ReplayError::Malformed),
        (format!("data: {{\"choices\":[{{\"delta\":{{\"tool_calls\":[{{\"index\":0,\"function\":{{\"arguments\":\"x\"}}}}]}},\"finish_reason\":\"stop\"}}]}}\n\n{done}"), ReplayError::Incomplete),
    ];
    for (body, expected) in sse_cases {
        assert_eq!(
            reshape(entry(BodyFormat::Sse, body.clone().into_bytes(), (0, 0)), ReplyShape::Json, usize::MAX),
            Err(expected),
            "{body}"
        );
    }
    // Far-apart indexes cost no memory; too many distinct ones are refused.
    let sparse = format!("data: {{\"choices\":[{{\"index\":4000000000,\"delta\":{{\"content\":\"x\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":1}}}}\n\n{done}");
    assert!(reshape(entry(BodyFormat::Sse, sparse.into_bytes(), (0, 0)), ReplyShape::Json, usize::MAX).is_ok());
    let many: String = (0..1000)
        .map(|i| format!("data: {{\"choices\":[{{\"index\":{i},\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n"))
        .collect();
    assert_eq!(
        reshape(entry(BodyFormat::Sse, (many + done).into_bytes(), (0, 0)), ReplyShape::Json, usize::MAX),
        Err(ReplayError::Unsupported)
    );
}

#[test]
fn huge_content_is_bounded_by_the_limit() {
    let text = "x".repeat(4 * 1024 * 1024);
    let stored = entry(BodyFormat::Json, text_answer(&text), (9, 3));
    assert_eq!(reshape(stored.clone(), SSE, 1024 * 1024), Err(ReplayError::TooLarge));
    let (sse, _) = reshape(stored, SSE, 16 * 1024 * 1024).unwrap();
    assert!(sse.body.len() < 3 * text.len(), "linear in the content: {}", sse.body.len());
    assert_eq!(Completion::from_sse(&sse.body).unwrap().choices[0].content.as_deref(), Some(text.as_str()));
}

#[test]
fn empty_and_null_content_survive_the_round_trip() {
    for message in [
        json!({ "role": "assistant", "content": "" }),
        json!({ "role": "assistant", "content": null, "refusal": "I can't help with that." }),
    ] {
        let original = Completion::from_json(&json_answer(message.clone(), "stop")).unwrap();
        let (sse, _) = reshaped(entry(BodyFormat::Json, json_answer(message, "stop"), (9, 3)), SSE_USAGE);
        assert_eq!(Completion::from_sse(&sse.body).unwrap(), original);
    }
}

proptest! {
    #[test]
    fn any_text_and_arguments_round_trip(content in ".{0,700}", arguments in ".{0,600}", with_tool in any::<bool>()) {
        let tool_calls = if with_tool {
            json!([{ "id": "c", "type": "function", "function": { "name": "f", "arguments": arguments } }])
        } else {
            json!([])
        };
        let body = json_answer(json!({ "role": "assistant", "content": content, "tool_calls": tool_calls }), "stop");
        let original = Completion::from_json(&body).unwrap();
        let (sse, _) = reshape(entry(BodyFormat::Json, body, (9, 3)), SSE_USAGE, usize::MAX).unwrap();
        prop_assert_eq!(&Completion::from_sse(&sse.body).unwrap(), &original);
        let (json, _) = reshape(sse, ReplyShape::Json, usize::MAX).unwrap();
        prop_assert_eq!(Completion::from_json(&json.body).unwrap(), original);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = reshape(entry(BodyFormat::Json, bytes.clone(), (1, 1)), SSE_USAGE, usize::MAX);
        let _ = reshape(entry(BodyFormat::Sse, bytes, (0, 0)), ReplyShape::Json, usize::MAX);
    }
}
