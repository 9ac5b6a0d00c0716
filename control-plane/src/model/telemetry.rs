//! The model file's `telemetry` section: how much of the fleet's traffic Envoys stream to the
//! control plane, what tokens cost (for the report's money saved), and the performance
//! targets the report scores against. Validated with the rest of the model; every error names
//! the field and the value.
use super::validate::ModelError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySpec {
    /// Share of requests each Envoy sends as a per-request record to the control plane, in
    /// (0, 1]. 1.0 (the default) makes every count in the report exact; below it the report
    /// scales counts by 1 / rate and says they are estimates (see docs/operations.md).
    pub sample_rate: f64,
    /// Tenants (scope hashes) kept as their own series per window: the busiest N of each window.
    pub top_tenants: u32,
    /// Price per million tokens by model name, for the money the cache saved.
    pub prices: BTreeMap<String, TokenPrice>,
    pub targets: Targets,
    /// How often Envoys send their stats (the metrics-service sink) to the control plane, in
    /// ms: written into the ADS bootstrap (`render-envoy`), so it applies when an Envoy starts.
    pub stats_flush_ms: u64,
    /// Width of the telemetry's raw windows in seconds (a divisor of 60 below 60): how often the
    /// anomaly detector, the dashboard and the adaptive loops see the fleet. Tests shorten it.
    pub window_secs: u32,
}

impl Default for TelemetrySpec {
    fn default() -> Self {
        TelemetrySpec {
            sample_rate: 1.0,
            top_tenants: 10,
            prices: BTreeMap::new(),
            targets: Targets::default(),
            stats_flush_ms: crate::xds::resources::DEFAULT_STATS_FLUSH_MS,
            window_secs: crate::telemetry::windows::WINDOW_SECS,
        }
    }
}

/// Bounds of `telemetry.stats_flush_ms`: faster floods the stream, slower blinds the loops.
const STATS_FLUSH_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// US dollars (or any one currency) per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrice {
    pub input_per_million: f64,
    pub output_per_million: f64,
}

/// The design document's performance targets; each can be changed in the model file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Targets {
    pub p50_latency_s: f64,
    pub p95_latency_s: f64,
    pub p99_latency_s: f64,
    pub requests_per_second: f64,
    pub tokens_per_second: f64,
    /// Share of requests answered from a cache level, in (0, 1].
    pub hit_rate: f64,
    /// Median latency of a miss the gateway adds on top of the provider, in seconds.
    pub miss_latency_s: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            p50_latency_s: 0.5,
            p95_latency_s: 1.0,
            p99_latency_s: 2.0,
            requests_per_second: 1000.0,
            tokens_per_second: 10_000.0,
            hit_rate: 0.7,
            miss_latency_s: 0.1,
        }
    }
}

/// Most tenant series per window: each is a row per model, provider and cache status.
const MAX_TOP_TENANTS: u32 = 100;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::Invalid { field: field.into(), message: message.into() }
}

impl TelemetrySpec {
    /// `models` are the model file's model names: a price for another name is a typo.
    pub fn validate(&self, models: &BTreeSet<&str>) -> Result<(), ModelError> {
        let rate = self.sample_rate;
        if !(rate.is_finite() && rate > 0.0 && rate <= 1.0) {
            return Err(invalid("telemetry.sample_rate", format!("{rate} must be in (0, 1]")));
        }
        if self.window_secs == 0 || self.window_secs >= 60 || 60 % self.window_secs != 0 {
            return Err(invalid(
                "telemetry.window_secs",
                format!("{} must divide 60 and be below 60 (1, 2, 5, 10, 30, ...)", self.window_secs),
            ));
        }
        if !STATS_FLUSH_MS.contains(&self.stats_flush_ms) {
            return Err(invalid(
                "telemetry.stats_flush_ms",
                format!(
                    "{} must be between {} and {}",
                    self.stats_flush_ms,
                    STATS_FLUSH_MS.start(),
                    STATS_FLUSH_MS.end()
                ),
            ));
        }
        if self.top_tenants > MAX_TOP_TENANTS {
            return Err(invalid("telemetry.top_tenants", format!("{} is above {MAX_TOP_TENANTS}", self.top_tenants)));
        }
        for (model, price) in &self.prices {
            if !models.contains(model.as_str()) {
                return Err(invalid(format!("telemetry.prices.{model}"), format!("`{model}` is not in `models`")));
            }
            for (name, value) in
                [("input_per_million", price.input_per_million), ("output_per_million", price.output_per_million)]
            {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(invalid(
                        format!("telemetry.prices.{model}.{name}"),
                        format!("{value} must be 0 or more"),
                    ));
                }
            }
        }
        let t = &self.targets;
        for (name, value) in [
            ("p50_latency_s", t.p50_latency_s),
            ("p95_latency_s", t.p95_latency_s),
            ("p99_latency_s", t.p99_latency_s),
            ("requests_per_second", t.requests_per_second),
            ("tokens_per_second", t.tokens_per_second),
            ("hit_rate", t.hit_rate),
            ("miss_latency_s", t.miss_latency_s),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(invalid(format!("telemetry.targets.{name}"), format!("{value} must be above 0")));
            }
        }
        if t.hit_rate > 1.0 {
            return Err(invalid("telemetry.targets.hit_rate", format!("{} is above 1", t.hit_rate)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> BTreeSet<&'static str> {
        BTreeSet::from(["gpt-4o"])
    }

    fn error(spec: &TelemetrySpec) -> String {
        spec.validate(&models()).unwrap_err().to_string()
    }

    #[test]
    fn window_width_and_stats_flush_are_bounded_with_the_field_named() {
        let odd = TelemetrySpec { window_secs: 7, ..Default::default() };
        assert!(error(&odd).starts_with("`telemetry.window_secs`: 7 must divide 60"), "{}", error(&odd));
        assert!(TelemetrySpec { window_secs: 2, ..Default::default() }.validate(&models()).is_ok());
        let flood = TelemetrySpec { stats_flush_ms: 10, ..Default::default() };
        assert_eq!(error(&flood), "`telemetry.stats_flush_ms`: 10 must be between 100 and 60000");
    }

    #[test]
    fn the_defaults_are_the_design_documents_targets_and_full_records() {
        let spec = TelemetrySpec::default();
        assert_eq!(spec.sample_rate, 1.0);
        assert_eq!(spec.targets.p95_latency_s, 1.0);
        assert_eq!(spec.targets.hit_rate, 0.7);
        assert!(spec.validate(&models()).is_ok());
    }

    #[test]
    fn each_mistake_names_its_field_and_value() {
        let rate = TelemetrySpec { sample_rate: 0.0, ..Default::default() };
        assert_eq!(error(&rate), "`telemetry.sample_rate`: 0 must be in (0, 1]");
        let rate = TelemetrySpec { sample_rate: 1.5, ..Default::default() };
        assert!(error(&rate).contains("1.5 must be in (0, 1]"));
        let price = TokenPrice { input_per_million: -1.0, output_per_million: 1.0 };
        let prices = TelemetrySpec { prices: BTreeMap::from([("gpt-4o".into(), price)]), ..Default::default() };
        assert_eq!(error(&prices), "`telemetry.prices.gpt-4o.input_per_million`: -1 must be 0 or more");
        let typo = TelemetrySpec { prices: BTreeMap::from([("gpt-5".into(), price)]), ..Default::default() };
        assert_eq!(error(&typo), "`telemetry.prices.gpt-5`: `gpt-5` is not in `models`");
        let target = TelemetrySpec { targets: Targets { hit_rate: 1.2, ..Default::default() }, ..Default::default() };
        assert_eq!(error(&target), "`telemetry.targets.hit_rate`: 1.2 is above 1");
        let target =
            TelemetrySpec { targets: Targets { p95_latency_s: 0.0, ..Default::default() }, ..Default::default() };
        assert_eq!(error(&target), "`telemetry.targets.p95_latency_s`: 0 must be above 0");
        let tenants = TelemetrySpec { top_tenants: 1000, ..Default::default() };
        assert_eq!(error(&tenants), "`telemetry.top_tenants`: 1000 is above 100");
    }
}
