//! What the fleet's Envoy stats (`fleetstats`) say, for the adaptive loops: the tuning
//! evidence of one cycle (counter deltas between two snapshots, summed over Envoys), and the
//! pressure signals (heap and CPU from the overload manager, queueing from the provider
//! clusters). Pure: snapshots in, numbers out.
use super::TuningEvidence;
use crate::fleetstats::Snapshot;
use crate::xds::resources::{ADS_CLUSTER, CPU_MONITOR, HEAP_MONITOR};
use std::collections::BTreeMap;

const L1_EVICTIONS: &str = "aurelis_l1_evictions_total";
const L1_EXPIRED: &str = "aurelis_l1_expired_total";
const L1_ENTRIES: &str = "aurelis_l1_entries";
const L2_LOOKUPS: &str = "aurelis_l2_lookups_total.result.";
const L2_TIMEOUTS: &str = "aurelis_l2_lookups_total.result.timeout";
const COALESCED: &str = "aurelis_coalesced_requests_total";
const COALESCE_TIMEOUTS: &str = "aurelis_coalesce_timeouts_total";
const PENDING_OVERFLOW: &str = "upstream_rq_pending_overflow";
const RETRY_OVERFLOW: &str = "upstream_rq_retry_overflow";
const PENDING_ACTIVE: &str = "upstream_rq_pending_active";
const ACTIVE: &str = "upstream_rq_active";

fn is_counter(name: &str) -> bool {
    name.contains("_total") || name.ends_with("_overflow")
}

/// Per counter, how much it grew from `before` to `now`, summed over Envoys. An Envoy absent
/// from `before` is measured from its first report; a counter that went down (the Envoy
/// restarted under the same node id) counts from 0.
pub fn counter_deltas(before: &Snapshot, now: &Snapshot) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for (node, stats) in now {
        let base = before.get(node).map_or(&stats.first, |b| &b.values);
        for (name, value) in stats.values.iter().filter(|(name, _)| is_counter(name)) {
            let from = base.get(name).copied().unwrap_or(0.0);
            let grew = if *value >= from { value - from } else { *value };
            *sums.entry(name.clone()).or_default() += grew;
        }
    }
    sums
}

/// `cluster.<name>.<stat>` → `<name>`, for the provider clusters (not the control plane's).
fn cluster_of<'a>(name: &'a str, stat: &str) -> Option<&'a str> {
    let cluster = name.strip_prefix("cluster.")?.strip_suffix(stat)?.strip_suffix('.')?;
    (cluster != ADS_CLUSTER).then_some(cluster)
}

fn whole(value: f64) -> u64 {
    value.max(0.0).round() as u64
}

/// The tuning evidence of the cycle from `before` to `now`, over `requests` requests (the
/// telemetry windows'). An expired miss is a lookup that found its key in L1 past the TTL.
pub fn evidence(requests: u64, before: &Snapshot, now: &Snapshot) -> TuningEvidence {
    let deltas = counter_deltas(before, now);
    let delta = |name: &str| whole(deltas.get(name).copied().unwrap_or(0.0));
    let by_cluster = |stat: &str| -> Vec<(String, u64)> {
        deltas
            .iter()
            .filter_map(|(name, v)| cluster_of(name, stat).map(|c| (c.to_string(), whole(*v))))
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    TuningEvidence {
        requests,
        expired_misses: delta(L1_EXPIRED),
        l1_evictions: delta(L1_EVICTIONS),
        l1_entries: whole(now.values().filter_map(|e| e.values.get(L1_ENTRIES)).sum()),
        l2_lookups: whole(deltas.iter().filter(|(n, _)| n.starts_with(L2_LOOKUPS)).map(|(_, v)| v).sum()),
        l2_timeouts: delta(L2_TIMEOUTS),
        coalesced_waits: delta(COALESCED),
        coalescing_timeouts: delta(COALESCE_TIMEOUTS),
        pending_overflows: by_cluster(PENDING_OVERFLOW),
        retry_overflows: by_cluster(RETRY_OVERFLOW),
    }
}

/// The pressure signals of a snapshot; `None` where no Envoy reports the stat.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Pressure {
    /// The highest heap pressure (share of the overload manager's heap budget, can exceed 1)
    /// and the Envoy reporting it.
    pub heap: Option<(String, f64)>,
    /// Mean CPU utilisation of the Envoys, 0..=1.
    pub cpu: Option<f64>,
    /// Requests waiting for an upstream connection, fleet-wide.
    pub queued: Option<u64>,
    /// Requests in flight to the providers, fleet-wide.
    pub active: Option<u64>,
}

/// The overload manager's `pressure` gauge of `monitor`, as a share (Envoy reports percent).
fn monitor_pressure(values: &BTreeMap<String, f64>, monitor: &str) -> Option<f64> {
    values.get(&format!("overload.{monitor}.pressure")).map(|percent| percent / 100.0)
}

pub fn pressure(now: &Snapshot) -> Pressure {
    let heap = now
        .iter()
        .filter_map(|(node, e)| monitor_pressure(&e.values, HEAP_MONITOR).map(|p| (node.clone(), p)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let cpus: Vec<f64> = now.values().filter_map(|e| monitor_pressure(&e.values, CPU_MONITOR)).collect();
    let cpu = (!cpus.is_empty()).then(|| cpus.iter().sum::<f64>() / cpus.len() as f64);
    let sum_of = |stat: &str| -> Option<u64> {
        let values: Vec<f64> = now
            .values()
            .flat_map(|e| e.values.iter())
            .filter_map(|(name, v)| cluster_of(name, stat).map(|_| *v))
            .collect();
        (!values.is_empty()).then(|| whole(values.iter().sum()))
    };
    Pressure { heap, cpu, queued: sum_of(PENDING_ACTIVE), active: sum_of(ACTIVE) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleetstats::latest::EnvoyStats;

    fn envoy(first: &[(&str, f64)], values: &[(&str, f64)]) -> EnvoyStats {
        let map = |v: &[(&str, f64)]| v.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        EnvoyStats { reported_ms: 0, values: map(values), first: map(first) }
    }

    fn snapshot(envoys: &[(&str, EnvoyStats)]) -> Snapshot {
        envoys.iter().map(|(n, e)| (n.to_string(), e.clone())).collect()
    }

    #[test]
    fn evidence_is_the_counters_growth_over_the_cycle_summed_over_envoys() {
        let before = snapshot(&[(
            "a",
            envoy(&[], &[(L1_EVICTIONS, 10.0), ("cluster.openai.upstream_rq_pending_overflow", 1.0)]),
        )]);
        let now = snapshot(&[
            (
                "a",
                envoy(
                    &[],
                    &[
                        (L1_EVICTIONS, 40.0),
                        (L1_ENTRIES, 100.0),
                        ("cluster.openai.upstream_rq_pending_overflow", 4.0),
                        ("aurelis_l2_lookups_total.result.hit", 7.0),
                        (L2_TIMEOUTS, 3.0),
                        (L1_EXPIRED, 6.0),
                    ],
                ),
            ),
            // New since `before`: measured from its first report.
            ("b", envoy(&[(L1_EVICTIONS, 5.0)], &[(L1_EVICTIONS, 25.0), (L1_ENTRIES, 50.0)])),
        ]);
        let e = evidence(1000, &before, &now);
        assert_eq!((e.requests, e.l1_evictions, e.l1_entries), (1000, 30 + 20, 150));
        assert_eq!((e.l2_lookups, e.l2_timeouts), (10, 3));
        assert_eq!(e.expired_misses, 6, "the first report of a counter counts from 0");
        assert_eq!(e.pending_overflows, [("openai".to_string(), 3)]);
        assert!(e.retry_overflows.is_empty());
    }

    #[test]
    fn a_restarted_envoy_counts_from_zero_not_backwards() {
        let before = snapshot(&[("a", envoy(&[], &[(COALESCED, 500.0)]))]);
        let now = snapshot(&[("a", envoy(&[], &[(COALESCED, 20.0)]))]);
        assert_eq!(evidence(0, &before, &now).coalesced_waits, 20);
    }

    #[test]
    fn pressure_takes_the_worst_heap_the_mean_cpu_and_the_fleet_queue() {
        let heap = format!("overload.{HEAP_MONITOR}.pressure");
        let cpu = format!("overload.{CPU_MONITOR}.pressure");
        let now = snapshot(&[
            ("a", envoy(&[], &[(&heap, 40.0), (&cpu, 20.0), ("cluster.p.upstream_rq_pending_active", 3.0)])),
            ("b", envoy(&[], &[(&heap, 95.0), (&cpu, 60.0), ("cluster.aurelis_xds.upstream_rq_pending_active", 9.0)])),
        ]);
        let p = pressure(&now);
        assert_eq!(p.heap, Some(("b".to_string(), 0.95)));
        assert!(p.cpu.is_some_and(|c| (c - 0.4).abs() < 1e-9));
        assert_eq!(p.queued, Some(3), "the control plane's own cluster is not the gateway's queue");
        assert_eq!(pressure(&Snapshot::new()), Pressure::default());
    }
}
