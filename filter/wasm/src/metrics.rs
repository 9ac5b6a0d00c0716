//! The filter's Envoy stats. Names start with `aurelis_`; labels are encoded as
//! `.<label>.<value>` segments that the shipped Envoy configs turn into tags with `stats_tags`,
//! so `/stats/prometheus` shows `aurelis_requests_total{cache_status="HIT",model="gpt-4o-mini"}`.
//! Label values come from closed sets, except `model`, which is sanitized and capped per worker
//! (`MAX_MODEL_LABELS`, then `other`) so clients cannot blow up stat cardinality.
use aurelis_core::gate::BypassReason;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;
use std::collections::HashMap;

const MAX_MODEL_LABELS: usize = 32;

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

/// Metric ids; 0 (an id Envoy never hands out for a failed definition) makes updates no-ops.
#[derive(Default)]
pub struct Metrics {
    requests: RefCell<HashMap<(CacheStatus, String), u32>>,
    bypass: HashMap<&'static str, u32>,
    store_skipped: RefCell<HashMap<&'static str, u32>>,
    errors: RefCell<HashMap<&'static str, u32>>,
    pub hits_l1: u32,
    pub hits_l2: u32,
    l2_lookups: RefCell<HashMap<&'static str, u32>>,
    l2_stores: RefCell<HashMap<&'static str, u32>>,
    pub misses: u32,
    pub stores: u32,
    pub evictions: u32,
    pub coalesced: u32,
    pub coalesce_timeouts: u32,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub tokens_saved: u32,
    pub l1_entries: u32,
    pub l1_bytes: u32,
    pub response_time_hit: u32,
    ratelimited: HashMap<&'static str, u32>,
    pub tokens_reserved: u32,
    pub tokens_settled: u32,
    pub tokens_refunded: u32,
    pub ratelimit_identities: u32,
    pub response_time_miss: u32,
}

fn define(kind: MetricType, name: &str) -> u32 {
    hostcalls::define_metric(kind, name).unwrap_or(0)
}

pub fn increment(id: u32, by: u64) {
    if id != 0 && by > 0 {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

pub fn record(id: u32, value: u64) {
    if id != 0 {
        let _ = hostcalls::record_metric(id, value);
    }
}

/// Keeps label values to `[A-Za-z0-9_-]`: dots would split the stat name into tags.
pub fn sanitize_label(value: &str) -> String {
    value.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

impl Metrics {
    pub fn define_all() -> Metrics {
        use MetricType::{Counter, Gauge, Histogram};
        let bypass = BypassReason::ALL
            .iter()
            .map(|r| (r.as_str(), define(Counter, &format!("aurelis_bypass_total.reason.{}", r.as_str()))))
            .collect();
        let ratelimited = ["requests", "tokens"]
            .iter()
            .map(|r| (*r, define(Counter, &format!("aurelis_ratelimited_total.reason.{r}"))))
            .collect();
        Metrics {
            bypass,
            ratelimited,
            tokens_reserved: define(Counter, "aurelis_ratelimit_tokens_total.kind.reserved"),
            tokens_settled: define(Counter, "aurelis_ratelimit_tokens_total.kind.settled"),
            tokens_refunded: define(Counter, "aurelis_ratelimit_tokens_total.kind.refunded"),
            ratelimit_identities: define(Gauge, "aurelis_ratelimit_identities"),
            hits_l1: define(Counter, "aurelis_cache_hits_total.level.L1"),
            hits_l2: define(Counter, "aurelis_cache_hits_total.level.L2"),
            misses: define(Counter, "aurelis_cache_misses_total"),
            stores: define(Counter, "aurelis_cache_stores_total"),
            evictions: define(Counter, "aurelis_l1_evictions_total"),
            coalesced: define(Counter, "aurelis_coalesced_requests_total"),
            coalesce_timeouts: define(Counter, "aurelis_coalesce_timeouts_total"),
            prompt_tokens: define(Counter, "aurelis_tokens_total.kind.prompt"),
            completion_tokens: define(Counter, "aurelis_tokens_total.kind.completion"),
            tokens_saved: define(Counter, "aurelis_tokens_saved_total"),
            l1_entries: define(Gauge, "aurelis_l1_entries"),
            l1_bytes: define(Gauge, "aurelis_l1_bytes"),
            response_time_hit: define(Histogram, "aurelis_response_time_ms.cache_status.HIT"),
            response_time_miss: define(Histogram, "aurelis_response_time_ms.cache_status.MISS"),
            ..Metrics::default()
        }
    }

    pub fn request(&self, status: CacheStatus, model: Option<&str>) {
        let mut requests = self.requests.borrow_mut();
        let mut label = model.map_or_else(|| "unknown".to_string(), sanitize_label);
        if !requests.contains_key(&(status, label.clone())) && requests.len() >= MAX_MODEL_LABELS * 3 {
            label = "other".to_string();
        }
        let id = *requests.entry((status, label.clone())).or_insert_with(|| {
            define(
                MetricType::Counter,
                &format!("aurelis_requests_total.cache_status.{}.model.{label}", status.as_str()),
            )
        });
        increment(id, 1);
    }

    /// A request answered from L1 (directly, or as a coalesced waiter).
    pub fn hit(&self, entry: &aurelis_core::cache::Entry, level: &str, model: Option<&str>, elapsed_ms: u64) {
        increment(if level == "L2" { self.hits_l2 } else { self.hits_l1 }, 1);
        increment(self.tokens_saved, u64::from(entry.prompt_tokens) + u64::from(entry.completion_tokens));
        self.request(CacheStatus::Hit, model);
        record(self.response_time_hit, elapsed_ms);
    }

    pub fn ratelimited(&self, reason: &str) {
        increment(self.ratelimited.get(reason).copied().unwrap_or(0), 1);
    }

    pub fn bypass(&self, reason: BypassReason) {
        increment(self.bypass.get(reason.as_str()).copied().unwrap_or(0), 1);
    }

    pub fn store_skipped(&self, reason: &'static str) {
        let id = *self.store_skipped.borrow_mut().entry(reason).or_insert_with(|| {
            define(MetricType::Counter, &format!("aurelis_cache_store_skipped_total.reason.{reason}"))
        });
        increment(id, 1);
    }

    /// L2 lookups by `result`: hit, miss, error, timeout.
    pub fn l2_lookup(&self, result: &'static str) {
        self.by_label(&self.l2_lookups, "aurelis_l2_lookups_total.result", result);
    }

    /// L2 stores by `result`: ok, error.
    pub fn l2_store(&self, result: &'static str) {
        self.by_label(&self.l2_stores, "aurelis_l2_stores_total.result", result);
    }

    fn by_label(&self, ids: &RefCell<HashMap<&'static str, u32>>, name: &str, value: &'static str) {
        let id =
            *ids.borrow_mut().entry(value).or_insert_with(|| define(MetricType::Counter, &format!("{name}.{value}")));
        increment(id, 1);
    }

    pub fn error(&self, kind: &'static str) {
        let id = *self
            .errors
            .borrow_mut()
            .entry(kind)
            .or_insert_with(|| define(MetricType::Counter, &format!("aurelis_errors_total.kind.{kind}")));
        increment(id, 1);
    }
}
