//! A `Completion` written as OpenAI writes it: a `chat.completion` document, or a stream of
//! `chat.completion.chunk` events (role chunk, content chunks, tool-call chunks with their
//! arguments in pieces, finish chunk, usage chunk on request, `data: [DONE]`). Fields are
//! written in OpenAI's order; absent metadata stays absent.
use super::completion::{Choice, Completion, Meta, RawJson};
use serde::Serialize;
use serde_json::value::RawValue;

/// Streamed text is cut into pieces of at most this many bytes (at character boundaries):
/// clients render a stream as it comes, and a piece per token would only add bytes.
const PIECE_BYTES: usize = 256;

#[derive(Serialize, Clone, Copy)]
struct MetaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
}

impl<'a> MetaOut<'a> {
    fn new(meta: &'a Meta, object: &'static str) -> MetaOut<'a> {
        MetaOut {
            id: meta.id.as_deref(),
            object,
            created: meta.created,
            model: meta.model.as_deref(),
            system_fingerprint: meta.system_fingerprint.as_deref(),
            service_tier: meta.service_tier.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    /// Streamed tool calls name their position; JSON ones are in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    function: FunctionOut<'a>,
}

// ---- JSON ------------------------------------------------------------------------------------

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'a str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct JsonChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    meta: MetaOut<'a>,
    choices: Vec<JsonChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a RawValue>,
}

/// The `chat.completion` document.
pub fn json(completion: &Completion) -> Vec<u8> {
    let choices = completion
        .choices
        .iter()
        .map(|c| JsonChoiceOut {
            index: c.index,
            message: MessageOut {
                role: &c.role,
                content: c.content.as_deref(),
                refusal: c.refusal.as_deref(),
                tool_calls: c
                    .tool_calls
                    .iter()
                    .map(|t| ToolCallOut {
                        index: None,
                        id: t.id.as_deref(),
                        kind: Some(&t.kind),
                        function: FunctionOut { name: Some(&t.name), arguments: &t.arguments },
                    })
                    .collect(),
            },
            logprobs: None,
            finish_reason: &c.finish_reason,
        })
        .collect();
    let out = JsonOut {
        meta: MetaOut::new(&completion.meta, "chat.completion"),
        choices,
        usage: completion.usage.as_ref().map(RawJson::get),
    };
    // Serializing these plain structs into memory cannot fail; an empty body would be refused
    // by the client rather than misread.
    serde_json::to_vec(&out).unwrap_or_default()
}

// ---- SSE -------------------------------------------------------------------------------------

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    /// `Some(None)` writes `null`: the role chunk of an answer whose content is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ChunkChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    #[serde(flatten)]
    meta: MetaOut<'a>,
    choices: Vec<ChunkChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a RawValue>,
}

/// Pieces of at most `PIECE_BYTES` bytes, cut at character boundaries; none for "".
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = PIECE_BYTES.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at_checked(end)?;
        rest = tail;
        Some(piece)
    })
}

struct Events<'a> {
    meta: MetaOut<'a>,
    out: Vec<u8>,
}

impl<'a> Events<'a> {
    fn push(&mut self, choices: Vec<ChunkChoiceOut<'a>>, usage: Option<&'a RawValue>) {
        let chunk = ChunkOut { meta: self.meta, choices, usage };
        self.out.extend_from_slice(b"data: ");
        // As in `json`: serializing into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.out, &chunk);
        self.out.extend_from_slice(b"\n\n");
    }

    fn delta(&mut self, index: u32, delta: DeltaOut<'a>, finish_reason: Option<&'a str>) {
        self.push(vec![ChunkChoiceOut { index, delta, logprobs: None, finish_reason }], None);
    }
}

fn stream_choice<'a>(events: &mut Events<'a>, choice: &'a Choice) {
    let index = choice.index;
    // The role chunk says whether content is text (`""`, then its pieces) or null.
    let role = DeltaOut {
        role: Some(&choice.role),
        content: Some(choice.content.as_ref().map(|_| "")),
        refusal: choice.refusal.as_ref().map(|_| ""),
        ..DeltaOut::default()
    };
    events.delta(index, role, None);
    for piece in choice.content.as_deref().into_iter().flat_map(pieces) {
        events.delta(index, DeltaOut { content: Some(Some(piece)), ..DeltaOut::default() }, None);
    }
    for piece in choice.refusal.as_deref().into_iter().flat_map(pieces) {
        events.delta(index, DeltaOut { refusal: Some(piece), ..DeltaOut::default() }, None);
    }
    for (position, call) in choice.tool_calls.iter().enumerate() {
        let start = ToolCallOut {
            index: Some(position),
            id: call.id.as_deref(),
            kind: Some(&call.kind),
            function: FunctionOut { name: Some(&call.name), arguments: "" },
        };
        events.delta(index, DeltaOut { tool_calls: vec![start], ..DeltaOut::default() }, None);
        for piece in pieces(&call.arguments) {
            let part = ToolCallOut {
                index: Some(position),
                id: None,
                kind: None,
                function: FunctionOut { name: None, arguments: piece },
            };
            events.delta(index, DeltaOut { tool_calls: vec![part], ..DeltaOut::default() }, None);
        }
    }
    events.delta(index, DeltaOut::default(), Some(&choice.finish_reason));
}

/// The stream of `completion`, with its usage chunk when `include_usage`.
pub fn sse(completion: &Completion, include_usage: bool) -> Vec<u8> {
    let mut events = Events { meta: MetaOut::new(&completion.meta, "chat.completion.chunk"), out: Vec::new() };
    for choice in &completion.choices {
        stream_choice(&mut events, choice);
    }
    if let Some(usage) = completion.usage.as_ref().filter(|_| include_usage) {
        events.push(Vec::new(), Some(usage.get()));
    }
    events.out.extend_from_slice(b"data: [DONE]\n\n");
    events.out
}
