//! Tuning candidates from evidence the telemetry holds. Each rule reads a few counts over the
//! last cycle (5 minutes by default), proposes one setting's new value and an expected gain
//! (the share of requests, lookups or waits the change should turn from bad to good), and
//! says why in numbers. `tuning.rs` decides whether and how to roll it out.
use super::{Candidate, Tunable};

/// Counts over one tuning cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TuningEvidence {
    pub requests: u64,
    /// Misses on a key that had been stored but expired (the TTL was too short for it).
    pub expired_misses: u64,
    pub l1_evictions: u64,
    pub l1_entries: u64,
    pub l2_lookups: u64,
    pub l2_timeouts: u64,
    pub coalesced_waits: u64,
    pub coalescing_timeouts: u64,
    /// Envoy's `upstream_rq_pending_overflow` and `upstream_rq_retry_overflow`, by provider.
    pub pending_overflows: Vec<(String, u64)>,
    pub retry_overflows: Vec<(String, u64)>,
}

/// The settings the rules start from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurrentSettings {
    pub cache_ttl_s: f64,
    pub l1_max_entries: f64,
    pub l2_timeout_ms: f64,
    pub coalescing_timeout_ms: f64,
    pub max_pending_requests: f64,
    pub retry_budget_percent: f64,
}

/// Upper bounds the rules never propose beyond (they match the schema's own limits).
const MAX_TTL_S: f64 = 7.0 * 86_400.0;
const MAX_L1_ENTRIES: f64 = 1_000_000.0;
const MAX_L2_TIMEOUT_MS: f64 = 1_000.0;
const MAX_COALESCING_TIMEOUT_MS: f64 = 60_000.0;

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

pub fn candidates(e: &TuningEvidence, s: &CurrentSettings) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut propose = |setting, from: f64, to: f64, gain: f64, evidence: String| {
        if to > from {
            out.push(Candidate { setting, from, to, expected_gain: gain, evidence });
        }
    };
    let expired = share(e.expired_misses, e.requests);
    propose(
        Tunable::CacheTtlSeconds,
        s.cache_ttl_s,
        (s.cache_ttl_s * 2.0).min(MAX_TTL_S),
        expired,
        format!("{} of {} requests missed an entry that had expired", e.expired_misses, e.requests),
    );
    // Evicting while full: more room keeps entries that are asked for again.
    if e.l1_entries > 0 && e.l1_evictions as f64 > 0.1 * e.l1_entries as f64 {
        propose(
            Tunable::L1MaxEntries,
            s.l1_max_entries,
            (s.l1_max_entries * 1.5).min(MAX_L1_ENTRIES),
            share(e.l1_evictions, e.requests).min(1.0),
            format!("{} L1 evictions with {} entries over {} requests", e.l1_evictions, e.l1_entries, e.requests),
        );
    }
    propose(
        Tunable::L2TimeoutMs,
        s.l2_timeout_ms,
        (s.l2_timeout_ms * 1.5).min(MAX_L2_TIMEOUT_MS),
        share(e.l2_timeouts, e.l2_lookups),
        format!("{} of {} L2 lookups timed out", e.l2_timeouts, e.l2_lookups),
    );
    propose(
        Tunable::CoalescingTimeoutMs,
        s.coalescing_timeout_ms,
        (s.coalescing_timeout_ms * 1.5).min(MAX_COALESCING_TIMEOUT_MS),
        share(e.coalescing_timeouts, e.coalesced_waits),
        format!("{} of {} coalesced waits timed out", e.coalescing_timeouts, e.coalesced_waits),
    );
    let overflow = |list: &[(String, u64)]| list.iter().map(|(_, n)| *n).sum::<u64>();
    let pending = overflow(&e.pending_overflows);
    propose(
        Tunable::MaxPendingRequests,
        s.max_pending_requests,
        s.max_pending_requests * 1.5,
        share(pending, e.requests),
        format!("{pending} requests overflowed the pending queue ({:?})", e.pending_overflows),
    );
    let retries = overflow(&e.retry_overflows);
    propose(
        Tunable::RetryBudgetPercent,
        s.retry_budget_percent,
        (s.retry_budget_percent * 1.5).min(100.0),
        share(retries, e.requests),
        format!("{retries} retries were refused by the retry budget ({:?})", e.retry_overflows),
    );
    out.retain(|c| c.expected_gain > 0.0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: CurrentSettings = CurrentSettings {
        cache_ttl_s: 300.0,
        l1_max_entries: 1000.0,
        l2_timeout_ms: 50.0,
        coalescing_timeout_ms: 5000.0,
        max_pending_requests: 1024.0,
        retry_budget_percent: 25.0,
    };

    #[test]
    fn quiet_evidence_proposes_nothing() {
        assert!(candidates(&TuningEvidence { requests: 10_000, ..Default::default() }, &NOW).is_empty());
    }

    #[test]
    fn each_rule_names_its_numbers_and_a_bounded_new_value() {
        let e = TuningEvidence {
            requests: 10_000,
            expired_misses: 1_200,
            l1_evictions: 900,
            l1_entries: 1000,
            l2_lookups: 5_000,
            l2_timeouts: 400,
            ..Default::default()
        };
        let c = candidates(&e, &NOW);
        let ttl = c.iter().find(|c| c.setting == Tunable::CacheTtlSeconds).unwrap_or_else(|| panic!("{c:?}"));
        assert_eq!((ttl.from, ttl.to), (300.0, 600.0));
        assert!((ttl.expected_gain - 0.12).abs() < 1e-9);
        assert!(ttl.evidence.contains("1200 of 10000"), "{}", ttl.evidence);
        let l2 = c.iter().find(|c| c.setting == Tunable::L2TimeoutMs).unwrap_or_else(|| panic!("{c:?}"));
        assert_eq!(l2.to, 75.0);
        assert!(c.iter().any(|c| c.setting == Tunable::L1MaxEntries));
        let capped = candidates(&e, &CurrentSettings { l2_timeout_ms: 1000.0, ..NOW });
        assert!(!capped.iter().any(|c| c.setting == Tunable::L2TimeoutMs), "already at the bound");
    }
}
