//! OpenAI-style rate-limit headers and the 429 body.
use super::bucket::{Decision, LimitReason, Quota};

/// `6s`, `1m30s`, `250ms`: the duration format OpenAI uses in `x-ratelimit-reset-*`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// Header names per limit kind: `(limit, remaining, reset)`.
const REQUEST_HEADERS: [&str; 3] =
    ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"];
const TOKEN_HEADERS: [&str; 3] =
    ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"];

fn push(out: &mut Vec<(&'static str, String)>, [limit, remaining, reset]: [&'static str; 3], quota: Option<Quota>) {
    if let Some(q) = quota {
        out.push((limit, q.limit.to_string()));
        out.push((remaining, q.remaining.to_string()));
        out.push((reset, format_reset(q.reset_ms)));
    }
}

/// The `x-ratelimit-*` headers of a decision (admitted or refused).
pub fn ratelimit_headers(decision: &Decision) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(7);
    push(&mut out, REQUEST_HEADERS, decision.requests);
    push(&mut out, TOKEN_HEADERS, decision.tokens);
    if decision.refused.is_some() {
        out.push(("retry-after", decision.retry_after_ms.div_ceil(1000).max(1).to_string()));
    }
    out
}

/// An OpenAI-style error body for a refusal.
pub fn refusal_body(reason: LimitReason, decision: &Decision) -> String {
    let (what, limit) = match reason {
        LimitReason::Requests => ("requests", decision.requests.map_or(0, |q| q.limit)),
        LimitReason::Tokens => ("tokens", decision.tokens.map_or(0, |q| q.limit)),
    };
    let message = format!(
        "Rate limit reached for {what} (limit {limit}). Please try again in {}.",
        format_reset(decision.retry_after_ms)
    );
    serde_json::json!({ "error": { "message": message, "type": "rate_limit_exceeded", "param": null, "code": "rate_limit_exceeded" } })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_format() {
        assert_eq!(format_reset(250), "250ms");
        assert_eq!(format_reset(6000), "6s");
        assert_eq!(format_reset(90_000), "1m30s");
    }
}
