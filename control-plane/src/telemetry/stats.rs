//! What one window holds for one row (model × provider × cache status, optionally one tenant):
//! counts, errors by class, latency and TTFB sketches, tokens. Everything merges: two Envoys'
//! windows, six 10 s windows into a minute, sixty minutes into an hour. The latency
//! distribution is a DDSketch (relative error `SKETCH_RELATIVE_ERROR` on every quantile), never
//! a list of samples, so a row's size does not grow with traffic.
use super::record::{ErrorClass, Record};
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};
use std::collections::BTreeMap;

/// Every quantile the report shows is within this relative error of the exact one.
pub const SKETCH_RELATIVE_ERROR: f64 = 0.01;
/// Payload format version, first byte of every stored payload.
const PAYLOAD_VERSION: u8 = 1;

fn sketch() -> DDSketch {
    // 1 % relative error; 2048 bins cover 1 µs .. 10^8 s at that accuracy, far past any request.
    DDSketch::new(Config::new(SKETCH_RELATIVE_ERROR, 2048, 1e-3))
}

#[derive(Clone, Serialize, Deserialize)]
pub struct WindowStats {
    pub requests: u64,
    /// By `ErrorClass::as_str`.
    pub errors: BTreeMap<String, u64>,
    /// Answers from a cache level, by level (`L1`, `L2`, ...).
    pub hits_by_level: BTreeMap<String, u64>,
    /// Bypasses by the filter's reason (`non_deterministic`, `no_store`, ...).
    pub bypass_reasons: BTreeMap<String, u64>,
    /// Other evidence the filter reports per request (`l2_timeout`, `coalesce_timeout`,
    /// `l1_eviction`, `coalesced`), counted by name.
    pub events: BTreeMap<String, u64>,
    /// Whole-request latency in milliseconds.
    pub latency_ms: DDSketch,
    /// Time to first byte of streamed answers, in milliseconds.
    pub ttfb_ms: DDSketch,
    /// What the gateway added to a miss (latency less the provider's time), in milliseconds.
    pub miss_overhead_ms: DDSketch,
    pub streams: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Tokens a cache answer spared the provider, split so a price table can value them.
    pub saved_in: u64,
    pub saved_out: u64,
}

impl Default for WindowStats {
    fn default() -> Self {
        WindowStats {
            requests: 0,
            errors: BTreeMap::new(),
            hits_by_level: BTreeMap::new(),
            bypass_reasons: BTreeMap::new(),
            events: BTreeMap::new(),
            latency_ms: sketch(),
            ttfb_ms: sketch(),
            miss_overhead_ms: sketch(),
            streams: 0,
            tokens_in: 0,
            tokens_out: 0,
            saved_in: 0,
            saved_out: 0,
        }
    }
}

impl std::fmt::Debug for WindowStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStats")
            .field("requests", &self.requests)
            .field("errors", &self.errors)
            .field("hits_by_level", &self.hits_by_level)
            .field("latency_count", &self.latency_ms.count())
            .field("tokens_in", &self.tokens_in)
            .field("tokens_out", &self.tokens_out)
            .finish_non_exhaustive()
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, by: u64) {
    *map.entry(key.to_string()).or_default() += by;
}

/// Why a stored payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload version {0} is not one this build reads")]
    Version(u8),
    #[error("payload is empty")]
    Empty,
    #[error("payload does not decode: {0}")]
    Decode(String),
}

impl WindowStats {
    pub fn add(&mut self, record: &Record) {
        self.requests += 1;
        if let Some(class) = record.error {
            bump(&mut self.errors, class.as_str(), 1);
        }
        if record.cache_status == "HIT" {
            bump(&mut self.hits_by_level, record.level.as_deref().unwrap_or("L1"), 1);
            self.saved_in += record.tokens_in;
            self.saved_out += record.tokens_out;
        }
        if let Some(reason) = record.bypass_reason.as_deref() {
            bump(&mut self.bypass_reasons, reason, 1);
        }
        for event in &record.events {
            bump(&mut self.events, event, 1);
        }
        self.latency_ms.add(record.latency_ms.max(0.0));
        if let Some(ttfb) = record.ttfb_ms.filter(|_| record.streamed) {
            self.ttfb_ms.add(ttfb.max(0.0));
        }
        if let Some(upstream) = record.upstream_ms.filter(|_| record.cache_status == "MISS") {
            self.miss_overhead_ms.add((record.latency_ms - upstream).max(0.0));
        }
        if record.streamed {
            self.streams += 1;
        }
        self.tokens_in += record.tokens_in;
        self.tokens_out += record.tokens_out;
    }

    pub fn merge(&mut self, other: &WindowStats) {
        self.requests += other.requests;
        for (map, from) in [
            (&mut self.errors, &other.errors),
            (&mut self.hits_by_level, &other.hits_by_level),
            (&mut self.bypass_reasons, &other.bypass_reasons),
            (&mut self.events, &other.events),
        ] {
            for (k, v) in from {
                bump(map, k, *v);
            }
        }
        // Same configuration on both sides (one `sketch()`), so merging cannot fail; a payload
        // written with another configuration is refused when it is decoded.
        let _ = self.latency_ms.merge(&other.latency_ms);
        let _ = self.ttfb_ms.merge(&other.ttfb_ms);
        let _ = self.miss_overhead_ms.merge(&other.miss_overhead_ms);
        self.streams += other.streams;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.saved_in += other.saved_in;
        self.saved_out += other.saved_out;
    }

    pub fn hits(&self) -> u64 {
        self.hits_by_level.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Errors the WindowSummary contract counts: the filter's own refusals are not failures.
    pub fn failures(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(class, _)| class.as_str() != ErrorClass::LimiterRefused.as_str())
            .map(|(_, n)| n)
            .sum()
    }

    pub fn tokens_saved(&self) -> u64 {
        self.saved_in + self.saved_out
    }

    /// A latency quantile in milliseconds; `None` without requests.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        self.latency_ms.quantile(q).ok().flatten()
    }

    pub fn ttfb_quantile(&self, q: f64) -> Option<f64> {
        self.ttfb_ms.quantile(q).ok().flatten()
    }

    pub fn latency_mean(&self) -> Option<f64> {
        let count = self.latency_ms.count();
        self.latency_ms.sum().filter(|_| count > 0).map(|sum| sum / count as f64)
    }

    /// The stored form: a version byte, then CBOR (compact, and unlike JSON it keeps the
    /// infinities an empty sketch's min and max are).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![PAYLOAD_VERSION];
        // Writing plain numbers and maps into a Vec cannot fail.
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<WindowStats, PayloadError> {
        let (version, body) = bytes.split_first().ok_or(PayloadError::Empty)?;
        if *version != PAYLOAD_VERSION {
            return Err(PayloadError::Version(*version));
        }
        ciborium::from_reader(body).map_err(|e| PayloadError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(latency_ms: f64, status: &str) -> Record {
        Record { latency_ms, cache_status: status.into(), ..Record::default() }
    }

    #[test]
    fn merged_windows_equal_one_window_of_all_records() {
        let (mut a, mut b, mut all) = (WindowStats::default(), WindowStats::default(), WindowStats::default());
        for i in 1..=1000 {
            let r = record(f64::from(i), if i % 4 == 0 { "HIT" } else { "MISS" });
            if i % 2 == 0 {
                a.add(&r)
            } else {
                b.add(&r)
            }
            all.add(&r);
        }
        a.merge(&b);
        assert_eq!(a.requests, 1000);
        assert_eq!(a.hits(), 250);
        assert_eq!(a.latency_quantile(0.95), all.latency_quantile(0.95));
        let p95 = a.latency_quantile(0.95).unwrap();
        assert!((p95 - 950.0).abs() <= 950.0 * SKETCH_RELATIVE_ERROR, "{p95}");
    }

    #[test]
    fn payloads_round_trip_and_refuse_other_versions() {
        let mut stats = WindowStats::default();
        stats.add(&Record { tokens_in: 7, error: Some(ErrorClass::Provider5xx), ..record(12.0, "MISS") });
        let decoded = WindowStats::decode(&stats.encode()).unwrap();
        assert_eq!(decoded.tokens_in, 7);
        assert_eq!(decoded.errors.get("provider_5xx"), Some(&1));
        assert_eq!(decoded.latency_quantile(0.5), stats.latency_quantile(0.5));
        let mut other = stats.encode();
        other[0] = 9;
        assert!(matches!(WindowStats::decode(&other), Err(PayloadError::Version(9))));
        assert!(matches!(WindowStats::decode(&[]), Err(PayloadError::Empty)));
    }
}
