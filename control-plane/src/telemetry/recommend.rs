//! Recommendations: rules over a report's numbers. Each names its evidence (the numbers that
//! fired it) and the exact setting to change, with its current value where the control plane
//! knows it. Pure, so each rule is unit-tested on a hand-made report.
use super::record::CACHE_PROVIDER;
use super::report::Report;
use crate::model::TelemetrySpec;
use aurelis_core::config::{CachePolicy, FilterConfig};
use serde::Serialize;
use std::collections::BTreeMap;

/// Below this many requests in the period no rule fires: a handful of requests is no evidence.
pub const MIN_REQUESTS: u64 = 20;
/// The design document's thresholds.
const SLOW_P95_MS: f64 = 2000.0;
const SLOW_MODEL_MS: f64 = 3000.0;
/// Shares of requests past which our own evidence is worth acting on.
const NON_DETERMINISTIC_SHARE: f64 = 0.2;
const EVENT_SHARE: f64 = 0.01;
const PROVIDER_429_SHARE: f64 = 0.01;
const LIMITER_SHARE: f64 = 0.05;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    /// A stable id per rule (`low_hit_rate`, `slow_p95`, ...).
    pub rule: &'static str,
    pub message: String,
    /// The numbers that fired the rule.
    pub evidence: BTreeMap<String, f64>,
    /// The setting to change: a model-file path or an admin API route.
    pub setting: String,
}

fn evidence(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

pub fn recommendations(report: &Report, spec: &TelemetrySpec, filter: &FilterConfig) -> Vec<Recommendation> {
    let requests = report.requests;
    if requests < MIN_REQUESTS {
        return Vec::new();
    }
    let mut out = Vec::new();
    let target = spec.targets.hit_rate;
    if report.hit_rate < target {
        out.push(Recommendation {
            rule: "low_hit_rate",
            message: format!(
                "hit rate {:.1} % is under the {:.0} % target: warm the cache with your most frequent prompts and \
                 raise the TTL from {} s",
                report.hit_rate * 100.0,
                target * 100.0,
                filter.cache.ttl_seconds
            ),
            evidence: evidence(&[("hit_rate", report.hit_rate), ("target", target), ("requests", requests as f64)]),
            setting: format!("filter.cache.ttl_seconds (now {})", filter.cache.ttl_seconds),
        });
    }
    if let Some(p95) = report.latency.p95_ms.filter(|p95| *p95 > SLOW_P95_MS) {
        let slowest = report
            .series
            .iter()
            .filter(|m| m.provider != CACHE_PROVIDER)
            .max_by(|a, b| a.latency.p95_ms.partial_cmp(&b.latency.p95_ms).unwrap_or(std::cmp::Ordering::Equal));
        let setting = slowest.map_or("models[].providers[].weight".to_string(), |m| {
            format!("models[{}].providers[{}].weight (PUT /v1/models/{}/weights)", m.model, m.provider, m.model)
        });
        out.push(Recommendation {
            rule: "slow_p95",
            message: format!(
                "p95 latency {:.2} s is above {:.0} s: shift weight away from the slowest provider{}",
                p95 / 1000.0,
                SLOW_P95_MS / 1000.0,
                slowest.map_or(String::new(), |m| format!(" ({} for {})", m.provider, m.model))
            ),
            evidence: evidence(&[("p95_ms", p95), ("threshold_ms", SLOW_P95_MS)]),
            setting,
        });
    }
    for model in report.series.iter().filter(|m| m.requests >= MIN_REQUESTS && m.provider != CACHE_PROVIDER) {
        let Some(avg) = model.latency.avg_ms.filter(|avg| *avg > SLOW_MODEL_MS) else { continue };
        let faster = report
            .series
            .iter()
            .filter(|o| o.model == model.model && o.provider != model.provider && o.provider != CACHE_PROVIDER)
            .filter_map(|o| o.latency.avg_ms.map(|ms| (o, ms)))
            .filter(|(_, ms)| *ms < avg)
            .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
        out.push(Recommendation {
            rule: "slow_model",
            message: format!(
                "{} on {} averages {:.2} s (over {:.0} s): {}",
                model.model,
                model.provider,
                avg / 1000.0,
                SLOW_MODEL_MS / 1000.0,
                match faster {
                    Some((o, ms)) => format!("route more of it to {} ({:.2} s)", o.provider, ms / 1000.0),
                    None => "add a faster provider for it and route to it".to_string(),
                }
            ),
            evidence: evidence(&[
                ("avg_ms", avg),
                ("threshold_ms", SLOW_MODEL_MS),
                ("requests", model.requests as f64),
            ]),
            setting: format!("models[{}].providers (PUT /v1/models/{}/weights)", model.model, model.model),
        });
    }
    let non_deterministic = report.bypass_reasons.get("non_deterministic").copied().unwrap_or_default();
    if share(non_deterministic, requests) > NON_DETERMINISTIC_SHARE && filter.cache.policy == CachePolicy::Deterministic
    {
        out.push(Recommendation {
            rule: "non_deterministic_bypasses",
            message: format!(
                "{non_deterministic} of {requests} requests bypassed the cache as non-deterministic (no temperature 0 \
                 or seed): have clients send `temperature: 0` or a `seed`, or cache them anyway"
            ),
            evidence: evidence(&[("bypasses", non_deterministic as f64), ("requests", requests as f64)]),
            setting: "filter.cache.policy (now deterministic; `always` caches them)".to_string(),
        });
    }
    let event = |name: &str| report.events.get(name).copied().unwrap_or_default();
    let evictions = event("l1_eviction");
    if share(evictions, requests) > EVENT_SHARE {
        out.push(Recommendation {
            rule: "l1_evictions",
            message: format!(
                "{evictions} L1 evictions in {requests} requests: the L1 cache is too small for the working set"
            ),
            evidence: evidence(&[("evictions", evictions as f64), ("requests", requests as f64)]),
            setting: format!(
                "filter.cache.max_entries (now {}) and filter.cache.max_bytes (now {})",
                filter.cache.max_entries, filter.cache.max_bytes
            ),
        });
    }
    let l2_timeouts = event("l2_timeout");
    if share(l2_timeouts, requests) > EVENT_SHARE {
        out.push(Recommendation {
            rule: "l2_timeouts",
            message: format!("{l2_timeouts} L2 lookups timed out in {requests} requests: raise the timeout or scale the cache service"),
            evidence: evidence(&[("l2_timeouts", l2_timeouts as f64), ("requests", requests as f64)]),
            setting: format!("filter.l2.timeout_ms (now {})", filter.l2.timeout_ms),
        });
    }
    let coalesce_timeouts = event("coalesce_timeout");
    if share(coalesce_timeouts, requests) > EVENT_SHARE {
        out.push(Recommendation {
            rule: "coalescing_timeouts",
            message: format!(
                "{coalesce_timeouts} coalesced waiters timed out and went to the provider themselves: answers take longer \
                 than the coalescing timeout"
            ),
            evidence: evidence(&[("coalesce_timeouts", coalesce_timeouts as f64), ("requests", requests as f64)]),
            setting: format!("filter.cache.coalesce_timeout_ms (now {})", filter.cache.coalesce_timeout_ms),
        });
    }
    let provider_429 = report.errors_by_class.get("provider_429").copied().unwrap_or_default();
    if share(provider_429, requests) > PROVIDER_429_SHARE {
        out.push(Recommendation {
            rule: "provider_429s",
            message: format!(
                "providers answered 429 to {provider_429} of {requests} requests: their quota is exhausted; spread \
                 the model over more providers or limit clients before the provider does"
            ),
            evidence: evidence(&[("provider_429", provider_429 as f64), ("requests", requests as f64)]),
            setting: "models[].providers[].weight, or filter.rate_limit.limits.tokens_per_minute".to_string(),
        });
    }
    let refused = report.errors_by_class.get("limiter_refused").copied().unwrap_or_default();
    if share(refused, requests) > LIMITER_SHARE {
        out.push(Recommendation {
            rule: "limiter_refusals",
            message: format!(
                "the gateway's limiter refused {refused} of {requests} requests: raise the limits if the clients are \
                 legitimate, or give the busiest ones an override"
            ),
            evidence: evidence(&[("refused", refused as f64), ("requests", requests as f64)]),
            setting: "filter.rate_limit.limits (or filter.rate_limit.overrides)".to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::record::{ErrorClass, Record};
    use crate::telemetry::report::{report, Period, ReportInput};
    use crate::telemetry::windows::WindowKeeper;

    const NOW: i64 = 1_700_000_400_000;

    fn rules(records: &[Record]) -> Vec<Recommendation> {
        let mut keeper = WindowKeeper::new(0, 0, NOW - 120_000);
        for r in records {
            keeper.add(&Record { start_ms: NOW - 60_000, ..r.clone() }, NOW - 60_000);
        }
        let windows = keeper.close(NOW);
        report(&ReportInput {
            period: Period::Hour,
            now_ms: NOW,
            windows: &windows,
            spec: &TelemetrySpec::default(),
            filter: &FilterConfig::default(),
            sample_rate: 1.0,
        })
        .recommendations
    }

    fn base(status: &str, latency_ms: f64) -> Record {
        Record { model: "m".into(), provider: "p".into(), cache_status: status.into(), latency_ms, ..Record::default() }
    }

    fn named(recs: &[Recommendation], rule: &str) -> Option<Recommendation> {
        recs.iter().find(|r| r.rule == rule).cloned()
    }

    #[test]
    fn a_healthy_fleet_gets_no_advice_and_a_quiet_one_none_either() {
        let healthy: Vec<Record> = (0..100).map(|_| base("HIT", 20.0)).collect();
        assert_eq!(rules(&healthy), vec![]);
        let quiet: Vec<Record> = (0..5).map(|_| base("MISS", 9000.0)).collect();
        assert_eq!(rules(&quiet), vec![], "5 requests are no evidence");
    }

    #[test]
    fn low_hit_rate_names_the_ttl_and_its_value() {
        let records: Vec<Record> = (0..100).map(|i| base(if i < 30 { "HIT" } else { "MISS" }, 20.0)).collect();
        let rec = named(&rules(&records), "low_hit_rate").unwrap();
        assert_eq!(rec.evidence["hit_rate"], 0.3);
        assert_eq!(rec.setting, "filter.cache.ttl_seconds (now 300)");
    }

    #[test]
    fn slow_p95_and_slow_models_point_at_routing() {
        let mut records: Vec<Record> = (0..50).map(|_| base("HIT", 5000.0)).collect();
        records.extend((0..50).map(|_| Record { provider: "fast".into(), ..base("HIT", 100.0) }));
        let recs = rules(&records);
        let p95 = named(&recs, "slow_p95").unwrap();
        assert!(p95.setting.starts_with("models[m].providers[p].weight"), "{}", p95.setting);
        let slow = named(&recs, "slow_model").unwrap();
        assert!(slow.message.contains("route more of it to fast"), "{}", slow.message);
        assert!(slow.evidence["avg_ms"] > 4900.0);
    }

    #[test]
    fn our_own_evidence_fires_its_rules() {
        let mut records: Vec<Record> = (0..100).map(|_| base("HIT", 20.0)).collect();
        for r in records.iter_mut().take(30) {
            r.cache_status = "BYPASS".into();
            r.bypass_reason = Some("non_deterministic".into());
        }
        records[40].events = vec!["l2_timeout".into(), "coalesce_timeout".into(), "l1_eviction".into()];
        records[41].events = vec!["l2_timeout".into(), "coalesce_timeout".into(), "l1_eviction".into()];
        for r in records.iter_mut().skip(50).take(2) {
            r.error = Some(ErrorClass::Provider429);
        }
        for r in records.iter_mut().skip(60).take(6) {
            r.error = Some(ErrorClass::LimiterRefused);
        }
        let recs = rules(&records);
        let ids: Vec<&str> = recs.iter().map(|r| r.rule).collect();
        for rule in [
            "non_deterministic_bypasses",
            "l1_evictions",
            "l2_timeouts",
            "coalescing_timeouts",
            "provider_429s",
            "limiter_refusals",
        ] {
            assert!(ids.contains(&rule), "{rule} missing from {ids:?}");
        }
        assert_eq!(named(&recs, "l2_timeouts").unwrap().setting, "filter.l2.timeout_ms (now 25)");
        assert_eq!(named(&recs, "non_deterministic_bypasses").unwrap().evidence["bypasses"], 30.0);
    }
}
