//! A provider's own quota signals, read from its answers: `retry-after` (seconds; an HTTP date
//! is treated as unknown and falls back to the default pause), and OpenAI's
//! `x-ratelimit-remaining-{requests,tokens}` with `x-ratelimit-reset-{requests,tokens}`
//! (durations like `6ms`, `1s`, `1m30s`). Pure: headers and `now` in, "exhausted until" out.

/// How long a provider that answered 429 without saying for how long is left alone.
pub const DEFAULT_PAUSE_MS: i64 = 10_000;
/// A provider cannot make us wait longer than this on its word (a typo, a hostile header).
pub const MAX_PAUSE_MS: i64 = 15 * 60 * 1000;

/// Until when (Unix ms) the provider has no quota, if its answer says so. `header` looks a
/// response header up by lower-case name.
pub fn exhausted_until<'a>(status: u32, header: impl Fn(&str) -> Option<&'a str>, now_ms: i64) -> Option<i64> {
    let pause = |ms: i64| Some(now_ms + ms.clamp(0, MAX_PAUSE_MS));
    if status == 429 {
        let after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(|s| (s as i64) * 1000);
        let reset = [
            ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
            ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
        ]
        .iter()
        .filter(|(remaining, _)| header(remaining).is_some_and(|v| v.trim() == "0"))
        .filter_map(|(_, reset)| header(reset).and_then(parse_duration_ms))
        .max();
        return pause(after.or(reset).unwrap_or(DEFAULT_PAUSE_MS));
    }
    // A successful answer that used the last of the quota: nothing more until the reset.
    [
        ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ]
    .iter()
    .filter(|(remaining, _)| header(remaining).is_some_and(|v| v.trim() == "0"))
    .filter_map(|(_, reset)| header(reset).and_then(parse_duration_ms))
    .max()
    .and_then(pause)
}

/// `6ms`, `1.5s`, `2m`, `1m30s`, `1h2m3s` → milliseconds; anything else → `None`.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let mut total = 0.0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, after) = rest.split_at(number_end);
        let value: f64 = number.parse().ok()?;
        let unit_end = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += value * scale;
        rest = next;
    }
    (total.is_finite() && total < 1e12).then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn durations_in_openais_format() {
        assert_eq!(parse_duration_ms("6ms"), Some(6));
        assert_eq!(parse_duration_ms("1s"), Some(1000));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("1h2m3s"), Some(3_723_000));
        for bad in ["", "s", "10", "5 parsecs", "1x", "-1s"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_429_pauses_for_retry_after_or_the_reset_or_a_default() {
        assert_eq!(exhausted_until(429, headers(&[("retry-after", "20")]), 0), Some(20_000));
        let reset = [("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "1m")];
        assert_eq!(exhausted_until(429, headers(&reset), 0), Some(60_000));
        assert_eq!(exhausted_until(429, headers(&[]), 5), Some(5 + DEFAULT_PAUSE_MS));
        assert_eq!(exhausted_until(429, headers(&[("retry-after", "999999")]), 0), Some(MAX_PAUSE_MS), "capped");
    }

    #[test]
    fn a_success_that_used_the_last_quota_pauses_until_the_reset() {
        let last = [("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "2s")];
        assert_eq!(exhausted_until(200, headers(&last), 100), Some(2100));
        let plenty = [("x-ratelimit-remaining-requests", "9999"), ("x-ratelimit-reset-requests", "6ms")];
        assert_eq!(exhausted_until(200, headers(&plenty), 100), None);
    }
}
