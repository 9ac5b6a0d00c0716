//! The detector in the running control plane: fed every closed window, it keeps the latest
//! events (bounded, for `GET /v1/events`), the active anomalies (gauges on `/metrics`) and hands
//! each event to the webhook. `observe` takes `now` from its caller; only `watch` reads a clock.
use super::detector::{ActiveAnomaly, AnomalyEvent, Detector};
use super::metrics::AnomalyMetrics;
use super::webhook::Webhook;
use super::AnomalyConfig;
use crate::telemetry::WindowSummary;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};
use tokio::sync::{broadcast, watch};

pub struct Anomalies {
    state: Mutex<State>,
    metrics: AnomalyMetrics,
    webhook: OnceLock<Webhook>,
}

struct State {
    detector: Detector,
    /// Oldest first, at most `max_events`.
    events: VecDeque<AnomalyEvent>,
    active: Vec<ActiveAnomaly>,
    ignored_reported: u64,
}

impl Anomalies {
    pub fn new(config: AnomalyConfig, registry: &prometheus::Registry) -> Anomalies {
        Anomalies {
            state: Mutex::new(State {
                detector: Detector::new(config),
                events: VecDeque::new(),
                active: Vec::new(),
                ignored_reported: 0,
            }),
            metrics: AnomalyMetrics::new(registry),
            webhook: OnceLock::new(),
        }
    }

    pub fn metrics(&self) -> &AnomalyMetrics {
        &self.metrics
    }

    /// Sends every later event to this webhook too (once; a second call is ignored).
    pub fn attach_webhook(&self, webhook: Webhook) {
        if self.webhook.set(webhook).is_err() {
            tracing::warn!("anomaly webhook already attached; ignoring another");
        }
    }

    /// Judges one closed window; returns the events it raised or cleared.
    pub fn observe(&self, window: &[WindowSummary], now_ms: i64) -> Vec<AnomalyEvent> {
        let mut state = self.lock();
        let events = state.detector.observe(window, now_ms);
        let max_events = state.detector.config().max_events;
        for event in &events {
            state.events.push_back(event.clone());
            self.metrics.record(event);
            tracing::info!(
                kind = ?event.kind,
                model = %event.series.model,
                provider = %event.series.provider,
                metric = event.metric.as_str(),
                value = event.value,
                baseline = event.baseline,
                "anomaly"
            );
            if let Some(webhook) = self.webhook.get() {
                webhook.notify(event.clone());
            }
        }
        while state.events.len() > max_events {
            state.events.pop_front();
        }
        if !events.is_empty() {
            state.active = state.detector.active();
            self.metrics.show_active(&state.active);
        }
        let ignored = state.detector.ignored_windows();
        if ignored > state.ignored_reported {
            tracing::warn!(ignored, "windows of series past anomalies.max_series are not judged");
            state.ignored_reported = ignored;
        }
        events
    }

    /// The latest `limit` events, oldest first.
    pub fn events(&self, limit: usize) -> Vec<AnomalyEvent> {
        let state = self.lock();
        let skip = state.events.len().saturating_sub(limit);
        state.events.iter().skip(skip).cloned().collect()
    }

    pub fn active(&self) -> Vec<ActiveAnomaly> {
        self.lock().active.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a push or a replacement: a panic cannot leave the
        // state half-written, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Unix milliseconds now (the one clock read of the detector).
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Feeds every closed window published on `windows` to `sink` until `stop` fires or the
/// publisher goes away. A slow loop that misses windows (`Lagged`) skips them and says so.
pub async fn feed_windows<W>(
    mut windows: broadcast::Receiver<W>,
    sink: impl Fn(&[WindowSummary], i64),
    mut stop: watch::Receiver<()>,
) where
    W: AsRef<[WindowSummary]> + Clone,
{
    loop {
        let window = tokio::select! {
            window = windows.recv() => window,
            _ = stop.changed() => return,
        };
        match window {
            Ok(window) => sink(window.as_ref(), now_ms()),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "window consumer fell behind; skipped windows are not judged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
pub(crate) mod tests;
