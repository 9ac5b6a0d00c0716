//! The model file's `anomalies` section: how far from its baseline a series may wander before
//! it is an anomaly, and how long it must stay there (or back) before an event is raised (or
//! cleared). Validated on load like the rest of the model; errors name the field and value.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Windows of normal history a series needs before it is judged at all.
    pub min_windows: usize,
    /// Windows of normal history the baseline (median and MAD) is computed over.
    pub baseline_windows: usize,
    /// Consecutive windows outside the band before an anomaly is raised.
    pub raise_after: u32,
    /// Consecutive windows back inside the inner band before it is cleared.
    pub clear_after: u32,
    /// The inner band, as a fraction of the raise limit: a value between the two keeps the
    /// current state (hysteresis), so a series hovering at the limit raises one event.
    pub clear_band: f64,
    /// Windows with fewer requests say nothing about latency, errors or hits (too noisy).
    pub min_requests: u64,
    /// Events kept for `GET /v1/events` (oldest dropped first).
    pub max_events: usize,
    /// Series (model × provider) tracked at most; more are ignored and logged.
    pub max_series: usize,
    pub p95_latency: Threshold,
    pub error_rate: Threshold,
    pub hit_rate: Threshold,
    pub request_rate: Threshold,
}

/// How far a value may be from its baseline: the largest of `deviations` robust standard
/// deviations (1.4826 × the median absolute deviation), `min_change` (in the metric's unit:
/// ms, a ratio, requests/s) and `min_relative` × the baseline. The floors keep a very steady
/// series (MAD near 0) from alarming on noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub deviations: f64,
    pub min_change: f64,
    #[serde(default)]
    pub min_relative: f64,
}

fn yes() -> bool {
    true
}

impl Threshold {
    const fn new(deviations: f64, min_change: f64, min_relative: f64) -> Threshold {
        Threshold { enabled: true, deviations, min_change, min_relative }
    }
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            // One minute of 10 s windows to learn, five minutes of memory.
            min_windows: 6,
            baseline_windows: 30,
            raise_after: 2,
            clear_after: 3,
            clear_band: 0.5,
            min_requests: 10,
            max_events: 500,
            max_series: 1000,
            p95_latency: Threshold::new(4.0, 250.0, 0.5),
            error_rate: Threshold::new(4.0, 0.05, 0.0),
            hit_rate: Threshold::new(4.0, 0.2, 0.0),
            request_rate: Threshold::new(4.0, 1.0, 0.5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct InvalidAnomalyConfig {
    /// Relative to the `anomalies` section, e.g. `p95_latency.deviations`.
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: String) -> InvalidAnomalyConfig {
    InvalidAnomalyConfig { field: field.to_string(), message }
}

impl AnomalyConfig {
    pub fn validate(&self) -> Result<(), InvalidAnomalyConfig> {
        if self.min_windows < 3 {
            return Err(invalid(
                "min_windows",
                format!("{} is below 3 (a median needs a few values)", self.min_windows),
            ));
        }
        if self.baseline_windows < self.min_windows || self.baseline_windows > 1000 {
            return Err(invalid(
                "baseline_windows",
                format!("{} must be between min_windows ({}) and 1000", self.baseline_windows, self.min_windows),
            ));
        }
        for (field, value) in [("raise_after", self.raise_after), ("clear_after", self.clear_after)] {
            if value == 0 || value > 1000 {
                return Err(invalid(field, format!("{value} must be between 1 and 1000")));
            }
        }
        if !(self.clear_band > 0.0 && self.clear_band <= 1.0) {
            return Err(invalid("clear_band", format!("{} must be in (0, 1]", self.clear_band)));
        }
        if self.max_events == 0 || self.max_events > 100_000 {
            return Err(invalid("max_events", format!("{} must be between 1 and 100000", self.max_events)));
        }
        if self.max_series == 0 || self.max_series > 100_000 {
            return Err(invalid("max_series", format!("{} must be between 1 and 100000", self.max_series)));
        }
        for (name, t) in [
            ("p95_latency", &self.p95_latency),
            ("error_rate", &self.error_rate),
            ("hit_rate", &self.hit_rate),
            ("request_rate", &self.request_rate),
        ] {
            if !(t.deviations.is_finite() && t.deviations > 0.0) {
                return Err(invalid(&format!("{name}.deviations"), format!("{} must be above 0", t.deviations)));
            }
            for (field, value) in [("min_change", t.min_change), ("min_relative", t.min_relative)] {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(invalid(&format!("{name}.{field}"), format!("{value} must be 0 or more")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_a_partial_section_keeps_them() {
        AnomalyConfig::default().validate().unwrap();
        let config: AnomalyConfig = serde_yaml_ng::from_str("min_windows: 4\n").unwrap();
        assert_eq!(config.min_windows, 4);
        assert_eq!(config.p95_latency, AnomalyConfig::default().p95_latency);
    }

    #[test]
    fn mistakes_name_the_field_and_value() {
        let cases = [
            ("min_windows: 1", "min_windows", "1"),
            ("baseline_windows: 2", "baseline_windows", "2"),
            ("raise_after: 0", "raise_after", "0"),
            ("clear_band: 1.5", "clear_band", "1.5"),
            ("max_events: 0", "max_events", "0"),
            ("p95_latency: { deviations: 0, min_change: 1 }", "p95_latency.deviations", "0"),
            ("error_rate: { deviations: 3, min_change: -1 }", "error_rate.min_change", "-1"),
        ];
        for (yaml, field, value) in cases {
            let config: AnomalyConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let error = config.validate().expect_err(yaml);
            assert_eq!(error.field, field, "{yaml}");
            assert!(error.message.starts_with(value), "{yaml}: {error}");
        }
        let unknown =
            serde_yaml_ng::from_str::<AnomalyConfig>("p95_latency: { deviations: 3, min_change: 1, bogus: 1 }");
        assert!(unknown.unwrap_err().to_string().contains("bogus"));
    }
}
