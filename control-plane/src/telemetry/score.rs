//! The design document's performance score: each target met scores 1, a missed one the
//! ratio of target to actual (latencies) or actual to target (rates); overall the mean × 100
//! of the parts that had data. Targets come from the model file (`telemetry.targets`).
use super::report::Latency;
use crate::model::Targets;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScorePart {
    pub name: &'static str,
    pub target: f64,
    pub actual: f64,
    /// 0..=1: 1 when the target is met.
    pub score: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    /// 0..=100: the mean of the parts that had data.
    pub overall: f64,
    pub parts: Vec<ScorePart>,
}

pub fn score(
    targets: &Targets,
    latency: &Latency,
    requests_per_second: f64,
    tokens_per_second: f64,
    hit_rate: f64,
    miss_overhead_ms: Option<f64>,
    requests: u64,
) -> Score {
    let lower = |name, target: f64, actual: Option<f64>| {
        actual.map(|actual| ScorePart {
            name,
            target,
            actual,
            score: if actual <= target { 1.0 } else { target / actual },
        })
    };
    let higher = |name, target: f64, actual: f64| ScorePart { name, target, actual, score: (actual / target).min(1.0) };
    let secs = |ms: Option<f64>| ms.map(|ms| ms / 1000.0);
    let mut parts: Vec<ScorePart> = [
        lower("p50_latency_s", targets.p50_latency_s, secs(latency.p50_ms)),
        lower("p95_latency_s", targets.p95_latency_s, secs(latency.p95_ms)),
        lower("p99_latency_s", targets.p99_latency_s, secs(latency.p99_ms)),
        lower("miss_latency_s", targets.miss_latency_s, secs(miss_overhead_ms)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if requests > 0 {
        parts.push(higher("requests_per_second", targets.requests_per_second, requests_per_second));
        parts.push(higher("tokens_per_second", targets.tokens_per_second, tokens_per_second));
        parts.push(higher("hit_rate", targets.hit_rate, hit_rate));
    }
    let overall =
        if parts.is_empty() { 0.0 } else { 100.0 * parts.iter().map(|p| p.score).sum::<f64>() / parts.len() as f64 };
    Score { overall, parts }
}
