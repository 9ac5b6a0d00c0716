//! The detector: per series (model × provider) and metric, a baseline learned from normal
//! windows, a band around it, and hysteresis. A pure state machine: closed windows and `now`
//! in, events out; no clock, no I/O.
//!
//! Per track: while learning (fewer than `min_windows` normal values) nothing is judged. Then a
//! window is *outside* when it departs from the median (in the metric's bad direction) by more
//! than the limit, and *calm* when within `clear_band` × the limit. `raise_after` outside
//! windows in a row raise; once raised, only `clear_after` calm windows in a row clear, so a
//! series flapping around the limit raises one event. Outside windows and raised periods never
//! feed the baseline (an incident must not become the new normal by itself); a raised series
//! outside for `baseline_windows` windows in a row is accepted as the new normal: cleared, and
//! relearned.
use super::baseline::Baseline;
use super::config::{AnomalyConfig, Threshold};
use super::metric::{Bad, Metric};
use crate::telemetry::{SeriesKey, WindowSummary};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Raised,
    Cleared,
}

/// Why an anomaly was cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearReason {
    /// Back inside the inner band for `clear_after` windows.
    Recovered,
    /// Outside for `baseline_windows` windows: taken as the new normal and relearned.
    NewNormal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyEvent {
    /// Increasing per detector (per control-plane process).
    pub id: u64,
    pub kind: EventKind,
    pub series: SeriesKey,
    pub metric: Metric,
    /// The window's value that raised or cleared it.
    pub value: f64,
    /// The baseline's median.
    pub baseline: f64,
    /// How far from the baseline a value may be before it is outside.
    pub limit: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ClearReason>,
    /// Start of the window that decided it, Unix milliseconds.
    pub window_start_ms: i64,
    /// When the detector decided, Unix milliseconds.
    pub at_ms: i64,
}

/// An anomaly that is raised now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAnomaly {
    pub series: SeriesKey,
    pub metric: Metric,
    pub since_ms: i64,
    /// The latest window's value.
    pub value: f64,
    pub baseline: f64,
    pub limit: f64,
}

#[derive(Debug, Clone, Copy)]
struct Raised {
    since_ms: i64,
    /// Consecutive outside windows since raised (or since last inside).
    outside_run: usize,
    last_value: f64,
    baseline: f64,
    limit: f64,
}

#[derive(Debug, Default)]
struct Track {
    /// Normal values, newest last, at most `baseline_windows`.
    normal: VecDeque<f64>,
    outside_streak: u32,
    calm_streak: u32,
    raised: Option<Raised>,
}

/// What one window did to a track.
enum Transition {
    Raised { baseline: f64, limit: f64 },
    Cleared { baseline: f64, limit: f64, reason: ClearReason },
}

impl Track {
    fn learn(&mut self, value: f64, config: &AnomalyConfig) {
        self.normal.push_back(value);
        while self.normal.len() > config.baseline_windows {
            self.normal.pop_front();
        }
    }

    fn judge(&mut self, metric: Metric, value: f64, config: &AnomalyConfig, at_ms: i64) -> Option<Transition> {
        let threshold = metric.threshold(config);
        let baseline =
            (self.normal.len() >= config.min_windows).then(|| Baseline::of(self.normal.iter().copied())).flatten();
        let Some(baseline) = baseline else {
            self.learn(value, config);
            return None;
        };
        let limit = limit(threshold, &baseline);
        let excess = match metric.bad() {
            Bad::Above => value - baseline.median,
            Bad::Below => baseline.median - value,
            Bad::Either => (value - baseline.median).abs(),
        };
        let outside = excess > limit;
        let calm = excess <= limit * config.clear_band;
        match &mut self.raised {
            None if outside => {
                self.outside_streak += 1;
                if self.outside_streak < config.raise_after {
                    return None;
                }
                self.outside_streak = 0;
                self.calm_streak = 0;
                self.raised = Some(Raised {
                    since_ms: at_ms,
                    outside_run: 0,
                    last_value: value,
                    baseline: baseline.median,
                    limit,
                });
                Some(Transition::Raised { baseline: baseline.median, limit })
            }
            None => {
                self.outside_streak = 0;
                self.learn(value, config);
                None
            }
            Some(raised) => {
                raised.outside_run = if outside { raised.outside_run + 1 } else { 0 };
                raised.last_value = value;
                self.calm_streak = if calm { self.calm_streak + 1 } else { 0 };
                if self.calm_streak >= config.clear_after {
                    self.raised = None;
                    self.calm_streak = 0;
                    self.learn(value, config);
                    return Some(Transition::Cleared {
                        baseline: baseline.median,
                        limit,
                        reason: ClearReason::Recovered,
                    });
                }
                if raised.outside_run >= config.baseline_windows {
                    // A lasting change (more traffic, a slower model version) is the new
                    // normal: say so once and learn it, rather than alarm forever.
                    *self = Track::default();
                    return Some(Transition::Cleared {
                        baseline: baseline.median,
                        limit,
                        reason: ClearReason::NewNormal,
                    });
                }
                None
            }
        }
    }
}

/// The provider name of a model's own series (all its providers together).
pub const ALL_PROVIDERS: &str = "*";

/// One summary per model with two or more series in the window, counts added up (latency is
/// not mergeable from summaries and is left out).
fn per_model(window: &[WindowSummary]) -> Vec<WindowSummary> {
    let mut models: BTreeMap<&str, (usize, WindowSummary)> = BTreeMap::new();
    for summary in window {
        let (series, total) = models.entry(summary.series.model.as_str()).or_insert_with(|| {
            let key = SeriesKey { model: summary.series.model.clone(), provider: ALL_PROVIDERS.into() };
            let empty = WindowSummary {
                series: key,
                requests: 0,
                errors: 0,
                hits: 0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
                tokens_in: 0,
                tokens_out: 0,
                tokens_saved: 0,
                ..summary.clone()
            };
            (0, empty)
        });
        *series += 1;
        total.requests += summary.requests;
        total.errors += summary.errors;
        total.hits += summary.hits;
    }
    models.into_values().filter(|(series, _)| *series > 1).map(|(_, total)| total).collect()
}

fn limit(threshold: &Threshold, baseline: &Baseline) -> f64 {
    (threshold.deviations * baseline.spread)
        .max(threshold.min_change)
        .max(threshold.min_relative * baseline.median.abs())
}

pub struct Detector {
    config: AnomalyConfig,
    tracks: BTreeMap<SeriesKey, BTreeMap<Metric, Track>>,
    next_id: u64,
    /// Windows ignored because `max_series` series were already tracked.
    ignored_windows: u64,
}

impl Detector {
    pub fn new(config: AnomalyConfig) -> Detector {
        Detector { config, tracks: BTreeMap::new(), next_id: 1, ignored_windows: 0 }
    }

    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    pub fn ignored_windows(&self) -> u64 {
        self.ignored_windows
    }

    /// Judges one closed window (one summary per series) and returns what changed. Hit rate
    /// is also judged per model over all its providers (provider `*`): the telemetry files
    /// answers from the cache under their own provider (`cache`), so a per-provider hit rate
    /// is 0 or 1 and only the model's says how well the cache serves it.
    pub fn observe(&mut self, window: &[WindowSummary], now_ms: i64) -> Vec<AnomalyEvent> {
        let mut events = Vec::new();
        let per_model = per_model(window);
        let judged =
            window.iter().map(|s| (s, &Metric::ALL[..])).chain(per_model.iter().map(|s| (s, &[Metric::HitRate][..])));
        for (summary, metrics) in judged {
            if !self.tracks.contains_key(&summary.series) && self.tracks.len() >= self.config.max_series {
                self.ignored_windows += 1;
                continue;
            }
            let tracks = self.tracks.entry(summary.series.clone()).or_default();
            for &metric in metrics {
                if !metric.threshold(&self.config).enabled {
                    continue;
                }
                let Some(value) = metric.value(summary, self.config.min_requests) else { continue };
                let track = tracks.entry(metric).or_default();
                let Some(transition) = track.judge(metric, value, &self.config, now_ms) else { continue };
                let (kind, baseline, limit, reason) = match transition {
                    Transition::Raised { baseline, limit } => (EventKind::Raised, baseline, limit, None),
                    Transition::Cleared { baseline, limit, reason } => {
                        (EventKind::Cleared, baseline, limit, Some(reason))
                    }
                };
                events.push(AnomalyEvent {
                    id: self.next_id,
                    kind,
                    series: summary.series.clone(),
                    metric,
                    value,
                    baseline,
                    limit,
                    reason,
                    window_start_ms: summary.start_ms,
                    at_ms: now_ms,
                });
                self.next_id += 1;
            }
        }
        events
    }

    /// Anomalies raised now, by series and metric.
    pub fn active(&self) -> Vec<ActiveAnomaly> {
        self.tracks
            .iter()
            .flat_map(|(series, tracks)| {
                tracks.iter().filter_map(move |(metric, track)| {
                    track.raised.map(|r| ActiveAnomaly {
                        series: series.clone(),
                        metric: *metric,
                        since_ms: r.since_ms,
                        value: r.last_value,
                        baseline: r.baseline,
                        limit: r.limit,
                    })
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "detector_tests.rs"]
mod tests;
