//! L1 hits counted in worker memory and reported to the cache service in one batched call, so
//! hits served from L1 count towards an entry's hotness without any write on the hit path: a
//! hit costs one map increment here (no host call); the report is one callout per worker every
//! `REPORT_EVERY_MS`, and only when something was hit.
//!
//! Wire format of `POST /v1/hits` (text, so the service needs no decoder beyond lines): one line
//! per entry, `<hits> <key>\n`. Keys only use `[A-Za-z0-9:_.+/=-]` (the service's key rule),
//! so neither a space nor a newline can appear inside one; keys outside that rule are never
//! stored in L2 and are not reported.
use crate::cache::L2Secrets;
use crate::config::FilterConfig;
use crate::http::Callout;
use std::collections::HashMap;

/// Distinct keys kept between two reports; hits of further keys are dropped (and counted):
/// memory stays bounded whatever the traffic, and the hottest keys are seen first anyway.
pub const MAX_KEYS: usize = 4096;
/// One report every 2 s at most, like the gauges: counted in time, not ticks, because the native
/// host runs the tick's work whenever a worker runs out of streams.
pub const REPORT_EVERY_MS: u64 = 2_000;
const REPORT_TIMEOUT_MS: u64 = 1000;

#[derive(Debug, Default)]
pub struct HitCounts {
    counts: HashMap<String, u32>,
    /// Hits not kept since the last report (the map was full).
    dropped: u64,
}

impl HitCounts {
    /// Counts one L1 hit of `key`.
    pub fn note(&mut self, key: &str) {
        if let Some(count) = self.counts.get_mut(key) {
            *count = count.saturating_add(1);
        } else if self.counts.len() < MAX_KEYS {
            self.counts.insert(key.to_string(), 1);
        } else {
            self.dropped += 1;
        }
    }

    /// Adds `other`'s counts (a worker's, handed over when it went idle), within the same bound.
    pub fn merge(&mut self, other: HitCounts) {
        self.dropped += other.dropped;
        for (key, hits) in other.counts {
            if let Some(count) = self.counts.get_mut(&key) {
                *count = count.saturating_add(hits);
            } else if self.counts.len() < MAX_KEYS {
                self.counts.insert(key, hits);
            } else {
                self.dropped += u64::from(hits);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.dropped == 0
    }

    /// Empties the counts into the report body; also returns the hits dropped meanwhile.
    pub fn take_body(&mut self) -> (Vec<u8>, u64) {
        let mut body = Vec::with_capacity(self.counts.len() * 96);
        for (key, hits) in self.counts.drain() {
            if key.bytes().all(key_byte) {
                body.extend_from_slice(hits.to_string().as_bytes());
                body.push(b' ');
                body.extend_from_slice(key.as_bytes());
                body.push(b'\n');
            }
        }
        (body, std::mem::take(&mut self.dropped))
    }
}

fn key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b":_.+/=-".contains(&b)
}

/// The report of `body` (`take_body`) to the cache service, in the configured namespace.
pub fn report_callout(config: &FilterConfig, secrets: &L2Secrets, body: Vec<u8>) -> Callout {
    let l2 = &config.l2;
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), "/v1/hits".to_string()),
        (":authority".to_string(), l2.authority.clone()),
        ("x-aurelis-namespace".to_string(), l2.namespace.clone()),
        ("content-type".to_string(), "text/plain".to_string()),
    ];
    if let Some(value) = &secrets.authorization {
        headers.push(("authorization".to_string(), value.clone()));
    }
    Callout { cluster: l2.cluster.clone(), headers, body: Some(body), timeout_ms: REPORT_TIMEOUT_MS }
}

/// Whether this configuration reports hits at all (L2 on, with a signing key, and asked to).
pub fn reporting(config: &FilterConfig, secrets: &L2Secrets) -> bool {
    config.l2.enabled && config.warm.report_hits && secrets.disabled_reason().is_none()
}

/// Parses one report line (the service's side of the format); `None` if malformed.
pub fn parse_line(line: &str) -> Option<(u32, &str)> {
    let (hits, key) = line.split_once(' ')?;
    let hits = hits.parse().ok()?;
    (!key.is_empty() && key.bytes().all(key_byte)).then_some((hits, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_summed_per_key_and_bounded() {
        let mut counts = HitCounts::default();
        assert!(counts.is_empty());
        for _ in 0..3 {
            counts.note("model_request:v3:anon:x=a:h1");
        }
        counts.note("model_request:v3:anon:x=a:h2");
        counts.note("bad key\nwith newline");
        let (body, dropped) = counts.take_body();
        let mut lines: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
        lines.sort();
        assert_eq!(lines, ["1 model_request:v3:anon:x=a:h2", "3 model_request:v3:anon:x=a:h1"]);
        assert_eq!(dropped, 0);
        assert!(counts.is_empty(), "a report empties the counts");
        for i in 0..MAX_KEYS + 10 {
            counts.note(&format!("k{i}"));
        }
        let (_, dropped) = counts.take_body();
        assert_eq!(dropped, 10, "keys past the bound are dropped and counted");
    }

    #[test]
    fn merged_counts_add_up() {
        let (mut a, mut b) = (HitCounts::default(), HitCounts::default());
        a.note("k1");
        b.note("k1");
        b.note("k2");
        a.merge(b);
        let (body, _) = a.take_body();
        let mut lines: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
        lines.sort();
        assert_eq!(lines, ["1 k2", "2 k1"]);
    }

    #[test]
    fn lines_parse_back() {
        assert_eq!(parse_line("3 model_request:v3:anon:x=a:h1"), Some((3, "model_request:v3:anon:x=a:h1")));
        assert_eq!(parse_line("x k"), None);
        assert_eq!(parse_line("3 "), None);
        assert_eq!(parse_line("3 a b"), None);
        assert_eq!(parse_line("3"), None);
    }
}
