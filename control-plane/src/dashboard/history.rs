//! What the dashboard charts: the fleet's last closed windows (one point each) and, per model ×
//! provider, totals over those windows. Kept in memory, bounded, fed by the same window stream
//! as the anomaly detector; a pure fold, no clock.
use crate::telemetry::{SeriesKey, WindowSummary};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// One closed window, all series merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub start_ms: i64,
    pub window_secs: u32,
    pub requests: u64,
    pub requests_per_second: f64,
    pub hit_rate: f64,
    pub error_rate: f64,
    /// Percentiles of different series cannot be merged exactly from summaries: these are the
    /// series' percentiles weighted by their requests (the report's are exact per period).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One model × provider over the kept windows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    #[serde(flatten)]
    pub series: SeriesKey,
    pub requests: u64,
    pub requests_per_second: f64,
    pub hit_rate: f64,
    pub error_rate: f64,
    /// The latest window's p95 for this series.
    pub last_p95_ms: Option<f64>,
    pub tokens_saved: u64,
}

#[derive(Debug, Default, Clone)]
struct Totals {
    requests: u64,
    hits: u64,
    errors: u64,
    tokens_saved: u64,
    seconds: u64,
    last_p95_ms: Option<f64>,
    last_start_ms: i64,
}

pub struct History {
    capacity: usize,
    points: VecDeque<Point>,
    /// Each series' windows still inside the kept range, to subtract them when they fall out.
    windows: VecDeque<Vec<WindowSummary>>,
    series: BTreeMap<SeriesKey, Totals>,
}

impl History {
    /// Keeps the last `capacity` windows (at least one).
    pub fn new(capacity: usize) -> History {
        History {
            capacity: capacity.max(1),
            points: VecDeque::new(),
            windows: VecDeque::new(),
            series: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, window: &[WindowSummary]) {
        let Some(first) = window.first() else { return };
        self.points.push_back(merge(first.start_ms, first.window_secs, window));
        self.windows.push_back(window.to_vec());
        while self.points.len() > self.capacity {
            self.points.pop_front();
            if let Some(old) = self.windows.pop_front() {
                for summary in &old {
                    self.forget(summary);
                }
            }
        }
        for summary in window {
            let totals = self.series.entry(summary.series.clone()).or_default();
            totals.requests += summary.requests;
            totals.hits += summary.hits;
            totals.errors += summary.errors;
            totals.tokens_saved += summary.tokens_saved;
            totals.seconds += u64::from(summary.window_secs);
            if summary.start_ms >= totals.last_start_ms {
                totals.last_start_ms = summary.start_ms;
                totals.last_p95_ms = summary.p95_ms;
            }
        }
    }

    fn forget(&mut self, summary: &WindowSummary) {
        let Some(totals) = self.series.get_mut(&summary.series) else { return };
        totals.requests = totals.requests.saturating_sub(summary.requests);
        totals.hits = totals.hits.saturating_sub(summary.hits);
        totals.errors = totals.errors.saturating_sub(summary.errors);
        totals.tokens_saved = totals.tokens_saved.saturating_sub(summary.tokens_saved);
        totals.seconds = totals.seconds.saturating_sub(u64::from(summary.window_secs));
        if totals.seconds == 0 {
            self.series.remove(&summary.series);
        }
    }

    pub fn points(&self) -> Vec<Point> {
        self.points.iter().cloned().collect()
    }

    /// Busiest first.
    pub fn rows(&self) -> Vec<SeriesRow> {
        let kept_seconds: u64 = self.points.iter().map(|p| u64::from(p.window_secs)).sum();
        let mut rows: Vec<SeriesRow> = self
            .series
            .iter()
            .map(|(series, t)| SeriesRow {
                series: series.clone(),
                requests: t.requests,
                requests_per_second: ratio(t.requests, kept_seconds),
                hit_rate: ratio(t.hits, t.requests),
                error_rate: ratio(t.errors, t.requests),
                last_p95_ms: t.last_p95_ms,
                tokens_saved: t.tokens_saved,
            })
            .collect();
        rows.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.series.cmp(&b.series)));
        rows
    }
}

fn merge(start_ms: i64, window_secs: u32, window: &[WindowSummary]) -> Point {
    let requests: u64 = window.iter().map(|s| s.requests).sum();
    let weighted = |pick: fn(&WindowSummary) -> Option<f64>| {
        let (sum, weight) = window
            .iter()
            .filter_map(|s| pick(s).filter(|v| v.is_finite()).map(|v| (v * s.requests as f64, s.requests as f64)))
            .fold((0.0, 0.0), |(sum, weight), (v, w)| (sum + v, weight + w));
        (weight > 0.0).then(|| sum / weight)
    };
    Point {
        start_ms,
        window_secs,
        requests,
        requests_per_second: requests as f64 / f64::from(window_secs.max(1)),
        hit_rate: ratio(window.iter().map(|s| s.hits).sum(), requests),
        error_rate: ratio(window.iter().map(|s| s.errors).sum(), requests),
        p50_ms: weighted(|s| s.p50_ms),
        p95_ms: weighted(|s| s.p95_ms),
        p99_ms: weighted(|s| s.p99_ms),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(provider: &str, start_ms: i64, requests: u64, hits: u64, p95_ms: f64) -> WindowSummary {
        WindowSummary {
            series: SeriesKey { model: "m".into(), provider: provider.into() },
            start_ms,
            window_secs: 10,
            requests,
            errors: 1,
            hits,
            p50_ms: Some(p95_ms / 2.0),
            p95_ms: Some(p95_ms),
            p99_ms: Some(p95_ms),
            tokens_in: 0,
            tokens_out: 0,
            tokens_saved: hits * 10,
        }
    }

    #[test]
    fn windows_merge_into_points_and_rows_and_old_ones_fall_out() {
        let mut history = History::new(2);
        history.record(&[summary("a", 0, 30, 15, 100.0), summary("b", 0, 10, 0, 500.0)]);
        let point = &history.points()[0];
        assert_eq!((point.requests, point.requests_per_second, point.hit_rate), (40, 4.0, 15.0 / 40.0));
        assert_eq!(point.error_rate, 2.0 / 40.0);
        assert_eq!(point.p95_ms, Some((100.0 * 30.0 + 500.0 * 10.0) / 40.0), "weighted by requests");
        history.record(&[summary("a", 10_000, 10, 10, 50.0)]);
        history.record(&[summary("a", 20_000, 20, 0, 70.0)]);
        assert_eq!(history.points().iter().map(|p| p.start_ms).collect::<Vec<_>>(), [10_000, 20_000]);
        let rows = history.rows();
        assert_eq!(rows.len(), 1, "b's only window fell out: {rows:?}");
        assert_eq!((rows[0].requests, rows[0].hit_rate, rows[0].last_p95_ms), (30, 10.0 / 30.0, Some(70.0)));
        assert_eq!(rows[0].requests_per_second, 30.0 / 20.0);
        history.record(&[]);
        assert_eq!(history.points().len(), 2, "an empty window adds nothing");
    }
}
