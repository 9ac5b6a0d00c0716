//! The performance report: a pure function of windows, the period and the model's telemetry
//! settings (prices, targets) and filter settings (named by the recommendations). Counts are
//! scaled by 1 / sample rate; at the default rate of 1.0 they are exact.
use super::recommend::{recommendations, Recommendation};
use super::score::{score, Score};
use super::stats::{WindowStats, SKETCH_RELATIVE_ERROR};
use super::windows::{ClosedWindow, RowKey};
use crate::model::TelemetrySpec;
use aurelis_core::config::FilterConfig;
use serde::Serialize;
use std::collections::BTreeMap;

/// The periods `GET /v1/report` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "1h" => Some(Period::Hour),
            "24h" | "1d" => Some(Period::Day),
            "7d" => Some(Period::Week),
            "30d" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "1h",
            Period::Day => "24h",
            Period::Week => "7d",
            Period::Month => "30d",
        }
    }

    pub fn millis(self) -> i64 {
        let hour = 3_600_000;
        match self {
            Period::Hour => hour,
            Period::Day => 24 * hour,
            Period::Week => 7 * 24 * hour,
            Period::Month => 30 * 24 * hour,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    pub avg_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Latency {
    fn of(stats: &WindowStats) -> Latency {
        Latency {
            avg_ms: stats.latency_mean(),
            p50_ms: stats.latency_quantile(0.5),
            p95_ms: stats.latency_quantile(0.95),
            p99_ms: stats.latency_quantile(0.99),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LevelHits {
    pub level: String,
    pub hits: u64,
    pub hit_rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TenantRow {
    /// The tenant scope id (a hash).
    pub tenant: String,
    pub requests: u64,
    pub hit_rate: f64,
    pub error_rate: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelRow {
    pub model: String,
    pub provider: String,
    pub requests: u64,
    pub requests_per_second: f64,
    pub latency: Latency,
    pub hit_rate: f64,
    pub error_rate: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_saved: u64,
    /// `None` without a price for the model.
    pub money_saved: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub period: &'static str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub sample_rate: f64,
    /// True when every count is a count, not an estimate scaled from samples.
    pub counts_exact: bool,
    /// Quantiles are within this relative error of the exact ones.
    pub quantile_relative_error: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_per_second: f64,
    pub latency: Latency,
    /// Time to first byte of streamed answers.
    pub ttfb_p50_ms: Option<f64>,
    pub ttfb_p95_ms: Option<f64>,
    pub streams: u64,
    pub miss_overhead_p50_ms: Option<f64>,
    pub hits: u64,
    pub hit_rate: f64,
    pub hits_by_level: Vec<LevelHits>,
    pub errors: u64,
    pub error_rate: f64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub bypass_reasons: BTreeMap<String, u64>,
    pub events: BTreeMap<String, u64>,
    pub tokens_saved: u64,
    pub money_saved: f64,
    /// One row per model, all providers and cache answers merged.
    pub models: Vec<ModelRow>,
    /// One row per model × provider; cache hits, which no provider answered, under `cache`.
    pub series: Vec<ModelRow>,
    pub top_tenants: Vec<TenantRow>,
    pub score: Score,
    pub recommendations: Vec<Recommendation>,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn scaled(n: u64, scale: f64) -> u64 {
    (n as f64 * scale).round() as u64
}

fn money(spec: &TelemetrySpec, model: &str, stats: &WindowStats, scale: f64) -> Option<f64> {
    let price = spec.prices.get(model)?;
    Some(
        (stats.saved_in as f64 * price.input_per_million + stats.saved_out as f64 * price.output_per_million) * scale
            / 1_000_000.0,
    )
}

/// The provider column of per-model rows.
pub const ALL_PROVIDERS: &str = "all";

pub struct ReportInput<'a> {
    pub period: Period,
    pub now_ms: i64,
    pub windows: &'a [ClosedWindow],
    pub spec: &'a TelemetrySpec,
    pub filter: &'a FilterConfig,
    /// The rate the records were sampled at when they were taken (the model's current one).
    pub sample_rate: f64,
}

pub fn report(input: &ReportInput<'_>) -> Report {
    let from_ms = input.now_ms - input.period.millis();
    let scale = 1.0 / input.sample_rate.clamp(f64::MIN_POSITIVE, 1.0);
    let mut total = WindowStats::default();
    let mut series: BTreeMap<(String, String), WindowStats> = BTreeMap::new();
    let mut tenants: BTreeMap<String, WindowStats> = BTreeMap::new();
    for window in input.windows.iter().filter(|w| w.start_ms >= from_ms && w.start_ms < input.now_ms) {
        for (key, stats) in &window.rows {
            match key {
                RowKey { tenant: Some(tenant), .. } => tenants.entry(tenant.clone()).or_default().merge(stats),
                RowKey { model, provider, .. } => {
                    total.merge(stats);
                    series.entry((model.clone(), provider.clone())).or_default().merge(stats);
                }
            }
        }
    }
    let seconds = (input.period.millis() as f64 / 1000.0).max(1.0);
    let requests = scaled(total.requests, scale);
    let tokens_in = scaled(total.tokens_in, scale);
    let tokens_out = scaled(total.tokens_out, scale);
    let mut per_model: BTreeMap<(String, String), WindowStats> = BTreeMap::new();
    for ((model, _), stats) in &series {
        per_model.entry((model.clone(), ALL_PROVIDERS.to_string())).or_default().merge(stats);
    }
    let rows = |series: &BTreeMap<(String, String), WindowStats>| -> Vec<ModelRow> {
        series
            .iter()
            .map(|((model, provider), stats)| ModelRow {
                model: model.clone(),
                provider: provider.clone(),
                requests: scaled(stats.requests, scale),
                requests_per_second: scaled(stats.requests, scale) as f64 / seconds,
                latency: Latency::of(stats),
                hit_rate: ratio(stats.hits(), stats.requests),
                error_rate: ratio(stats.failures(), stats.requests),
                tokens_in: scaled(stats.tokens_in, scale),
                tokens_out: scaled(stats.tokens_out, scale),
                tokens_saved: scaled(stats.tokens_saved(), scale),
                money_saved: money(input.spec, model, stats, scale),
            })
            .collect()
    };
    let models = rows(&per_model);
    let series = rows(&series);
    let mut top_tenants: Vec<TenantRow> = tenants
        .iter()
        .map(|(tenant, stats)| TenantRow {
            tenant: tenant.clone(),
            requests: scaled(stats.requests, scale),
            hit_rate: ratio(stats.hits(), stats.requests),
            error_rate: ratio(stats.failures(), stats.requests),
        })
        .collect();
    top_tenants.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.tenant.cmp(&b.tenant)));
    top_tenants.truncate(input.spec.top_tenants as usize);
    let latency = Latency::of(&total);
    let tokens_per_second = (tokens_in + tokens_out) as f64 / seconds;
    let requests_per_second = requests as f64 / seconds;
    let hit_rate = ratio(total.hits(), total.requests);
    let miss_overhead_p50_ms = total.miss_overhead_ms.quantile(0.5).ok().flatten();
    let score = score(
        &input.spec.targets,
        &latency,
        requests_per_second,
        tokens_per_second,
        hit_rate,
        miss_overhead_p50_ms,
        total.requests,
    );
    let mut report = Report {
        period: input.period.as_str(),
        from_ms,
        to_ms: input.now_ms,
        sample_rate: input.sample_rate,
        counts_exact: input.sample_rate >= 1.0,
        quantile_relative_error: SKETCH_RELATIVE_ERROR,
        requests,
        requests_per_second,
        tokens_in,
        tokens_out,
        tokens_per_second,
        latency,
        ttfb_p50_ms: total.ttfb_quantile(0.5),
        ttfb_p95_ms: total.ttfb_quantile(0.95),
        streams: scaled(total.streams, scale),
        miss_overhead_p50_ms,
        hits: scaled(total.hits(), scale),
        hit_rate,
        hits_by_level: total
            .hits_by_level
            .iter()
            .map(|(level, hits)| LevelHits {
                level: level.clone(),
                hits: scaled(*hits, scale),
                hit_rate: ratio(*hits, total.requests),
            })
            .collect(),
        errors: scaled(total.failures(), scale),
        error_rate: ratio(total.failures(), total.requests),
        errors_by_class: total.errors.iter().map(|(k, v)| (k.clone(), scaled(*v, scale))).collect(),
        bypass_reasons: total.bypass_reasons.iter().map(|(k, v)| (k.clone(), scaled(*v, scale))).collect(),
        events: total.events.iter().map(|(k, v)| (k.clone(), scaled(*v, scale))).collect(),
        tokens_saved: scaled(total.tokens_saved(), scale),
        money_saved: models.iter().filter_map(|m| m.money_saved).fold(0.0, |a, b| a + b),
        models,
        series,
        top_tenants,
        score,
        recommendations: Vec::new(),
    };
    report.recommendations = recommendations(&report, input.spec, input.filter);
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Targets;
    use crate::model::TokenPrice;
    use crate::telemetry::record::{ErrorClass, Record};
    use crate::telemetry::windows::WindowKeeper;

    const NOW: i64 = 1_700_000_400_000;

    fn record(model: &str, status: &str, latency_ms: f64) -> Record {
        Record {
            start_ms: NOW - 60_000,
            model: model.into(),
            provider: "mock".into(),
            cache_status: status.into(),
            latency_ms,
            tokens_in: 10,
            tokens_out: 20,
            level: (status == "HIT").then(|| "L1".to_string()),
            ..Record::default()
        }
    }

    fn windows(records: &[Record]) -> Vec<ClosedWindow> {
        let mut keeper = WindowKeeper::new(0, 5, NOW - 120_000);
        for r in records {
            keeper.add(r, NOW - 60_000);
        }
        keeper.close(NOW)
    }

    fn run(records: &[Record], spec: &TelemetrySpec, rate: f64) -> Report {
        let windows = windows(records);
        report(&ReportInput {
            period: Period::Hour,
            now_ms: NOW,
            windows: &windows,
            spec,
            filter: &FilterConfig::default(),
            sample_rate: rate,
        })
    }

    #[test]
    fn counts_rates_percentiles_and_money_saved() {
        let mut records: Vec<Record> =
            (1..=100).map(|i| record("gpt-4o", if i <= 80 { "HIT" } else { "MISS" }, f64::from(i) * 10.0)).collect();
        records.push(Record { error: Some(ErrorClass::Provider5xx), ..record("gpt-4o-mini", "MISS", 50.0) });
        let spec = TelemetrySpec {
            prices: [("gpt-4o".to_string(), TokenPrice { input_per_million: 2.5, output_per_million: 10.0 })].into(),
            ..TelemetrySpec::default()
        };
        let r = run(&records, &spec, 1.0);
        assert_eq!(r.requests, 101);
        assert!(r.counts_exact);
        assert_eq!(r.hits, 80);
        assert_eq!(r.hits_by_level, vec![LevelHits { level: "L1".into(), hits: 80, hit_rate: 80.0 / 101.0 }]);
        assert_eq!(r.errors, 1);
        assert_eq!(r.errors_by_class.get("provider_5xx"), Some(&1));
        assert_eq!((r.tokens_in, r.tokens_out, r.tokens_saved), (1010, 2020, 80 * 30));
        assert!((r.requests_per_second - 101.0 / 3600.0).abs() < 1e-9);
        let p95 = r.models[0].latency.p95_ms.unwrap();
        assert!((p95 - 950.0).abs() <= 950.0 * SKETCH_RELATIVE_ERROR, "{p95}");
        // 80 hits × (10 in × 2.5 + 20 out × 10) per million.
        assert!((r.money_saved - 80.0 * (10.0 * 2.5 + 20.0 * 10.0) / 1e6).abs() < 1e-12, "{}", r.money_saved);
        assert_eq!(r.models[1].money_saved, None, "no price for gpt-4o-mini");
        assert_eq!(r.models[0].provider, ALL_PROVIDERS);
        assert_eq!(r.series.len(), 2);
    }

    #[test]
    fn sampled_counts_are_scaled_and_marked_as_estimates() {
        let records: Vec<Record> = (0..10).map(|_| record("m", "MISS", 100.0)).collect();
        let r = run(&records, &TelemetrySpec::default(), 0.1);
        assert_eq!(r.requests, 100);
        assert!(!r.counts_exact);
    }

    #[test]
    fn the_score_is_100_when_every_target_is_met_and_drops_with_a_miss() {
        let targets =
            Targets { requests_per_second: 0.001, tokens_per_second: 0.001, hit_rate: 0.5, ..Targets::default() };
        let spec = TelemetrySpec { targets, ..TelemetrySpec::default() };
        let fast: Vec<Record> = (0..10).map(|_| record("m", "HIT", 100.0)).collect();
        assert_eq!(run(&fast, &spec, 1.0).score.overall, 100.0);
        let slow: Vec<Record> = (0..10).map(|_| record("m", "HIT", 4000.0)).collect();
        let r = run(&slow, &spec, 1.0);
        let p95 = r.score.parts.iter().find(|p| p.name == "p95_latency_s").unwrap();
        assert!((p95.score - 1.0 / 4.0).abs() < 0.02, "{p95:?}");
        assert!(r.score.overall < 100.0);
    }

    #[test]
    fn tenants_are_ranked_and_windows_outside_the_period_ignored() {
        let mut records: Vec<Record> = ["a", "b", "b"]
            .iter()
            .map(|t| Record { tenant: Some(t.to_string()), ..record("m", "MISS", 1.0) })
            .collect();
        records.push(Record { start_ms: NOW - 2 * 3_600_000, ..record("m", "MISS", 1.0) });
        let mut keeper = WindowKeeper::new(0, 5, NOW - 3 * 3_600_000);
        for r in &records {
            keeper.add(r, NOW - 1000);
        }
        let windows = keeper.close(NOW);
        let r = report(&ReportInput {
            period: Period::Hour,
            now_ms: NOW,
            windows: &windows,
            spec: &TelemetrySpec::default(),
            filter: &FilterConfig::default(),
            sample_rate: 1.0,
        });
        assert_eq!(r.requests, 3);
        assert_eq!(
            r.top_tenants.iter().map(|t| (t.tenant.as_str(), t.requests)).collect::<Vec<_>>(),
            vec![("b", 2), ("a", 1)]
        );
    }

    #[test]
    fn periods_parse_from_the_query() {
        assert_eq!(Period::parse("24h"), Some(Period::Day));
        assert_eq!(Period::parse("30d").map(Period::millis), Some(30 * 86_400_000));
        assert_eq!(Period::parse("2h"), None);
    }
}
