//! Adaptive provider weights per model: a provider that is slow, failing, out of quota or
//! expensive gets less of the model's traffic, in bounded steps, never less than a probe share
//! (so its recovery is seen), and none at all while it said its quota is exhausted.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one 10 s (or longer) observation says about one provider of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProviderSignals {
    pub requests: u64,
    pub p95_ms: Option<f64>,
    pub error_rate: f64,
    /// Until when the provider said it has no quota left (`retry-after`, or a
    /// `x-ratelimit-remaining-*: 0` with its reset), Unix ms.
    pub quota_exhausted_until_ms: Option<i64>,
    /// Price per 1k tokens from the model file's price table, when there is one.
    pub price_per_1k_tokens: Option<f64>,
}

/// The model file's `adaptive.routing` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    /// Off: the model file's (or an operator's) weights are used as written.
    pub enabled: bool,
    /// Weights are shares of this total.
    pub total_weight: u32,
    /// At most this many weight points move per provider per decision.
    pub max_step: u32,
    /// A provider with quota keeps at least this much, so recovery is observed.
    pub min_weight: u32,
    /// Targets closer than this to the current weights change nothing (against flapping).
    pub deadband: u32,
    /// Fewer requests than this in the window: no evidence, weights stay.
    pub min_requests: u64,
    /// How strongly price counts against a provider (0: not at all, 1: proportionally).
    pub cost_factor: f64,
    /// How many of the latest 10 s windows one decision looks at.
    pub observe_windows: usize,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            enabled: false,
            total_weight: 100,
            max_step: 10,
            min_weight: 5,
            deadband: 5,
            min_requests: 20,
            cost_factor: 0.0,
            observe_windows: 3,
        }
    }
}

/// Why a provider's weight is what it is, for `GET /v1/routing` and the change events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightReason {
    /// An operator fixed it (`PUT /v1/routing/...`).
    Pinned,
    /// The provider said its quota is exhausted; no traffic until its reset.
    QuotaExhausted,
    /// Moving toward the target set by latency, errors and price.
    Adaptive,
    /// Too little traffic to judge: unchanged.
    NoEvidence,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingDecision {
    pub weights: BTreeMap<String, u32>,
    /// The weights the signals point to; `weights` moves toward them step by step.
    pub targets: BTreeMap<String, u32>,
    pub reasons: BTreeMap<String, WeightReason>,
    pub changed: bool,
}

/// The next weights of one model's providers.
///
/// `base` are the model file's weights (the operator's intent when all is well); `current` what
/// Envoy has now; `pins` the operator's fixed weights, which always win.
pub fn next_weights(
    base: &BTreeMap<String, u32>,
    current: &BTreeMap<String, u32>,
    signals: &BTreeMap<String, ProviderSignals>,
    pins: &BTreeMap<String, u32>,
    settings: &RoutingSettings,
    now_ms: i64,
) -> RoutingDecision {
    let exhausted =
        |p: &str| signals.get(p).and_then(|s| s.quota_exhausted_until_ms).is_some_and(|until| until > now_ms);
    let evidence: u64 = signals.values().map(|s| s.requests).sum();
    let mut reasons = BTreeMap::new();
    for provider in base.keys() {
        let reason = if pins.contains_key(provider) {
            WeightReason::Pinned
        } else if exhausted(provider) {
            WeightReason::QuotaExhausted
        } else if evidence < settings.min_requests {
            WeightReason::NoEvidence
        } else {
            WeightReason::Adaptive
        };
        reasons.insert(provider.clone(), reason);
    }
    let targets = targets(base, current, signals, pins, &reasons, settings);
    let mut weights = BTreeMap::new();
    for (provider, target) in &targets {
        let now = current.get(provider).copied().unwrap_or(base.get(provider).copied().unwrap_or(0));
        let next = match reasons.get(provider) {
            // Pins and exhausted quota take effect at once; everything else moves in steps,
            // unless an operator pinned a provider of this model: the share they asked for
            // then holds at once, for the others too.
            Some(WeightReason::Pinned | WeightReason::QuotaExhausted) => *target,
            _ if !pins.is_empty() => *target,
            _ if now.abs_diff(*target) < settings.deadband => now,
            _ if *target > now => now + (*target - now).min(settings.max_step),
            _ => now - (now - *target).min(settings.max_step),
        };
        weights.insert(provider.clone(), next);
    }
    // Envoy refuses a weighted route whose weights are all zero: keep the file's weights then
    // (every provider out of quota means the next request fails anyway; better it probes).
    if weights.values().all(|w| *w == 0) {
        weights = base.clone();
    }
    let changed = weights != *current;
    RoutingDecision { weights, targets, reasons, changed }
}

/// Where the signals point: the file's weights scaled by each provider's desirability, shared
/// out of what pins leave, with the probe floor.
fn targets(
    base: &BTreeMap<String, u32>,
    current: &BTreeMap<String, u32>,
    signals: &BTreeMap<String, ProviderSignals>,
    pins: &BTreeMap<String, u32>,
    reasons: &BTreeMap<String, WeightReason>,
    settings: &RoutingSettings,
) -> BTreeMap<String, u32> {
    let best_p95 = signals.values().filter_map(|s| s.p95_ms).filter(|p| *p > 0.0).fold(f64::INFINITY, f64::min);
    let cheapest =
        signals.values().filter_map(|s| s.price_per_1k_tokens).filter(|p| *p > 0.0).fold(f64::INFINITY, f64::min);
    let pinned_total: u32 = pins.iter().filter(|(p, _)| base.contains_key(*p)).map(|(_, w)| *w).sum();
    let share = settings.total_weight.saturating_sub(pinned_total);

    let mut scores = BTreeMap::new();
    for (provider, base_weight) in base {
        if reasons.get(provider) != Some(&WeightReason::Adaptive) {
            continue;
        }
        let s = signals.get(provider).cloned().unwrap_or_default();
        let health = (1.0 - s.error_rate.clamp(0.0, 0.99)).powi(2);
        let speed = match s.p95_ms {
            Some(p) if p > 0.0 && best_p95.is_finite() => best_p95 / p,
            _ => 1.0,
        };
        let cost = match s.price_per_1k_tokens {
            Some(p) if p > 0.0 && cheapest.is_finite() => (cheapest / p).powf(settings.cost_factor.max(0.0)),
            _ => 1.0,
        };
        scores.insert(provider.clone(), f64::from(*base_weight) * health * speed * cost);
    }
    let total_score: f64 = scores.values().sum();
    // What the adaptive providers shared before: untouched providers (no evidence) keep theirs.
    let held: u32 = reasons
        .iter()
        .filter(|(_, r)| **r == WeightReason::NoEvidence)
        .map(|(p, _)| current.get(p).copied().unwrap_or(0))
        .sum();
    let adaptive_share = share.saturating_sub(held);

    let mut targets = BTreeMap::new();
    for (provider, reason) in reasons {
        let target = match reason {
            WeightReason::Pinned => pins.get(provider).copied().unwrap_or(0),
            WeightReason::QuotaExhausted => 0,
            WeightReason::NoEvidence => {
                current.get(provider).copied().unwrap_or(base.get(provider).copied().unwrap_or(0))
            }
            WeightReason::Adaptive => {
                let score = scores.get(provider).copied().unwrap_or(0.0);
                let fair = if total_score > 0.0 { score / total_score * f64::from(adaptive_share) } else { 0.0 };
                (fair.round() as u32).max(settings.min_weight.min(adaptive_share))
            }
        };
        targets.insert(provider.clone(), target);
    }
    targets
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
