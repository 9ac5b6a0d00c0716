//! The detector driven window by window with made-up summaries and a made-up clock.
use super::*;

const WINDOW_MS: i64 = 10_000;

fn series(provider: &str) -> SeriesKey {
    SeriesKey { model: "gpt-4o-mini".into(), provider: provider.into() }
}

/// A window of `requests` over 10 s with this p95, errors and hits.
fn summary(provider: &str, i: i64, requests: u64, p95_ms: f64, errors: u64, hits: u64) -> WindowSummary {
    WindowSummary {
        series: series(provider),
        start_ms: i * WINDOW_MS,
        window_secs: 10,
        requests,
        errors,
        hits,
        p50_ms: Some(p95_ms / 2.0),
        p95_ms: Some(p95_ms),
        p99_ms: Some(p95_ms * 1.2),
        tokens_in: requests * 20,
        tokens_out: requests * 30,
        tokens_saved: hits * 30,
    }
}

/// Ordinary traffic with a little deterministic noise in every metric.
fn normal(provider: &str, i: i64) -> WindowSummary {
    let wobble = (i % 5) as u64;
    summary(provider, i, 200 + wobble * 3, 100.0 + wobble as f64 * 4.0, wobble % 2, 100 + wobble)
}

fn slow(provider: &str, i: i64) -> WindowSummary {
    WindowSummary { p95_ms: Some(900.0), ..normal(provider, i) }
}

struct Run {
    detector: Detector,
    next: i64,
}

impl Run {
    fn new() -> Run {
        Run { detector: Detector::new(AnomalyConfig::default()), next: 0 }
    }

    /// Feeds one window per call of `make` and returns every event.
    fn feed(&mut self, windows: usize, make: impl Fn(i64) -> Vec<WindowSummary>) -> Vec<AnomalyEvent> {
        let mut events = Vec::new();
        for _ in 0..windows {
            let i = self.next;
            self.next += 1;
            // The window is judged 1 s after it closed.
            events.extend(self.detector.observe(&make(i), (i + 1) * WINDOW_MS + 1000));
        }
        events
    }

    fn warm_up(&mut self) {
        let events = self.feed(10, |i| vec![normal("a", i), normal("b", i)]);
        assert_eq!(events, [], "learning raises nothing");
    }
}

fn kinds(events: &[AnomalyEvent]) -> Vec<(EventKind, Metric, &str)> {
    events.iter().map(|e| (e.kind, e.metric, e.series.provider.as_str())).collect()
}

#[test]
fn a_quiet_series_raises_nothing() {
    let mut run = Run::new();
    assert_eq!(run.feed(200, |i| vec![normal("a", i), normal("b", i)]), []);
    assert_eq!(run.detector.active(), []);
}

#[test]
fn a_latency_spike_raises_and_recovery_clears() {
    let mut run = Run::new();
    run.warm_up();
    assert_eq!(run.feed(1, |i| vec![slow("a", i), normal("b", i)]), [], "one window is not enough");
    let raised = run.feed(1, |i| vec![slow("a", i), normal("b", i)]);
    assert_eq!(kinds(&raised), [(EventKind::Raised, Metric::P95LatencyMs, "a")]);
    let event = &raised[0];
    assert_eq!((event.value, event.baseline, event.reason), (900.0, 108.0, None));
    assert_eq!(event.limit, 250.0, "the floor: the series is steadier than 250 ms");
    assert_eq!((event.window_start_ms, event.at_ms), (11 * WINDOW_MS, 12 * WINDOW_MS + 1000));
    assert_eq!(run.feed(5, |i| vec![slow("a", i), normal("b", i)]), [], "still raised: no more events");
    let active = run.detector.active();
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].series.provider.as_str(), active[0].metric), ("a", Metric::P95LatencyMs));
    assert_eq!(run.feed(2, |i| vec![normal("a", i), normal("b", i)]), [], "two calm windows are not enough");
    let cleared = run.feed(1, |i| vec![normal("a", i), normal("b", i)]);
    assert_eq!(kinds(&cleared), [(EventKind::Cleared, Metric::P95LatencyMs, "a")]);
    assert_eq!(cleared[0].reason, Some(ClearReason::Recovered));
    assert!(cleared[0].id > raised[0].id);
    assert_eq!(run.detector.active(), []);
    assert_eq!(run.feed(50, |i| vec![normal("a", i), normal("b", i)]), []);
}

#[test]
fn a_flapping_series_raises_once() {
    let mut run = Run::new();
    run.warm_up();
    // Slow, slow, then alternating: never three calm windows in a row.
    let events = run.feed(60, |i| {
        let a = if i < 12 || i % 2 == 0 { slow("a", i) } else { normal("a", i) };
        vec![a, normal("b", i)]
    });
    assert_eq!(kinds(&events), [(EventKind::Raised, Metric::P95LatencyMs, "a")]);
    // A value between the bands (neither outside nor calm) keeps it raised too.
    let between = |i| vec![WindowSummary { p95_ms: Some(108.0 + 200.0), ..normal("a", i) }, normal("b", i)];
    assert_eq!(run.feed(10, between), []);
    let events = run.feed(3, |i| vec![normal("a", i), normal("b", i)]);
    assert_eq!(kinds(&events), [(EventKind::Cleared, Metric::P95LatencyMs, "a")]);
}

#[test]
fn nothing_is_judged_before_min_windows() {
    let mut run = Run::new();
    assert_eq!(run.feed(1, |i| vec![normal("a", i)]), []);
    assert_eq!(run.feed(5, |i| vec![slow("a", i)]), []);
}

#[test]
fn errors_hits_and_traffic_are_judged_in_their_bad_direction() {
    let mut run = Run::new();
    run.warm_up();
    let events = run.feed(2, |i| {
        vec![WindowSummary { errors: 40, ..normal("a", i) }, WindowSummary { hits: 10, ..normal("b", i) }]
    });
    assert_eq!(
        kinds(&events),
        [
            (EventKind::Raised, Metric::ErrorRate, "a"),
            (EventKind::Raised, Metric::HitRate, "b"),
            // The model's own hit rate (both providers) fell too.
            (EventKind::Raised, Metric::HitRate, ALL_PROVIDERS),
        ]
    );
    // More hits or fewer errors than usual is good news, not an anomaly.
    let mut run = Run::new();
    run.warm_up();
    let good = |i| vec![WindowSummary { hits: 200, errors: 0, ..normal("a", i) }];
    assert_eq!(run.feed(5, good), []);
    // Traffic is judged both ways: a collapse and a surge.
    for requests in [20, 2000] {
        let mut run = Run::new();
        run.warm_up();
        let events = run.feed(2, |i| vec![WindowSummary { requests, hits: requests / 2, ..normal("a", i) }]);
        assert_eq!(kinds(&events), [(EventKind::Raised, Metric::RequestRate, "a")], "{requests} requests");
    }
}

#[test]
fn windows_with_few_requests_say_nothing_about_latency() {
    let mut run = Run::new();
    run.warm_up();
    let config = run.detector.config().clone();
    let sparse = |i| vec![summary("a", i, config.min_requests - 1, 5000.0, 0, 0)];
    let events = run.feed(3, sparse);
    assert!(events.iter().all(|e| e.metric == Metric::RequestRate), "{events:?}");
}

#[test]
fn a_lasting_change_becomes_the_new_normal() {
    let mut run = Run::new();
    run.warm_up();
    let config = run.detector.config().clone();
    let events = run.feed(2 + config.baseline_windows, |i| vec![slow("a", i)]);
    assert_eq!(
        kinds(&events),
        [(EventKind::Raised, Metric::P95LatencyMs, "a"), (EventKind::Cleared, Metric::P95LatencyMs, "a")]
    );
    assert_eq!(events[1].reason, Some(ClearReason::NewNormal));
    assert_eq!(run.feed(50, |i| vec![slow("a", i)]), [], "relearned: 900 ms is normal now");
}

#[test]
fn series_past_the_bound_are_ignored() {
    let config = AnomalyConfig { max_series: 1, ..AnomalyConfig::default() };
    let mut detector = Detector::new(config);
    for i in 0..20 {
        let spike = if i > 10 { slow("b", i) } else { normal("b", i) };
        assert_eq!(detector.observe(&[normal("a", i), spike], i * WINDOW_MS), []);
    }
    assert_eq!(detector.ignored_windows(), 40, "b's windows and the model's own (provider `*`)");
}

#[test]
fn disabled_metrics_are_not_judged() {
    let mut config = AnomalyConfig::default();
    config.p95_latency.enabled = false;
    let mut run = Run { detector: Detector::new(config), next: 0 };
    run.warm_up();
    assert_eq!(run.feed(10, |i| vec![slow("a", i)]), []);
}

/// The telemetry files cache answers under provider `cache`: that series' hit rate is always 1
/// and the provider's always 0, so only the model's hit rate (provider `*`) can fall.
#[test]
fn a_models_hit_rate_is_judged_over_its_providers() {
    let split = |i: i64, cached: u64| {
        vec![
            WindowSummary { hits: 0, errors: 0, ..summary("mock", i, 100, 100.0, 0, 0) },
            WindowSummary { p95_ms: Some(1.0), ..summary("cache", i, cached, 1.0, 0, cached) },
        ]
    };
    let mut run = Run::new();
    assert_eq!(run.feed(10, |i| split(i, 100)), []);
    let events = run.feed(2, |i| split(i, 10));
    let hit_rate: Vec<_> = kinds(&events).into_iter().filter(|(_, metric, _)| *metric == Metric::HitRate).collect();
    assert_eq!(hit_rate, [(EventKind::Raised, Metric::HitRate, ALL_PROVIDERS)], "{events:?}");
    let event = events.iter().find(|e| e.metric == Metric::HitRate).unwrap();
    assert_eq!((event.baseline, event.value), (0.5, 10.0 / 110.0));
}
