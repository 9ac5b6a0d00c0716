//! The detector inside the service: bounded event history, gauges and pinned metric names.
use super::*;
use crate::anomaly::{EventKind, Metric};
use crate::telemetry::SeriesKey;

pub(crate) fn window(provider: &str, i: i64, p95_ms: f64) -> WindowSummary {
    WindowSummary {
        series: SeriesKey { model: "gpt-4o-mini".into(), provider: provider.into() },
        start_ms: i * 10_000,
        window_secs: 10,
        requests: 100,
        errors: 0,
        hits: 50,
        p50_ms: Some(p95_ms / 2.0),
        p95_ms: Some(p95_ms),
        p99_ms: Some(p95_ms),
        tokens_in: 0,
        tokens_out: 0,
        tokens_saved: 0,
    }
}

/// Ten normal windows, then `spikes` slow ones, then `calm` normal ones, for provider `slow`.
pub(crate) fn spike_then_calm(anomalies: &Anomalies, spikes: i64, calm: i64) {
    for i in 0..10 + spikes + calm {
        let p95 = if (10..10 + spikes).contains(&i) { 2000.0 } else { 100.0 };
        anomalies.observe(&[window("slow", i, p95), window("steady", i, 100.0)], i * 10_000 + 10_500);
    }
}

#[test]
fn the_anomaly_metric_names_are_stable() {
    let registry = prometheus::Registry::new();
    let anomalies = Anomalies::new(AnomalyConfig::default(), &registry);
    spike_then_calm(&anomalies, 3, 0);
    anomalies.metrics().webhook_deliveries.with_label_values(&["delivered"]).inc();
    let text = render(&registry);
    for line in [
        "# TYPE aurelis_cp_anomaly_active gauge",
        r#"aurelis_cp_anomaly_active{metric="p95_latency_ms",model="gpt-4o-mini",provider="slow"} 1"#,
        "# TYPE aurelis_cp_anomaly_events_total counter",
        r#"aurelis_cp_anomaly_events_total{kind="raised",metric="p95_latency_ms"} 1"#,
        "# TYPE aurelis_cp_anomaly_webhook_deliveries_total counter",
        r#"aurelis_cp_anomaly_webhook_deliveries_total{outcome="delivered"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[test]
fn a_cleared_anomaly_leaves_the_gauge_and_stays_in_the_history() {
    let registry = prometheus::Registry::new();
    let anomalies = Anomalies::new(AnomalyConfig::default(), &registry);
    spike_then_calm(&anomalies, 3, 3);
    let text = render(&registry);
    assert!(!text.contains("aurelis_cp_anomaly_active{"), "{text}");
    assert!(text.contains(r#"aurelis_cp_anomaly_events_total{kind="cleared",metric="p95_latency_ms"} 1"#));
    let events = anomalies.events(10);
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.metric, e.series.provider.as_str())).collect();
    assert_eq!(
        kinds,
        [(EventKind::Raised, Metric::P95LatencyMs, "slow"), (EventKind::Cleared, Metric::P95LatencyMs, "slow")]
    );
    assert_eq!(anomalies.active(), []);
    assert_eq!(anomalies.events(1), events[1..], "the latest first to go last");
}

#[test]
fn the_history_is_bounded() {
    let registry = prometheus::Registry::new();
    let anomalies = Anomalies::new(AnomalyConfig { max_events: 3, ..AnomalyConfig::default() }, &registry);
    for round in 0..3 {
        let base = round * 100;
        for i in base..base + 16 {
            let p95 = if (base + 10..base + 13).contains(&i) { 2000.0 } else { 100.0 };
            anomalies.observe(&[window("slow", i, p95)], i * 10_000);
        }
    }
    let events = anomalies.events(100);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events.last().map(|e| e.id), Some(6), "the newest are kept");
}

fn render(registry: &prometheus::Registry) -> String {
    let mut out = Vec::new();
    prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}
