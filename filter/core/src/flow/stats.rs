//! The filter's stats, tallied in memory and handed to the host in one batch per timer tick.
//!
//! Why batch: each stat update is a host call (~0.2 µs under V8, more with the VM entry
//! around it), and a hit would otherwise make four of them. Counting in plain memory and
//! flushing every tick costs a few host calls per tick instead of per request.
//!
//! Names start with `aurelis_`; labels are `.<label>.<value>` segments that the shipped Envoy
//! configs turn into tags (`stats_tags`), so `/stats/prometheus` shows
//! `aurelis_requests_total{cache_status="HIT",model="gpt-4o-mini"}`. Label values come from
//! closed sets, except `model`, which is sanitized and capped per worker (`MAX_MODEL_LABELS`,
//! then `other`) so clients cannot blow up stat cardinality.
use crate::gate::BypassReason;
use crate::limits::LimitReason;
use crate::replay::{ReplayError, ReplayKind};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

const MAX_MODEL_LABELS: usize = 32;
/// Histogram samples kept per histogram between two flushes. Each recorded sample is a host
/// call (proxy-wasm histograms take one value per call), so under load the tally keeps a
/// uniform random sample of the tick's values (reservoir sampling): percentiles stay
/// unbiased while the cost per tick is bounded. Totals are in the counters, not here.
const SAMPLES_PER_TICK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    Hit,
    Miss,
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

/// Every counter the filter keeps. Labelled variants carry values from closed sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    HitsL1,
    HitsL2,
    /// Hits the cache service answered from its persistent level.
    HitsL3,
    Misses,
    Stores,
    Evictions,
    /// Lookups that found the key in L1 past its TTL: the tuning loop's evidence that the TTL
    /// is shorter than the answer stays useful.
    L1Expired,
    /// L1 entries a purge rule turned into misses (and dropped).
    L1Purged,
    Coalesced,
    CoalesceTimeouts,
    PromptTokens,
    CompletionTokens,
    TokensSaved,
    TokensReserved,
    TokensSettled,
    TokensRefunded,
    Bypass(BypassReason),
    Ratelimited(LimitReason),
    /// Answered with an error before any cache or upstream work (401, 403, 413, 415, 503):
    /// the error body's `code`.
    Refused(&'static str),
    StoreSkipped(&'static str),
    Error(&'static str),
    L2Lookup(&'static str),
    L2Store(&'static str),
    /// L2 is configured but cannot run (reason: `no_signing_key`); once per configuration.
    L2Disabled(&'static str),
    /// A hit sent in another shape than it was stored in.
    Replayed(ReplayKind),
    /// A hit that could not be rewritten into the shape its client asked for (served as a miss).
    ReplaySkipped(ReplayError),
    /// Refresh-ahead: replays admitted, records sent (`refresh`); refusals are `Refused`.
    Refresh(&'static str),
    /// LLM tokens refresh replays spent (also charged to the consumers' own limits).
    RefreshTokens,
    /// Flushes done; tests wait on it to know the other stats are current.
    Flushes,
    /// Warming runs by result: `loaded` (at least one entry), `empty`, `error` (no usable answer).
    Warm(&'static str),
    /// Entries of a warming answer by outcome: `loaded`, `forged`, `stale`, `foreign` (another
    /// key prefix or schema), `not_stored` (L1 refused it).
    WarmEntries(&'static str),
    /// L1 hit reports to the cache service by result: `ok`, `error`.
    HitReports(&'static str),
    /// L1 hits left out of a report (too many distinct keys between two reports).
    HitsUnreported,
}

impl Counter {
    pub fn name(&self) -> String {
        match self {
            Self::HitsL1 => "aurelis_cache_hits_total.level.L1".into(),
            Self::HitsL2 => "aurelis_cache_hits_total.level.L2".into(),
            Self::HitsL3 => "aurelis_cache_hits_total.level.L3".into(),
            Self::Misses => "aurelis_cache_misses_total".into(),
            Self::Stores => "aurelis_cache_stores_total".into(),
            Self::Evictions => "aurelis_l1_evictions_total".into(),
            Self::L1Expired => "aurelis_l1_expired_total".into(),
            Self::L1Purged => "aurelis_l1_purged_total".into(),
            Self::Coalesced => "aurelis_coalesced_requests_total".into(),
            Self::CoalesceTimeouts => "aurelis_coalesce_timeouts_total".into(),
            Self::PromptTokens => "aurelis_tokens_total.kind.prompt".into(),
            Self::CompletionTokens => "aurelis_tokens_total.kind.completion".into(),
            Self::TokensSaved => "aurelis_tokens_saved_total".into(),
            Self::TokensReserved => "aurelis_ratelimit_tokens_total.kind.reserved".into(),
            Self::TokensSettled => "aurelis_ratelimit_tokens_total.kind.settled".into(),
            Self::TokensRefunded => "aurelis_ratelimit_tokens_total.kind.refunded".into(),
            Self::Bypass(reason) => format!("aurelis_bypass_total.reason.{}", reason.as_str()),
            Self::Ratelimited(reason) => format!("aurelis_ratelimited_total.reason.{}", reason.as_str()),
            Self::Refused(code) => format!("aurelis_refused_total.reason.{code}"),
            Self::StoreSkipped(reason) => format!("aurelis_cache_store_skipped_total.reason.{reason}"),
            Self::Error(kind) => format!("aurelis_errors_total.kind.{kind}"),
            Self::L2Lookup(result) => format!("aurelis_l2_lookups_total.result.{result}"),
            Self::L2Store(result) => format!("aurelis_l2_stores_total.result.{result}"),
            Self::L2Disabled(reason) => format!("aurelis_l2_disabled_total.reason.{reason}"),
            Self::Replayed(kind) => format!("aurelis_cache_replays_total.kind.{}", kind.as_str()),
            Self::ReplaySkipped(err) => format!("aurelis_cache_replay_skipped_total.reason.{}", err.reason()),
            Self::Refresh(result) => format!("aurelis_refreshes_total.result.{result}"),
            Self::RefreshTokens => "aurelis_refresh_tokens_total".into(),
            Self::Flushes => "aurelis_stats_flushes_total".into(),
            Self::Warm(result) => format!("aurelis_l1_warm_total.result.{result}"),
            Self::WarmEntries(result) => format!("aurelis_l1_warm_entries_total.result.{result}"),
            Self::HitReports(result) => format!("aurelis_l1_hit_reports_total.result.{result}"),
            Self::HitsUnreported => "aurelis_l1_hits_unreported_total".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gauge {
    L1Entries,
    L1Bytes,
    RatelimitIdentities,
}

impl Gauge {
    pub fn name(self) -> &'static str {
        match self {
            Self::L1Entries => "aurelis_l1_entries",
            Self::L1Bytes => "aurelis_l1_bytes",
            Self::RatelimitIdentities => "aurelis_ratelimit_identities",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Histogram {
    ResponseTimeHit,
    ResponseTimeMiss,
}

impl Histogram {
    pub fn name(self) -> &'static str {
        match self {
            Self::ResponseTimeHit => "aurelis_response_time_ms.cache_status.HIT",
            Self::ResponseTimeMiss => "aurelis_response_time_ms.cache_status.MISS",
        }
    }
}

/// Every `result` of `Counter::Warm` and `Counter::WarmEntries`.
pub const WARM_RESULTS: [&str; 3] = ["loaded", "empty", "error"];
pub const WARM_ENTRY_RESULTS: [&str; 5] = ["loaded", "forged", "stale", "foreign", "not_stored"];

/// The stats a host defines up front, so they show (at 0) before anything happened: dashboards
/// and the pinned-names test see the whole set.
pub fn predefined() -> (Vec<Counter>, Vec<Gauge>, Vec<Histogram>) {
    let mut counters = vec![
        Counter::HitsL1,
        Counter::HitsL2,
        Counter::HitsL3,
        Counter::Misses,
        Counter::Stores,
        Counter::Evictions,
        Counter::L1Expired,
        Counter::L1Purged,
        Counter::Coalesced,
        Counter::CoalesceTimeouts,
        Counter::PromptTokens,
        Counter::CompletionTokens,
        Counter::TokensSaved,
        Counter::TokensReserved,
        Counter::TokensSettled,
        Counter::TokensRefunded,
        Counter::Ratelimited(LimitReason::Requests),
        Counter::Ratelimited(LimitReason::Tokens),
        Counter::Flushes,
        // Security signals: at 0 from the start, so an alert can watch them.
        Counter::L2Lookup("forged"),
        Counter::L2Lookup("stale"),
        Counter::L2Disabled("no_signing_key"),
        Counter::HitsUnreported,
    ];
    counters.extend(WARM_RESULTS.iter().map(|r| Counter::Warm(r)));
    counters.extend(WARM_ENTRY_RESULTS.iter().map(|r| Counter::WarmEntries(r)));
    counters.extend(["ok", "error"].iter().map(|r| Counter::HitReports(r)));
    counters.extend(BypassReason::ALL.iter().map(|r| Counter::Bypass(*r)));
    counters.extend(ReplayKind::ALL.iter().map(|k| Counter::Replayed(*k)));
    counters.extend(ReplayError::ALL.iter().map(|e| Counter::ReplaySkipped(*e)));
    counters.extend(crate::auth::AuthError::ALL.iter().map(|e| Counter::Refused(e.code())));
    counters.push(Counter::Refused(super::reply::MODEL_NOT_ALLOWED));
    // Refresh-ahead: a forged or replayed grant is a security signal, at 0 from the start.
    counters.extend(crate::refresh::GrantError::ALL.iter().map(|e| Counter::Refused(e.code())));
    counters.extend([
        Counter::Refused(super::refresh::BUDGET_EXHAUSTED),
        Counter::Refresh("admitted"),
        Counter::Refresh("recorded"),
        Counter::RefreshTokens,
    ]);
    let gauges = vec![Gauge::L1Entries, Gauge::L1Bytes, Gauge::RatelimitIdentities];
    (counters, gauges, vec![Histogram::ResponseTimeHit, Histogram::ResponseTimeMiss])
}

/// Where a flush goes: the host's stat calls.
pub trait StatSink {
    fn counter_add(&mut self, name: &str, by: u64);
    fn gauge_set(&mut self, name: &str, value: u64);
    fn histogram_record(&mut self, name: &str, value: u64);
}

/// Stats counted since the last flush. Plain vectors and one small map: a tally update is a
/// few nanoseconds, which is the point of tallying.
#[derive(Debug, Default)]
pub struct Tally {
    /// Few distinct counters move between two ticks: a linear scan beats hashing.
    counters: Vec<(Counter, u64)>,
    /// Requests by model label, per cache status (HIT, MISS, BYPASS).
    requests: HashMap<String, [u64; 3]>,
    samples: Vec<Reservoir>,
    gauges: Vec<(Gauge, u64)>,
    /// Model labels seen by this worker (capped; later ones count as `other`).
    models: HashSet<String>,
}

fn status_index(status: CacheStatus) -> usize {
    match status {
        CacheStatus::Hit => 0,
        CacheStatus::Miss => 1,
        CacheStatus::Bypass => 2,
    }
}

const STATUSES: [CacheStatus; 3] = [CacheStatus::Hit, CacheStatus::Miss, CacheStatus::Bypass];

impl Tally {
    pub fn add(&mut self, counter: Counter, by: u64) {
        if by == 0 {
            return;
        }
        match self.counters.iter_mut().find(|(c, _)| *c == counter) {
            Some((_, n)) => *n += by,
            None => self.counters.push((counter, by)),
        }
    }

    pub fn request(&mut self, status: CacheStatus, model: Option<&str>) {
        let label = model.map_or(Cow::Borrowed("unknown"), sanitize_label);
        let label: &str = if self.models.contains(label.as_ref()) {
            &label
        } else if self.models.len() >= MAX_MODEL_LABELS {
            "other"
        } else {
            self.models.insert(label.to_string());
            &label
        };
        let index = status_index(status);
        if !self.requests.contains_key(label) {
            self.requests.insert(label.to_string(), [0; 3]);
        }
        if let Some(count) = self.requests.get_mut(label).and_then(|counts| counts.get_mut(index)) {
            *count += 1;
        }
    }

    pub fn sample(&mut self, histogram: Histogram, value: u64) {
        match self.samples.iter_mut().find(|r| r.histogram == histogram) {
            Some(reservoir) => reservoir.offer(value),
            None => {
                let mut reservoir = Reservoir { histogram, seen: 0, kept: Vec::new(), rng: 0x9e37_79b9_7f4a_7c15 };
                reservoir.offer(value);
                self.samples.push(reservoir);
            }
        }
    }

    pub fn gauge(&mut self, gauge: Gauge, value: u64) {
        self.gauges.push((gauge, value));
    }

    /// A counter's pending value (tests).
    pub fn pending(&self, counter: Counter) -> u64 {
        self.counters.iter().find(|(c, _)| *c == counter).map_or(0, |(_, n)| *n)
    }

    /// Everything counted since the last flush, taken out (the model labels seen stay: they
    /// cap this tally's label set for good). For a host that flushes later, elsewhere.
    pub fn take_pending(&mut self) -> Tally {
        Tally {
            counters: std::mem::take(&mut self.counters),
            requests: std::mem::take(&mut self.requests),
            samples: std::mem::take(&mut self.samples),
            gauges: std::mem::take(&mut self.gauges),
            models: HashSet::new(),
        }
    }

    /// Adds `other`'s pending stats to this one's: counters and request counts add up,
    /// histogram samples are offered again (still at most `SAMPLES_PER_TICK` kept per
    /// histogram), and a gauge keeps its latest value, so a tally that waits stays bounded.
    pub fn merge(&mut self, other: Tally) {
        for (counter, by) in other.counters {
            self.add(counter, by);
        }
        for (label, counts) in other.requests {
            let mine = self.requests.entry(label).or_insert([0; 3]);
            for (total, by) in mine.iter_mut().zip(counts) {
                *total += by;
            }
        }
        for reservoir in other.samples {
            for value in reservoir.kept {
                self.sample(reservoir.histogram, value);
            }
        }
        for (gauge, value) in other.gauges {
            self.gauges.retain(|(g, _)| *g != gauge);
            self.gauges.push((gauge, value));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
            && self.requests.is_empty()
            && self.gauges.is_empty()
            && self.samples.iter().all(|r| r.kept.is_empty())
    }

    /// Hands everything counted since the last flush to `sink`, then one `Flushes` increment.
    pub fn flush(&mut self, sink: &mut impl StatSink) {
        for (counter, by) in self.counters.drain(..) {
            sink.counter_add(&counter.name(), by);
        }
        for (model, counts) in self.requests.drain() {
            for (status, by) in STATUSES.iter().zip(counts).filter(|(_, by)| *by > 0) {
                sink.counter_add(&format!("aurelis_requests_total.cache_status.{}.model.{model}", status.as_str()), by);
            }
        }
        for reservoir in &mut self.samples {
            for value in reservoir.kept.drain(..) {
                sink.histogram_record(reservoir.histogram.name(), value);
            }
            reservoir.seen = 0;
        }
        for (gauge, value) in self.gauges.drain(..) {
            sink.gauge_set(gauge.name(), value);
        }
        sink.counter_add(&Counter::Flushes.name(), 1);
    }
}

/// A uniform sample of at most `SAMPLES_PER_TICK` values (Vitter's algorithm R).
#[derive(Debug)]
struct Reservoir {
    histogram: Histogram,
    seen: u64,
    kept: Vec<u64>,
    /// xorshift64 state: sampling needs spread, not unpredictability.
    rng: u64,
}

impl Reservoir {
    fn offer(&mut self, value: u64) {
        self.seen += 1;
        if self.kept.len() < SAMPLES_PER_TICK {
            self.kept.push(value);
            return;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.seen;
        if let Some(kept) = usize::try_from(slot).ok().and_then(|i| self.kept.get_mut(i)) {
            *kept = value;
        }
    }
}

/// Keeps label values to `[A-Za-z0-9_-]` (at most 64 characters): dots would split the stat
/// name into tags. Borrows when the value is already plain (the usual case).
pub fn sanitize_label(value: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if value.len() <= 64 && value.chars().all(plain) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(value.chars().take(64).map(|c| if plain(c) { c } else { '_' }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sink(Vec<(String, u64)>);

    impl StatSink for Sink {
        fn counter_add(&mut self, name: &str, by: u64) {
            self.0.push((name.to_string(), by));
        }
        fn gauge_set(&mut self, name: &str, value: u64) {
            self.0.push((format!("gauge:{name}"), value));
        }
        fn histogram_record(&mut self, name: &str, value: u64) {
            self.0.push((format!("hist:{name}"), value));
        }
    }

    #[test]
    fn a_flush_sums_and_empties() {
        let mut tally = Tally::default();
        tally.add(Counter::HitsL1, 1);
        tally.add(Counter::HitsL1, 2);
        tally.request(CacheStatus::Hit, Some("gpt.4o"));
        tally.sample(Histogram::ResponseTimeHit, 3);
        let mut sink = Sink::default();
        tally.flush(&mut sink);
        sink.0.sort();
        assert!(sink.0.contains(&("aurelis_cache_hits_total.level.L1".into(), 3)));
        assert!(sink.0.contains(&("aurelis_requests_total.cache_status.HIT.model.gpt_4o".into(), 1)));
        assert!(sink.0.contains(&("hist:aurelis_response_time_ms.cache_status.HIT".into(), 3)));
        let mut again = Sink::default();
        tally.flush(&mut again);
        assert_eq!(again.0, vec![("aurelis_stats_flushes_total".to_string(), 1)], "nothing left but the flush mark");
    }

    #[test]
    fn idle_tallies_parked_together_flush_as_one() {
        let mut worker_a = Tally::default();
        worker_a.add(Counter::HitsL1, 2);
        worker_a.request(CacheStatus::Hit, Some("m"));
        worker_a.sample(Histogram::ResponseTimeHit, 7);
        worker_a.gauge(Gauge::L1Entries, 1);
        let mut worker_b = Tally::default();
        worker_b.add(Counter::HitsL1, 3);
        worker_b.request(CacheStatus::Hit, Some("m"));
        worker_b.request(CacheStatus::Miss, Some("m"));
        worker_b.gauge(Gauge::L1Entries, 5);
        let mut parked = Tally::default();
        parked.merge(worker_a.take_pending());
        parked.merge(worker_b.take_pending());
        assert!(worker_a.is_empty() && worker_b.is_empty(), "taken out of the workers");
        let mut sink = Sink::default();
        parked.flush(&mut sink);
        assert!(sink.0.contains(&("aurelis_cache_hits_total.level.L1".into(), 5)));
        assert!(sink.0.contains(&("aurelis_requests_total.cache_status.HIT.model.m".into(), 2)));
        assert!(sink.0.contains(&("aurelis_requests_total.cache_status.MISS.model.m".into(), 1)));
        assert!(sink.0.contains(&("hist:aurelis_response_time_ms.cache_status.HIT".into(), 7)));
        let entries: Vec<u64> =
            sink.0.iter().filter(|(n, _)| n == "gauge:aurelis_l1_entries").map(|(_, v)| *v).collect();
        assert_eq!(entries, vec![5], "a gauge keeps its latest value");
        assert!(parked.is_empty());
    }

    #[test]
    fn a_worker_keeps_its_model_labels_when_its_stats_are_taken() {
        let mut tally = Tally::default();
        for i in 0..MAX_MODEL_LABELS {
            tally.request(CacheStatus::Hit, Some(&format!("m{i}")));
        }
        let _ = tally.take_pending();
        tally.request(CacheStatus::Hit, Some("one-too-many"));
        let mut sink = Sink::default();
        tally.flush(&mut sink);
        assert!(sink.0.contains(&("aurelis_requests_total.cache_status.HIT.model.other".into(), 1)));
    }

    #[test]
    fn histograms_keep_a_bounded_uniform_sample_per_tick() {
        let mut tally = Tally::default();
        for value in 0..10_000 {
            tally.sample(Histogram::ResponseTimeMiss, value);
        }
        let mut sink = Sink::default();
        tally.flush(&mut sink);
        let kept: Vec<u64> = sink.0.iter().filter(|(n, _)| n.starts_with("hist:")).map(|(_, v)| *v).collect();
        assert_eq!(kept.len(), SAMPLES_PER_TICK);
        let mean = kept.iter().sum::<u64>() / kept.len() as u64;
        assert!((2_000..8_000).contains(&mean), "spread over the whole tick, not the first values: {mean}");
    }

    #[test]
    fn model_labels_are_capped() {
        let mut tally = Tally::default();
        for i in 0..100 {
            tally.request(CacheStatus::Miss, Some(&format!("m{i}")));
        }
        let mut sink = Sink::default();
        tally.flush(&mut sink);
        let labels = sink.0.iter().filter(|(n, _)| n.starts_with("aurelis_requests_total")).count();
        assert_eq!(labels, MAX_MODEL_LABELS + 1, "32 models and `other`");
    }
}
