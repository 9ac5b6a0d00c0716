//! Replay across modes: one stored chat completion answers JSON and streaming clients alike.
//!
//! # What is stored (the canonical form)
//! The answer exactly as the upstream sent it — a JSON document or a complete SSE stream — under
//! a key that no longer names the mode (`KEY_SCHEMA_VERSION` 3). Why not convert everything to
//! one form when storing: an application asks in one mode (one SDK call) almost always, and a
//! hit in the stored mode then gets the upstream's own bytes back — a stream event for event —
//! with no parse on the hit path. Only a hit in the other mode pays a parse and a rewrite, and
//! only complete answers are ever stored (`completion::check_json` / `check_sse`: a stream
//! without a finish reason and `data: [DONE]` is refused), so a stored stream always folds
//! into a whole completion.
//!
//! # How
//! Both directions go through `Completion`, a mode-free reading of one answer: the metadata
//! (id, created, model, system fingerprint, service tier), per choice the role, content,
//! refusal, tool calls and finish reason, and the `usage` object kept as its raw JSON bytes.
//! Anything the other mode could not carry faithfully — log probabilities, audio, reasoning
//! fields, a legacy text completion, a tool that is not a function — makes the answer
//! unsupported: a miss (counted by the flow), never an approximate answer. Parsing is serde's,
//! bounded by the entry's size; nothing here can panic on stored bytes.
//!
//! Usage: a streaming client gets a usage chunk only when it asked for one
//! (`stream_options.include_usage`). JSON answers always carry `usage`, so a stream stored
//! without its usage chunk cannot answer a JSON client (nor a streaming client that asks for
//! usage): that is a miss, and the fresh answer replaces the entry.
mod completion;
#[cfg(test)]
mod tests;
mod write;

pub use completion::{Choice, Completion, Meta, RawJson, ToolCall};

use crate::cache::Entry;
use crate::gate::BodyFormat;
use crate::key::RequestFacts;
use thiserror::Error;

/// The content type of a stream the filter writes itself (OpenAI's own).
pub const SSE_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// How a client wants its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyShape {
    #[default]
    Json,
    Sse {
        /// `stream_options.include_usage`: a usage chunk before `[DONE]`.
        include_usage: bool,
    },
}

impl ReplyShape {
    pub fn of(facts: &RequestFacts) -> ReplyShape {
        if facts.stream {
            ReplyShape::Sse { include_usage: facts.include_usage }
        } else {
            ReplyShape::Json
        }
    }
}

/// Which rewrite a hit needed (a label of `aurelis_cache_replays_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayKind {
    JsonToSse,
    SseToJson,
    /// A stored stream rewritten for a streaming client that did not ask for its usage chunk.
    SseToSse,
}

impl ReplayKind {
    pub const ALL: [ReplayKind; 3] = [ReplayKind::JsonToSse, ReplayKind::SseToJson, ReplayKind::SseToSse];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonToSse => "json_to_sse",
            Self::SseToJson => "sse_to_json",
            Self::SseToSse => "sse_to_sse",
        }
    }
}

/// Why a stored answer cannot answer a client in its mode. Carries no answer text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum ReplayError {
    #[error("the stored answer is not a well-formed chat completion")]
    Malformed,
    #[error("the stored answer lacks a part of a complete completion")]
    Incomplete,
    #[error("the stored answer carries fields the other mode cannot express")]
    Unsupported,
    #[error("the stored answer has no usage and the client needs one")]
    NoUsage,
    #[error("the rewritten answer would exceed its size bound")]
    TooLarge,
}

impl ReplayError {
    pub const ALL: [ReplayError; 5] = [
        ReplayError::Malformed,
        ReplayError::Incomplete,
        ReplayError::Unsupported,
        ReplayError::NoUsage,
        ReplayError::TooLarge,
    ];

    /// Short snake_case reason, for stat labels.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Incomplete => "incomplete",
            Self::Unsupported => "unsupported",
            Self::NoUsage => "no_usage",
            Self::TooLarge => "too_large",
        }
    }
}

/// Whether a stored answer reported its usage. Read from the token counts stored with the
/// entry, so deciding on a same-mode hit costs no parse: a provider that reports usage always
/// counts at least one prompt token, and a stream's counts come only from its usage chunk.
fn reports_usage(entry: &Entry) -> bool {
    entry.prompt_tokens > 0 || entry.completion_tokens > 0
}

/// `entry` in the shape the client asked for: unchanged when it already is (the usual case,
/// no parse), else rewritten through `Completion`, with the kind of rewrite. `max_bytes`
/// bounds the rewritten body (a stream is larger than its JSON).
pub fn reshape(entry: Entry, want: ReplyShape, max_bytes: usize) -> Result<(Entry, Option<ReplayKind>), ReplayError> {
    match (entry.format, want) {
        (BodyFormat::Json, ReplyShape::Json) => return Ok((entry, None)),
        (BodyFormat::Sse, ReplyShape::Sse { include_usage }) if include_usage == reports_usage(&entry) => {
            return Ok((entry, None))
        }
        _ => {}
    }
    let completion = match entry.format {
        BodyFormat::Json => Completion::from_json(&entry.body)?,
        BodyFormat::Sse => Completion::from_sse(&entry.body)?,
    };
    let (body, format, content_type, kind) = match want {
        ReplyShape::Json => {
            if completion.usage.is_none() {
                return Err(ReplayError::NoUsage);
            }
            (write::json(&completion), BodyFormat::Json, JSON_CONTENT_TYPE, ReplayKind::SseToJson)
        }
        ReplyShape::Sse { include_usage } => {
            if include_usage && completion.usage.is_none() {
                return Err(ReplayError::NoUsage);
            }
            let kind = if entry.format == BodyFormat::Json { ReplayKind::JsonToSse } else { ReplayKind::SseToSse };
            (write::sse(&completion, include_usage), BodyFormat::Sse, SSE_CONTENT_TYPE, kind)
        }
    };
    if body.len() > max_bytes {
        return Err(ReplayError::TooLarge);
    }
    Ok((Entry { body, format, content_type: content_type.to_string(), ..entry }, Some(kind)))
}
