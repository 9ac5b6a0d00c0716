//! The mode-free reading of one chat completion, from a JSON answer or by folding a complete
//! SSE stream (the way OpenAI's SDKs accumulate deltas: strings appended, ids set once).
use super::ReplayError;
use crate::completion::sse_data_events;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// More choices or tool calls than this in one answer is not a completion we replay (it
/// bounds the work a hostile stream's indexes can cause).
const MAX_CHOICES: usize = 64;
const MAX_TOOL_CALLS: usize = 128;

/// The completion's metadata, carried over to the other mode unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    pub id: Option<String>,
    pub created: Option<u64>,
    pub model: Option<String>,
    pub system_fingerprint: Option<String>,
    pub service_tier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: Option<String>,
    /// `function` (the only kind replayed).
    pub kind: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub index: u32,
    pub role: String,
    /// `None` when the message's content is null (a tool call answer).
    pub content: Option<String>,
    pub refusal: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub meta: Meta,
    pub choices: Vec<Choice>,
    /// The provider's `usage` object, byte for byte (details such as
    /// `prompt_tokens_details` included).
    pub usage: Option<RawJson>,
}

/// A JSON value kept as the bytes it was read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    pub fn get(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for RawJson {}

// ---- JSON ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct JsonAnswer {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_fingerprint: Option<String>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    choices: Option<Vec<JsonChoice>>,
    #[serde(default)]
    usage: Option<RawJson>,
}

#[derive(Deserialize)]
struct JsonChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    message: Option<Message>,
    /// `null` counts as absent.
    #[serde(default)]
    logprobs: Option<IgnoredAny>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// A JSON message or a stream's delta: the same fields.
#[derive(Deserialize, Default)]
struct Message {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallPart>>,
    /// Everything else (`audio`, `reasoning_content`, `annotations`, `function_call`...).
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

impl Message {
    /// Fields the other mode could not carry: any that is set (an empty array counts as unset).
    fn has_unsupported(&self) -> bool {
        self.other.values().any(|v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)))
    }
}

/// A whole tool call (JSON) or one delta of it (SSE).
#[derive(Deserialize)]
struct ToolCallPart {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    function: Option<FunctionPart>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct FunctionPart {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// serde reads a JSON array into a struct by position: only objects are answers.
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn is_function(kind: Option<&str>) -> bool {
    kind.is_none_or(|k| k == "function")
}

impl Completion {
    /// A JSON chat completion (`object: chat.completion`).
    pub fn from_json(body: &[u8]) -> Result<Completion, ReplayError> {
        if !is_object(body) {
            return Err(ReplayError::Malformed);
        }
        let answer: JsonAnswer = serde_json::from_slice(body).map_err(|_| ReplayError::Malformed)?;
        if answer.object.as_deref().is_some_and(|o| o != "chat.completion") {
            return Err(ReplayError::Unsupported);
        }
        let parts = answer.choices.ok_or(ReplayError::Incomplete)?;
        if parts.is_empty() {
            return Err(ReplayError::Incomplete);
        }
        if parts.len() > MAX_CHOICES {
            return Err(ReplayError::Unsupported);
        }
        let mut choices = Vec::with_capacity(parts.len());
        for part in parts {
            if part.logprobs.is_some() {
                return Err(ReplayError::Unsupported);
            }
            let message = part.message.ok_or(ReplayError::Incomplete)?;
            let finish_reason = part.finish_reason.ok_or(ReplayError::Incomplete)?;
            if message.has_unsupported() {
                return Err(ReplayError::Unsupported);
            }
            let calls = message.tool_calls.unwrap_or_default();
            if calls.len() > MAX_TOOL_CALLS {
                return Err(ReplayError::Unsupported);
            }
            let mut tool_calls = Vec::with_capacity(calls.len());
            for call in calls {
                if !call.other.is_empty() || !is_function(call.kind.as_deref()) {
                    return Err(ReplayError::Unsupported);
                }
                let function = call.function.ok_or(ReplayError::Incomplete)?;
                tool_calls.push(ToolCall {
                    id: call.id,
                    kind: call.kind.unwrap_or_else(|| "function".into()),
                    name: function.name.ok_or(ReplayError::Incomplete)?,
                    arguments: function.arguments.unwrap_or_default(),
                });
            }
            choices.push(Choice {
                index: part.index,
                role: message.role.unwrap_or_else(|| "assistant".into()),
                content: message.content,
                refusal: message.refusal,
                tool_calls,
                finish_reason,
            });
        }
        let meta = Meta {
            id: answer.id,
            created: answer.created,
            model: answer.model,
            system_fingerprint: answer.system_fingerprint,
            service_tier: answer.service_tier,
        };
        Ok(Completion { meta, choices, usage: answer.usage })
    }

    /// A complete SSE stream of `chat.completion.chunk`s ending in `data: [DONE]`, folded.
    pub fn from_sse(body: &[u8]) -> Result<Completion, ReplayError> {
        let mut fold = Fold::default();
        let mut done = false;
        for data in sse_data_events(body) {
            if done {
                return Err(ReplayError::Malformed);
            }
            if data == b"[DONE]" {
                done = true;
                continue;
            }
            if !is_object(data) {
                return Err(ReplayError::Malformed);
            }
            let chunk: Chunk = serde_json::from_slice(data).map_err(|_| ReplayError::Malformed)?;
            fold.add(chunk)?;
        }
        if !done {
            return Err(ReplayError::Incomplete);
        }
        fold.finish()
    }
}

// ---- SSE -------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    system_fingerprint: Option<String>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<RawJson>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Message>,
    #[serde(default)]
    logprobs: Option<IgnoredAny>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// One choice while its deltas come in.
#[derive(Default)]
struct Partial {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    /// By the stream's tool-call index.
    tool_calls: BTreeMap<u32, PartialCall>,
    finish_reason: Option<String>,
}

#[derive(Default)]
struct PartialCall {
    id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    arguments: String,
}

#[derive(Default)]
struct Fold {
    meta: Meta,
    choices: BTreeMap<u32, Partial>,
    usage: Option<RawJson>,
}

/// Appends a streamed piece: a string seen once (even empty) makes the field present.
fn append(field: &mut Option<String>, piece: Option<String>) {
    if let Some(piece) = piece {
        field.get_or_insert_with(String::new).push_str(&piece);
    }
}

fn first<T>(field: &mut Option<T>, value: Option<T>) {
    if field.is_none() {
        *field = value;
    }
}

impl Fold {
    fn add(&mut self, chunk: Chunk) -> Result<(), ReplayError> {
        if chunk.error.is_some() {
            return Err(ReplayError::Incomplete);
        }
        if chunk.object.as_deref().is_some_and(|o| o != "chat.completion.chunk") {
            return Err(ReplayError::Unsupported);
        }
        first(&mut self.meta.id, chunk.id);
        first(&mut self.meta.created, chunk.created);
        first(&mut self.meta.model, chunk.model);
        first(&mut self.meta.system_fingerprint, chunk.system_fingerprint);
        first(&mut self.meta.service_tier, chunk.service_tier);
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for part in chunk.choices.unwrap_or_default() {
            if part.logprobs.is_some() {
                return Err(ReplayError::Unsupported);
            }
            if !self.choices.contains_key(&part.index) && self.choices.len() >= MAX_CHOICES {
                return Err(ReplayError::Unsupported);
            }
            let choice = self.choices.entry(part.index).or_default();
            if part.finish_reason.is_some() {
                choice.finish_reason = part.finish_reason;
            }
            let delta = part.delta.unwrap_or_default();
            if delta.has_unsupported() {
                return Err(ReplayError::Unsupported);
            }
            first(&mut choice.role, delta.role);
            append(&mut choice.content, delta.content);
            append(&mut choice.refusal, delta.refusal);
            for call in delta.tool_calls.unwrap_or_default() {
                if !call.other.is_empty() || !is_function(call.kind.as_deref()) {
                    return Err(ReplayError::Unsupported);
                }
                // A streamed tool call names its index: without it the pieces cannot be joined.
                let index = call.index.ok_or(ReplayError::Malformed)?;
                if !choice.tool_calls.contains_key(&index) && choice.tool_calls.len() >= MAX_TOOL_CALLS {
                    return Err(ReplayError::Unsupported);
                }
                let partial = choice.tool_calls.entry(index).or_default();
                first(&mut partial.id, call.id);
                first(&mut partial.kind, call.kind);
                if let Some(function) = call.function {
                    append(&mut partial.name, function.name);
                    partial.arguments.push_str(function.arguments.as_deref().unwrap_or_default());
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Completion, ReplayError> {
        if self.choices.is_empty() {
            return Err(ReplayError::Incomplete);
        }
        let mut choices = Vec::with_capacity(self.choices.len());
        for (index, partial) in self.choices {
            let mut tool_calls = Vec::with_capacity(partial.tool_calls.len());
            for call in partial.tool_calls.into_values() {
                tool_calls.push(ToolCall {
                    id: call.id,
                    kind: call.kind.unwrap_or_else(|| "function".into()),
                    name: call.name.ok_or(ReplayError::Incomplete)?,
                    arguments: call.arguments,
                });
            }
            choices.push(Choice {
                index,
                role: partial.role.unwrap_or_else(|| "assistant".into()),
                content: partial.content,
                refusal: partial.refusal,
                tool_calls,
                finish_reason: partial.finish_reason.ok_or(ReplayError::Incomplete)?,
            });
        }
        Ok(Completion { meta: self.meta, choices, usage: self.usage })
    }
}
