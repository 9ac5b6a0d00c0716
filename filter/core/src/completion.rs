//! Checks that a response body is a complete, successful completion worth storing, and reads
//! its token usage. JSON bodies are parsed whole; SSE streams event by event.
use crate::gate::NoStoreReason;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;

/// Token usage as reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The few fields of a completion (or one SSE chunk) the checks read. Everything else —
/// message text, embeddings — is skipped by the parser without being built, which is most of
/// an answer's bytes.
#[derive(Deserialize)]
struct Answer<'a> {
    /// `null` counts as absent.
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
    /// Embeddings answer with `data` instead of `choices`.
    #[serde(default)]
    data: Option<IgnoredAny>,
    #[serde(default)]
    usage: Option<UsageField>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UsageField {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl UsageField {
    fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_tokens.unwrap_or(0), completion_tokens: self.completion_tokens.unwrap_or(0) }
    }
}

fn finish_reasons_ok(choices: &[Choice<'_>], allowed: &[String]) -> Result<(), NoStoreReason> {
    for reason in choices.iter().filter_map(|c| c.finish_reason.as_deref()) {
        if !allowed.iter().any(|a| a == reason) {
            return Err(NoStoreReason::FinishReason);
        }
    }
    Ok(())
}

/// A complete JSON completion (chat, legacy text, or embeddings), with no `error` object and
/// only allowed finish reasons.
pub fn check_json(body: &[u8], allowed_finish: &[String]) -> Result<Usage, NoStoreReason> {
    let answer: Answer<'_> = serde_json::from_slice(body).map_err(|_| NoStoreReason::Unparseable)?;
    if answer.error.is_some() {
        return Err(NoStoreReason::ErrorObject);
    }
    let choices = answer.choices.as_deref().unwrap_or_default();
    if choices.is_empty() && answer.data.is_none() {
        return Err(NoStoreReason::Unparseable);
    }
    if !choices.iter().all(|c| c.finish_reason.is_some()) {
        return Err(NoStoreReason::Incomplete);
    }
    finish_reasons_ok(choices, allowed_finish)?;
    Ok(answer.usage.map(|u| u.usage()).unwrap_or_default())
}

/// The `data:` payloads of an SSE body, in order. Comments and other fields are skipped.
pub fn sse_data_events(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let data = line.strip_prefix(b"data:")?;
        Some(data.strip_prefix(b" ").unwrap_or(data))
    })
}

/// A complete SSE stream: ends with `data: [DONE]`, no error event, a finish reason for the
/// choices, all allowed. Usage comes from the final usage chunk when the client asked for it.
pub fn check_sse(body: &[u8], allowed_finish: &[String]) -> Result<Usage, NoStoreReason> {
    let mut done = false;
    let mut finished = false;
    let mut usage = Usage::default();
    for data in sse_data_events(body) {
        if done {
            return Err(NoStoreReason::Unparseable);
        }
        if data == b"[DONE]" {
            done = true;
            continue;
        }
        let chunk: Answer<'_> = serde_json::from_slice(data).map_err(|_| NoStoreReason::Unparseable)?;
        if chunk.error.is_some() {
            return Err(NoStoreReason::ErrorObject);
        }
        let choices = chunk.choices.as_deref().unwrap_or_default();
        finished |= choices.iter().any(|c| c.finish_reason.is_some());
        finish_reasons_ok(choices, allowed_finish)?;
        if let Some(u) = &chunk.usage {
            usage = u.usage();
        }
    }
    if !done || !finished {
        return Err(NoStoreReason::Incomplete);
    }
    Ok(usage)
}

/// Token usage of any response body, for settling a rate-limit reservation: the provider's
/// `usage` (JSON body, or the last SSE chunk that carries one), else an estimate of the
/// streamed content at about 4 bytes a token. `None` if the body says nothing usable.
pub fn usage_for_settlement(body: &[u8], sse: bool) -> Option<u64> {
    let total = |u: &UsageField| u.usage().prompt_tokens + u.usage().completion_tokens;
    if !sse {
        let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
        return answer.usage.as_ref().map(total);
    }
    let mut usage = None;
    let mut content_bytes = 0usize;
    for data in sse_data_events(body) {
        let Ok(chunk) = serde_json::from_slice::<Answer<'_>>(data) else { continue };
        if let Some(u) = &chunk.usage {
            usage = Some(total(u));
        }
        content_bytes += chunk
            .choices
            .iter()
            .flatten()
            .filter_map(|c| c.delta.as_ref().and_then(|d| d.content.as_deref()))
            .map(str::len)
            .sum::<usize>();
    }
    usage.or(Some((content_bytes as u64).div_ceil(4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["stop".into(), "length".into()]
    }

    #[test]
    fn json_completion_with_usage() {
        let body = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert_eq!(check_json(body, &allowed()), Ok(Usage { prompt_tokens: 5, completion_tokens: 2 }));
    }

    #[test]
    fn json_refusals() {
        assert_eq!(check_json(b"{not json", &allowed()), Err(NoStoreReason::Unparseable));
        assert_eq!(check_json(br#"{"error":{"message":"boom"}}"#, &allowed()), Err(NoStoreReason::ErrorObject));
        let filtered = br#"{"choices":[{"message":{"content":""},"finish_reason":"content_filter"}]}"#;
        assert_eq!(check_json(filtered, &allowed()), Err(NoStoreReason::FinishReason));
        let unfinished = br#"{"choices":[{"message":{"content":""},"finish_reason":null}]}"#;
        assert_eq!(check_json(unfinished, &allowed()), Err(NoStoreReason::Incomplete));
    }

    #[test]
    fn embeddings_are_storable() {
        let body = br#"{"object":"list","data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":3,"total_tokens":3}}"#;
        assert_eq!(check_json(body, &allowed()), Ok(Usage { prompt_tokens: 3, completion_tokens: 0 }));
    }

    #[test]
    fn sse_complete_and_incomplete() {
        let full = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n\n\
data: [DONE]\n\n";
        assert_eq!(check_sse(full, &allowed()), Ok(Usage { prompt_tokens: 4, completion_tokens: 1 }));
        let cut = &full[..full.len() - 14];
        assert_eq!(check_sse(cut, &allowed()), Err(NoStoreReason::Incomplete));
        let crlf = b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n";
        assert!(check_sse(crlf, &allowed()).is_ok());
    }
}
