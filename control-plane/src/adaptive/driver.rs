//! The loop that closes the circle: closed telemetry windows in, decisions made, effects pushed
//! through the same `ConfigStore` every other change goes through (so they reach Envoy over
//! xDS like an operator's change, versioned and acknowledged).
use super::{
    apply, candidates, desired_replicas, EndpointLoad, Guard, ScalingInputs, TuningEvent, TuningEvidence, WeightChange,
};
use crate::state::AppState;
use crate::telemetry::{QuotaSignal, WindowSummary};
use std::collections::BTreeMap;
use tokio::sync::{broadcast, watch};

/// Decides every model's weights now and pushes those that changed.
pub fn apply_routing(state: &AppState, now_ms: i64) -> Vec<WeightChange> {
    let desired = state.config.desired();
    let settings = &desired.model.adaptive.routing;
    let changes = state.adaptive.routing().decide(&desired.model, &desired.adaptive_weights, settings, now_ms);
    if !changes.is_empty() {
        state.config.update(|d| {
            for change in &changes {
                d.adaptive_weights.insert(change.model.clone(), change.after.clone());
            }
        });
    }
    let metrics = &state.adaptive.metrics;
    for change in &changes {
        metrics.weight_changes.with_label_values(&[change.cause]).inc();
        tracing::info!(model = %change.model, before = ?change.before, after = ?change.after, cause = change.cause, "provider weights changed");
    }
    for route in &state.config.desired().effective_model().models {
        for provider in &route.providers {
            metrics
                .routing_weight
                .with_label_values(&[&route.name, &provider.provider])
                .set(i64::from(provider.weight));
        }
    }
    changes
}

/// One window of per-endpoint load for each provider cluster → the policies to push. Returns
/// the providers whose balancing changed (each switch is kept in the routing log with its
/// inputs, `GET /v1/routing`, and counted).
pub fn apply_balancing(
    state: &AppState,
    loads: &BTreeMap<String, BTreeMap<String, EndpointLoad>>,
    now_ms: i64,
) -> Vec<String> {
    let desired = state.config.desired();
    let settings = &desired.model.adaptive.balancing;
    if !settings.enabled {
        return Vec::new();
    }
    let effective = desired.effective_model();
    let mut decided = Vec::new();
    {
        let mut balancing = state.adaptive.balancing();
        for provider in &effective.providers {
            let Some(endpoints) = loads.get(&provider.name) else { continue };
            if let Some(next) = balancing.decide(&provider.name, provider.limits.lb_policy, endpoints, settings, now_ms)
            {
                decided.push((provider.name.clone(), provider.limits.lb_policy, next));
            }
        }
    }
    let changed: Vec<String> = decided.iter().map(|(p, _, _)| p.clone()).collect();
    if !decided.is_empty() {
        state.config.update(|d| {
            for (provider, before, next) in decided {
                tracing::info!(%provider, ?before, after = ?next.policy, "load-balancing policy changed");
                let after = serde_json::to_value(next.policy).ok();
                let label = after.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown");
                state.adaptive.metrics.balancing_changes.with_label_values(&[label]).inc();
                d.adaptive_balancing.insert(provider, next);
            }
        });
    }
    changed
}

/// One tuning tick: candidates from `evidence`, the rollout advanced or rolled back against
/// `guard`, and each `Apply`/`RolledBack` written into the pushed configuration. Every event
/// is kept for `GET /v1/tuning` with its before/after values.
pub fn tune(state: &AppState, evidence: &TuningEvidence, guard: Guard, now_ms: i64) -> Vec<TuningEvent> {
    let desired = state.config.desired();
    let settings = &desired.model.adaptive.tuning;
    let found = candidates(evidence, &apply::current_settings(&desired));
    let events = state.adaptive.tuner().tick(settings, guard, &found, now_ms);
    state.adaptive.set_candidates(found);
    for event in &events {
        let (setting, value) = match event {
            TuningEvent::Apply { setting, after, .. } | TuningEvent::RolledBack { setting, after, .. } => {
                (*setting, *after)
            }
            TuningEvent::Completed { .. } => continue,
        };
        let applied = state.config.try_update(|d| apply::set(d, setting, value));
        if let Err(error) = applied {
            // The schema refused the value: stop this rollout (the next tick may pick another).
            tracing::warn!(?setting, value, %error, "tuning step refused by validation");
            state.adaptive.tuner().rollout = None;
        }
        tracing::info!(?event, "tuning");
    }
    state.adaptive.record_tuning(now_ms, &events);
    events
}

/// What one batch of windows says about the whole fleet, as the tuning guard reads it:
/// request-weighted error rate, p95 and hit rate.
pub fn guard_of(batch: &[WindowSummary]) -> Option<Guard> {
    let requests: u64 = batch.iter().map(|w| w.requests).sum();
    if requests == 0 {
        return None;
    }
    let weighted = |f: &dyn Fn(&WindowSummary) -> f64| {
        batch.iter().map(|w| f(w) * w.requests as f64).sum::<f64>() / requests as f64
    };
    Some(Guard {
        error_rate: weighted(&|w| w.error_rate()),
        p95_ms: weighted(&|w| w.p95_ms.unwrap_or(0.0)),
        hit_rate: weighted(&|w| w.hit_rate()),
    })
}

/// The scaling recommendation from one batch, the number of connected Envoys and their stats
/// (CPU from the overload manager's monitor, queueing from the provider clusters; unknown
/// while no Envoy reports them, so they can raise but never lower it).
pub fn recommend_replicas(state: &AppState, batch: &[WindowSummary], envoys: u32, now_ms: i64) -> u32 {
    let guard = guard_of(batch);
    let fleet = super::fleet::pressure(state, now_ms);
    let inputs =
        ScalingInputs { replicas: envoys, cpu: fleet.cpu, queued: fleet.queued, p95_ms: guard.map(|g| g.p95_ms) };
    let desired = desired_replicas(&inputs, &state.config.desired().model.adaptive.scaling);
    state.adaptive.metrics.desired_replicas.set(i64::from(desired));
    desired
}

/// Feeds each batch of closed windows to the routing, tuning and scaling loops until `stop`
/// fires.
pub async fn run(
    state: AppState,
    mut windows: broadcast::Receiver<Vec<WindowSummary>>,
    mut quota: broadcast::Receiver<QuotaSignal>,
    mut stop: watch::Receiver<()>,
    now_ms: impl Fn() -> i64 + Send,
) {
    loop {
        tokio::select! {
            // A provider out of quota loses its traffic at once, not at the window's close.
            signal = quota.recv() => match signal {
                Ok(signal) => {
                    state.adaptive.routing().quota_exhausted(&signal.provider, signal.until_ms);
                    if state.config.desired().model.adaptive.routing.enabled {
                        apply_routing(&state, now_ms());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "adaptive routing skipped quota signals");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            batch = windows.recv() => match batch {
                Ok(batch) => {
                    let now = now_ms();
                    let adaptive = state.config.desired().model.adaptive;
                    state.adaptive.routing().observe(&batch, &adaptive.routing);
                    apply_routing(&state, now);
                    // Per-endpoint load over the balancing window, from the same records.
                    let window_ms = i64::try_from(adaptive.balancing.window_s.saturating_mul(1000)).unwrap_or(i64::MAX);
                    apply_balancing(&state, &state.telemetry.endpoint_loads(now, window_ms), now);
                    if let Some(guard) = guard_of(&batch) {
                        let requests = batch.iter().map(|w| w.requests).sum();
                        tune(&state, &super::fleet::cycle_evidence(&state, requests, now), guard, now);
                    }
                    let envoys = u32::try_from(state.clients.list().len()).unwrap_or(u32::MAX);
                    recommend_replicas(&state, &batch, envoys, now);
                }
                // Fell behind: the next batch is as good as the missed ones.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "adaptive routing skipped telemetry windows");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        }
    }
}
