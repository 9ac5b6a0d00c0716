//! The routing loop's memory: the latest windows per series, the operator's pins, and the
//! last decision per model with the inputs that produced it (`GET /v1/routing`). It turns a
//! batch of closed windows into the weights to push; `driver.rs` does the pushing.
use super::{next_weights, ProviderSignals, RoutingDecision, RoutingSettings};
use crate::model::Model;
use crate::telemetry::{SeriesKey, WindowSummary};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// A weight change, as `/v1/routing` lists it and the events log records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightChange {
    pub at_ms: i64,
    pub model: String,
    pub before: BTreeMap<String, u32>,
    pub after: BTreeMap<String, u32>,
    /// `adaptive`, `pin`, `unpin`.
    pub cause: &'static str,
}

/// One model's routing as last decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRouting {
    pub decision: RoutingDecision,
    pub inputs: BTreeMap<String, ProviderSignals>,
    pub pins: BTreeMap<String, u32>,
    pub decided_at_ms: i64,
    pub last_changed_ms: Option<i64>,
}

/// How many weight changes `/v1/routing` remembers.
const CHANGES_KEPT: usize = 200;

#[derive(Debug, Default)]
pub struct RoutingController {
    windows: BTreeMap<SeriesKey, VecDeque<WindowSummary>>,
    pins: BTreeMap<String, BTreeMap<String, u32>>,
    /// Quota exhaustion the providers signalled, by provider: until when (Unix ms).
    quota: BTreeMap<String, i64>,
    models: BTreeMap<String, ModelRouting>,
    changes: VecDeque<WeightChange>,
}

impl RoutingController {
    pub fn observe(&mut self, batch: &[WindowSummary], settings: &RoutingSettings) {
        for summary in batch {
            let ring = self.windows.entry(summary.series.clone()).or_default();
            ring.push_back(summary.clone());
            while ring.len() > settings.observe_windows.max(1) {
                ring.pop_front();
            }
        }
    }

    /// A provider said it has no quota left until `until_ms` (`retry-after`, a 429, or
    /// `x-ratelimit-remaining-*: 0` with its reset).
    pub fn quota_exhausted(&mut self, provider: &str, until_ms: i64) {
        let entry = self.quota.entry(provider.to_string()).or_insert(until_ms);
        *entry = (*entry).max(until_ms);
    }

    pub fn pin(&mut self, model: &str, provider: &str, weight: u32) {
        self.pins.entry(model.to_string()).or_default().insert(provider.to_string(), weight);
    }

    /// Returns whether there was a pin.
    pub fn unpin(&mut self, model: &str, provider: &str) -> bool {
        let removed = self.pins.get_mut(model).is_some_and(|p| p.remove(provider).is_some());
        if self.pins.get(model).is_some_and(BTreeMap::is_empty) {
            self.pins.remove(model);
        }
        removed
    }

    /// The weights each model should have now: `current` is what is pushed (the model file's
    /// weights overridden by earlier decisions). Only models whose weights change are returned.
    pub fn decide(
        &mut self,
        file: &Model,
        current: &BTreeMap<String, BTreeMap<String, u32>>,
        settings: &RoutingSettings,
        now_ms: i64,
    ) -> Vec<WeightChange> {
        let mut changes = Vec::new();
        for route in file.models.iter().filter(|m| m.providers.len() > 1 || self.pins.contains_key(&m.name)) {
            let base: BTreeMap<String, u32> = route.providers.iter().map(|p| (p.provider.clone(), p.weight)).collect();
            let now = current.get(&route.name).cloned().unwrap_or_else(|| base.clone());
            let inputs = self.signals(&route.name, &base, now_ms);
            let pins = self.pins.get(&route.name).cloned().unwrap_or_default();
            let decision = if settings.enabled {
                next_weights(&base, &now, &inputs, &pins, settings, now_ms)
            } else {
                // Not adaptive: the file's weights, except where an operator pinned one.
                let mut pinned = base.clone();
                pinned.extend(pins.iter().filter(|(p, _)| base.contains_key(*p)).map(|(p, w)| (p.clone(), *w)));
                let changed = pinned != now;
                RoutingDecision { targets: pinned.clone(), weights: pinned, reasons: BTreeMap::new(), changed }
            };
            let previous_change = self.models.get(&route.name).and_then(|m| m.last_changed_ms);
            let last_changed_ms = if decision.changed { Some(now_ms) } else { previous_change };
            if decision.changed {
                let change = WeightChange {
                    at_ms: now_ms,
                    model: route.name.clone(),
                    before: now.clone(),
                    after: decision.weights.clone(),
                    cause: if settings.enabled { "adaptive" } else { "pin" },
                };
                self.changes.push_back(change.clone());
                while self.changes.len() > CHANGES_KEPT {
                    self.changes.pop_front();
                }
                changes.push(change);
            }
            self.models.insert(
                route.name.clone(),
                ModelRouting { decision, inputs, pins, decided_at_ms: now_ms, last_changed_ms },
            );
        }
        changes
    }

    /// Per provider of the model: the latest windows merged (requests and errors summed, p95 as
    /// the request-weighted mean of the windows' p95s: percentiles do not merge exactly, and
    /// this only ranks providers against each other).
    fn signals(&self, model: &str, base: &BTreeMap<String, u32>, now_ms: i64) -> BTreeMap<String, ProviderSignals> {
        base.keys()
            .map(|provider| {
                let key = SeriesKey { model: model.to_string(), provider: provider.clone() };
                let ring = self.windows.get(&key);
                let windows = ring.into_iter().flatten();
                let (mut requests, mut errors, mut weighted_p95, mut p95_weight) = (0u64, 0u64, 0.0, 0u64);
                for w in windows {
                    requests += w.requests;
                    errors += w.errors;
                    if let Some(p95) = w.p95_ms {
                        weighted_p95 += p95 * w.requests as f64;
                        p95_weight += w.requests;
                    }
                }
                let signals = ProviderSignals {
                    requests,
                    p95_ms: (p95_weight > 0).then(|| weighted_p95 / p95_weight as f64),
                    error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
                    quota_exhausted_until_ms: self.quota.get(provider).copied().filter(|until| *until > now_ms),
                    price_per_1k_tokens: None,
                };
                (provider.clone(), signals)
            })
            .collect()
    }

    pub fn view(&self) -> (&BTreeMap<String, ModelRouting>, &VecDeque<WeightChange>) {
        (&self.models, &self.changes)
    }
}
