//! Per-Envoy latest stat values, as the metrics-service sink last reported them. Pure: the
//! caller passes `now`. Bounded: only the stats the control plane reads are kept (`wanted`),
//! at most `MAX_ENVOYS` Envoys and `MAX_STATS_PER_ENVOY` values each, and an Envoy that has
//! not reported for `expire_after_ms` is forgotten.
use std::collections::BTreeMap;

/// More Envoys than this reporting at once are refused (counted), not remembered.
pub const MAX_ENVOYS: usize = 4096;
/// More values than this from one Envoy are dropped (counted): a wanted family per provider
/// cluster is a handful of values, so this is hundreds of providers.
pub const MAX_STATS_PER_ENVOY: usize = 2048;

/// The filter's stats under either host (the Wasm and native builds name them alike after
/// these prefixes); they are kept without the prefix.
const FILTER_PREFIXES: [&str; 2] = ["wasmcustom.", "dynamicmodulescustom."];
/// The filter's stats the control plane reads (exact names, or `name.` + a tag value).
const FILTER_STATS: [&str; 5] = [
    "aurelis_l1_evictions_total",
    "aurelis_l1_entries",
    "aurelis_l2_lookups_total",
    "aurelis_coalesced_requests_total",
    "aurelis_coalesce_timeouts_total",
];
/// Per-cluster stats the control plane reads: `cluster.<name>.<stat>`.
pub const CLUSTER_STATS: [&str; 4] =
    ["upstream_rq_pending_overflow", "upstream_rq_retry_overflow", "upstream_rq_pending_active", "upstream_rq_active"];

/// The name a wanted stat is kept under, `None` for every other stat.
pub fn wanted(name: &str) -> Option<&str> {
    if let Some(rest) = FILTER_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) {
        let family = rest.split_once('.').map_or(rest, |(family, _)| family);
        return FILTER_STATS.contains(&family).then_some(rest);
    }
    if let Some(rest) = name.strip_prefix("overload.") {
        let keep = rest.ends_with(".pressure") || rest.ends_with(".active");
        return keep.then_some(name);
    }
    if let Some(rest) = name.strip_prefix("cluster.") {
        let stat = rest.rsplit_once('.').map(|(_, stat)| stat)?;
        return CLUSTER_STATS.contains(&stat).then_some(name);
    }
    None
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvoyStats {
    pub reported_ms: i64,
    pub values: BTreeMap<String, f64>,
    /// The values of this Envoy's first report: the baseline its counters are measured from
    /// until a reader has a snapshot of its own (a counter absent here started at 0).
    pub first: BTreeMap<String, f64>,
}

/// What one report did not keep, for the error counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// The Envoy was new and `MAX_ENVOYS` were already known: nothing kept.
    pub envoy: bool,
    /// Wanted values beyond `MAX_STATS_PER_ENVOY`.
    pub stats: u64,
}

#[derive(Debug, Default)]
pub struct Latest {
    envoys: BTreeMap<String, EnvoyStats>,
}

impl Latest {
    /// One report of `node`: its wanted values replace the previous ones (a stat missing from
    /// the report keeps its last value: Envoy sends only what changed when it is told to).
    pub fn report(&mut self, node: &str, values: impl IntoIterator<Item = (String, f64)>, now_ms: i64) -> Dropped {
        let mut dropped = Dropped::default();
        if !self.envoys.contains_key(node) && self.envoys.len() >= MAX_ENVOYS {
            dropped.envoy = true;
            return dropped;
        }
        let new = !self.envoys.contains_key(node);
        let entry = self.envoys.entry(node.to_string()).or_default();
        entry.reported_ms = now_ms;
        for (name, value) in values {
            if !value.is_finite() {
                continue;
            }
            if entry.values.len() >= MAX_STATS_PER_ENVOY && !entry.values.contains_key(&name) {
                dropped.stats += 1;
                continue;
            }
            entry.values.insert(name, value);
        }
        if new {
            entry.first = entry.values.clone();
        }
        dropped
    }

    /// Forgets Envoys that have not reported since `now_ms - expire_after_ms`; returns how many.
    pub fn expire(&mut self, now_ms: i64, expire_after_ms: i64) -> usize {
        let before = self.envoys.len();
        self.envoys.retain(|_, e| e.reported_ms >= now_ms - expire_after_ms);
        before - self.envoys.len()
    }

    pub fn remove(&mut self, node: &str) {
        self.envoys.remove(node);
    }

    pub fn envoys(&self) -> &BTreeMap<String, EnvoyStats> {
        &self.envoys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stats_the_loops_read_are_kept_under_one_name_per_host() {
        assert_eq!(wanted("wasmcustom.aurelis_l1_evictions_total"), Some("aurelis_l1_evictions_total"));
        assert_eq!(wanted("dynamicmodulescustom.aurelis_l1_entries"), Some("aurelis_l1_entries"));
        assert_eq!(
            wanted("wasmcustom.aurelis_l2_lookups_total.result.timeout"),
            Some("aurelis_l2_lookups_total.result.timeout")
        );
        assert_eq!(wanted("wasmcustom.aurelis_cache_hits_total.level.L1"), None);
        assert_eq!(
            wanted("cluster.openai.upstream_rq_pending_overflow"),
            Some("cluster.openai.upstream_rq_pending_overflow")
        );
        assert_eq!(wanted("cluster.openai.upstream_rq_total"), None);
        assert!(wanted("overload.envoy.resource_monitors.fixed_heap.pressure").is_some());
        assert!(wanted("overload.envoy.overload_actions.shrink_heap.active").is_some());
        assert_eq!(wanted("overload.envoy.resource_monitors.fixed_heap.failed_updates"), None);
        assert_eq!(wanted("http.gateway.downstream_rq_total"), None);
    }

    #[test]
    fn envoys_that_stop_reporting_expire_and_a_flood_is_bounded() {
        let mut latest = Latest::default();
        latest.report("a", [("x".to_string(), 1.0)], 0);
        latest.report("b", [("x".to_string(), 2.0), ("y".to_string(), f64::NAN)], 5_000);
        assert_eq!(latest.envoys()["b"].values.len(), 1, "NaN is not a value");
        assert_eq!(latest.expire(10_000, 8_000), 1);
        assert_eq!(latest.envoys().keys().collect::<Vec<_>>(), ["b"]);
        let many = (0..MAX_STATS_PER_ENVOY + 10).map(|i| (format!("s{i}"), 1.0));
        assert_eq!(latest.report("b", many, 6_000).stats, 11, "one slot was taken by `x`");
        for i in 0..MAX_ENVOYS {
            latest.report(&format!("n{i}"), [], 6_000);
        }
        assert!(latest.report("one-too-many", [], 6_000).envoy);
        assert_eq!(latest.envoys().len(), MAX_ENVOYS);
    }
}
