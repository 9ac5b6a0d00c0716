//! Checks that a response body is a complete, successful completion worth storing, and reads
//! its token usage. JSON bodies are parsed whole; SSE streams event by event.
use crate::gate::NoStoreReason;
use serde_json::Value;

/// Token usage as reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value.get("usage")?;
    Some(Usage {
        prompt_tokens: usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
    })
}

fn finish_reasons_ok(value: &Value, allowed: &[String]) -> Result<(), NoStoreReason> {
    let Some(choices) = value.get("choices").and_then(Value::as_array) else {
        return Ok(());
    };
    for choice in choices {
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            if !allowed.iter().any(|a| a == reason) {
                return Err(NoStoreReason::FinishReason);
            }
        }
    }
    Ok(())
}

/// A complete JSON completion (chat, legacy text, or embeddings), with no `error` object and
/// only allowed finish reasons.
pub fn check_json(body: &[u8], allowed_finish: &[String]) -> Result<Usage, NoStoreReason> {
    let value: Value = serde_json::from_slice(body).map_err(|_| NoStoreReason::Unparseable)?;
    if value.get("error").is_some_and(|e| !e.is_null()) {
        return Err(NoStoreReason::ErrorObject);
    }
    let has_choices = value.get("choices").and_then(Value::as_array).is_some_and(|c| !c.is_empty());
    let has_data = value.get("data").and_then(Value::as_array).is_some();
    if !has_choices && !has_data {
        return Err(NoStoreReason::Unparseable);
    }
    if has_choices {
        let every_choice_finished = value
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().all(|c| c.get("finish_reason").is_some_and(|r| !r.is_null())));
        if !every_choice_finished {
            return Err(NoStoreReason::Incomplete);
        }
    }
    finish_reasons_ok(&value, allowed_finish)?;
    Ok(usage_of(&value).unwrap_or_default())
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
        let chunk: Value = serde_json::from_slice(data).map_err(|_| NoStoreReason::Unparseable)?;
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return Err(NoStoreReason::ErrorObject);
        }
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            finished |= choices.iter().any(|c| c.get("finish_reason").is_some_and(|r| !r.is_null()));
        }
        finish_reasons_ok(&chunk, allowed_finish)?;
        if let Some(u) = usage_of(&chunk) {
            usage = u;
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
    if !sse {
        let value: Value = serde_json::from_slice(body).ok()?;
        return usage_of(&value).map(|u| u.prompt_tokens + u.completion_tokens);
    }
    let mut usage = None;
    let mut content_bytes = 0usize;
    for data in sse_data_events(body) {
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else { continue };
        if let Some(u) = usage_of(&chunk) {
            usage = Some(u.prompt_tokens + u.completion_tokens);
        }
        if let Some(choices) = chunk.get("choices").and_then(Value::as_array) {
            content_bytes += choices
                .iter()
                .filter_map(|c| c.pointer("/delta/content").and_then(Value::as_str))
                .map(str::len)
                .sum::<usize>();
        }
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
