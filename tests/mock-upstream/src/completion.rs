//! Deterministic answers: the content is derived from the request, so the same prompt always
//! gets the same words (ids differ per request: they carry the request's serial number).
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const WORDS: &[&str] = &[
    "the", "model", "answers", "with", "a", "short", "and", "helpful", "reply", "about", "your", "question", "Paris",
    "is", "capital", "of", "France", "Rust", "borrow", "checker", "keeps", "memory", "safe", "Envoy", "proxies",
    "requests", "cache", "saves", "tokens", "latency", "matters", "here", "is", "an", "example", "to", "consider",
];

pub struct Answer {
    pub id: String,
    pub model: String,
    pub words: Vec<String>,
    pub finish_reason: String,
    pub prompt_tokens: u64,
    /// A request declaring `tools` is answered with a call to the first one.
    pub tool_call: Option<ToolCall>,
}

pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text, as OpenAI sends it: `{"query":"<the answer's words>"}`.
    pub arguments: String,
}

/// A streamed tool call's arguments come in pieces of about this many bytes, as a model
/// generates them token by token.
const ARGUMENT_PIECE_BYTES: usize = 7;

fn argument_pieces(arguments: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for c in arguments.chars() {
        piece.push(c);
        if piece.len() >= ARGUMENT_PIECE_BYTES {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

impl Answer {
    pub fn completion_tokens(&self) -> u64 {
        self.words.len() as u64
    }

    pub fn content(&self) -> String {
        self.words.join(" ")
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens(),
            "total_tokens": self.prompt_tokens + self.completion_tokens()
        })
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        // Content parts (`{"type":"text","text":..}`) or, for `prompt`/`input`, an array of strings.
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.as_str().or_else(|| p.get("text").and_then(Value::as_str)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Roughly OpenAI's accounting: ~4 characters a token, plus per-message overhead.
pub fn prompt_tokens(request: &Value) -> u64 {
    let messages = request.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut chars: usize = messages.iter().map(|m| m.get("content").map_or(0, |c| text_of(c).chars().count())).sum();
    chars += request.get("prompt").map_or(0, |p| text_of(p).chars().count());
    chars += request.get("input").map_or(0, |p| text_of(p).chars().count());
    (chars as u64).div_ceil(4) + 4 * messages.len() as u64 + 3
}

pub fn answer(request: &Value, body: &[u8], serial: u64, finish_override: Option<String>) -> Answer {
    let digest = Sha256::digest(serde_json::to_vec(request.get("messages").unwrap_or(request)).unwrap_or_default());
    let seed = digest.iter().take(8).fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let natural_len = 12 + (seed % 29) as usize;
    let limit = request
        .get("max_completion_tokens")
        .or_else(|| request.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let len = limit.map_or(natural_len, |l| l.min(natural_len));
    let mut state = seed | 1;
    let words: Vec<String> = (0..len)
        .map(|_| {
            // xorshift: deterministic, cheap, good enough to vary the words.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            WORDS.get((state % WORDS.len() as u64) as usize).copied().unwrap_or("ok").to_string()
        })
        .collect();
    let body_hash: String = Sha256::digest(body).iter().take(4).map(|b| format!("{b:02x}")).collect();
    let tool = request.pointer("/tools/0/function/name").and_then(Value::as_str);
    let tool_call = tool.map(|name| ToolCall {
        id: format!("call_mock_{serial}_{body_hash}"),
        name: name.to_string(),
        arguments: json!({ "query": words.join(" ") }).to_string(),
    });
    let finish_reason = finish_override.unwrap_or_else(|| {
        if tool_call.is_some() {
            "tool_calls".into()
        } else if limit.is_some_and(|l| l < natural_len) {
            "length".into()
        } else {
            "stop".into()
        }
    });
    Answer {
        id: format!("chatcmpl-mock-{serial}-{body_hash}"),
        model: request.get("model").and_then(Value::as_str).unwrap_or("unknown").to_string(),
        words,
        finish_reason,
        prompt_tokens: prompt_tokens(request),
        tool_call,
    }
}

pub fn chat_completion(a: &Answer, created: u64) -> Value {
    json!({
        "id": a.id,
        "object": "chat.completion",
        "created": created,
        "model": a.model,
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "message": message(a),
            "logprobs": null,
            "finish_reason": a.finish_reason
        }],
        "usage": a.usage()
    })
}

fn message(a: &Answer) -> Value {
    match &a.tool_call {
        None => json!({ "role": "assistant", "content": a.content(), "refusal": null }),
        Some(call) => json!({ "role": "assistant", "content": null, "refusal": null, "tool_calls": [{
            "id": call.id, "type": "function", "function": { "name": call.name, "arguments": call.arguments }
        }] }),
    }
}

pub fn text_completion(a: &Answer, created: u64) -> Value {
    json!({
        "id": a.id.replace("chatcmpl", "cmpl"),
        "object": "text_completion",
        "created": created,
        "model": a.model,
        "choices": [{ "index": 0, "text": a.content(), "logprobs": null, "finish_reason": a.finish_reason }],
        "usage": a.usage()
    })
}

/// One deterministic 8-float vector per input item (a string, or token ids), as OpenAI returns
/// one embedding per element of an `input` array.
pub fn embeddings(request: &Value, body: &[u8]) -> Value {
    let items: Vec<Value> = match request.get("input") {
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_number()) => items.clone(),
        Some(single) => vec![single.clone()],
        None => vec![Value::from(String::from_utf8_lossy(body).into_owned())],
    };
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let digest = Sha256::digest(item.to_string());
            let vector: Vec<f64> = digest.iter().take(8).map(|b| f64::from(*b) / 255.0 - 0.5).collect();
            json!({ "object": "embedding", "index": index, "embedding": vector })
        })
        .collect();
    let tokens = prompt_tokens(request);
    json!({
        "object": "list",
        "data": data,
        "model": request.get("model").and_then(Value::as_str).unwrap_or("unknown"),
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens }
    })
}

fn chunk(a: &Answer, created: u64, delta: Value, finish: Value) -> Value {
    json!({
        "id": a.id, "object": "chat.completion.chunk", "created": created, "model": a.model,
        "system_fingerprint": "fp_mock",
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]
    })
}

/// The SSE events of a streamed answer, in order, each a complete `data: ...\n\n` event.
pub fn sse_events(a: &Answer, created: u64, include_usage: bool) -> Vec<String> {
    let event = |v: Value| format!("data: {v}\n\n");
    let mut events = Vec::new();
    if let Some(call) = &a.tool_call {
        let start = json!({ "role": "assistant", "content": null, "tool_calls": [{
            "index": 0, "id": call.id, "type": "function", "function": { "name": call.name, "arguments": "" }
        }] });
        events.push(event(chunk(a, created, start, Value::Null)));
        for piece in argument_pieces(&call.arguments) {
            let delta = json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] });
            events.push(event(chunk(a, created, delta, Value::Null)));
        }
    } else {
        events.push(event(chunk(a, created, json!({ "role": "assistant", "content": "" }), Value::Null)));
        let n = a.words.len();
        for (i, word) in a.words.iter().enumerate() {
            let text = if i + 1 < n { format!("{word} ") } else { word.clone() };
            events.push(event(chunk(a, created, json!({ "content": text }), Value::Null)));
        }
    }
    events.push(event(chunk(a, created, json!({}), json!(a.finish_reason))));
    if include_usage {
        events.push(event(json!({
            "id": a.id, "object": "chat.completion.chunk", "created": created, "model": a.model,
            "system_fingerprint": "fp_mock", "choices": [], "usage": a.usage()
        })));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}
