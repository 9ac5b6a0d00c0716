//! The filter's stats as Envoy dynamic-module metrics, with the Wasm filter's names.
//!
//! The core names a stat `base.label.value...` (`aurelis_requests_total.cache_status.HIT.model.m`).
//! Envoy lets a module define metrics only while its configuration is created (then it freezes
//! them), but label *values* are free at update time. So every family (`base` and its label
//! names) is defined up front, and an update splits the name into the family and its values.
//! Envoy names a labelled stat `<namespace>.base.label.value...` — the Wasm names with
//! `dynamicmodulescustom.` instead of `wasmcustom.` — and tags it itself for Prometheus.
use crate::abi::{self, Level, MetricKind};
use aurelis_core::flow::stats::{self, StatSink};
use std::collections::HashMap;
use std::sync::RwLock;

/// Families not among the predefined stats (their label values are only known when counted).
const EXTRA_COUNTERS: &[&str] = &[
    "aurelis_requests_total.cache_status._.model._",
    "aurelis_errors_total.kind._",
    "aurelis_cache_store_skipped_total.reason._",
    "aurelis_l2_lookups_total.result._",
    "aurelis_l2_stores_total.result._",
    "aurelis_refused_total.reason._",
    "aurelis_ratelimited_total.reason._",
    "aurelis_bypass_total.reason._",
    "aurelis_l2_disabled_total.reason._",
];

#[derive(Debug)]
struct Family {
    kind: MetricKind,
    id: usize,
    labels: Vec<String>,
}

/// A stat name split into its family and label values.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub base: &'a str,
    pub labels: Vec<&'a str>,
    pub values: Vec<&'a str>,
}

/// `None` for a name with a dangling label (odd number of segments after the base).
pub fn parse(name: &str) -> Option<Parsed<'_>> {
    let mut parts = name.split('.');
    let base = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    if !rest.len().is_multiple_of(2) {
        return None;
    }
    let labels = rest.iter().step_by(2).copied().collect();
    let values = rest.iter().skip(1).step_by(2).copied().collect();
    Some(Parsed { base, labels, values })
}

/// Every family the filter can update, with a sample name each (kind, name).
fn templates() -> Vec<(MetricKind, String)> {
    let (counters, gauges, histograms) = stats::predefined();
    let mut all: Vec<(MetricKind, String)> = counters.iter().map(|c| (MetricKind::Counter, c.name())).collect();
    all.extend(EXTRA_COUNTERS.iter().map(|n| (MetricKind::Counter, (*n).to_string())));
    all.push((MetricKind::Counter, crate::panics::STAT.to_string()));
    all.extend(gauges.iter().map(|g| (MetricKind::Gauge, g.name().to_string())));
    all.extend(histograms.iter().map(|h| (MetricKind::Histogram, h.name().to_string())));
    all
}

pub struct Metrics {
    config: abi::Config,
    families: HashMap<String, Family>,
    /// Until Envoy destroys the configuration, whose pointer every update goes through. A
    /// worker's last flush or the gauge refresh may race that (any thread): updates hold the
    /// read lock, `close` the write lock.
    open: RwLock<bool>,
}

impl Metrics {
    /// Defines every family; must run inside `on_http_filter_config_new`. The predefined
    /// stats are then touched (+0) so they show at 0 before anything happened, as under Wasm.
    pub fn define(config: abi::Config) -> Metrics {
        let mut families = HashMap::new();
        let templates = templates();
        for (kind, name) in &templates {
            let Some(parsed) = parse(name) else { continue };
            if families.contains_key(parsed.base) {
                continue;
            }
            match config.define(*kind, parsed.base, &parsed.labels) {
                Some(id) => {
                    let labels = parsed.labels.iter().map(|l| l.to_string()).collect();
                    families.insert(parsed.base.to_string(), Family { kind: *kind, id, labels });
                }
                None => abi::log(Level::Warn, &format!("aurelis: Envoy refused to define the stat {}", parsed.base)),
            }
        }
        let metrics = Metrics { config, families, open: RwLock::new(true) };
        for (kind, name) in templates.iter().filter(|(kind, name)| *kind == MetricKind::Counter && !name.contains("._"))
        {
            metrics.record(*kind, name, 0);
        }
        metrics
    }

    /// Updates the stat `name` (any thread). A name outside the defined families is dropped
    /// (and logged at debug level): stats never fail a request.
    pub fn record(&self, kind: MetricKind, name: &str, value: u64) {
        let family = parse(name).and_then(|p| self.families.get(p.base).map(|f| (f, p)));
        match family {
            Some((family, parsed)) if family.kind == kind && family.labels == parsed.labels => {
                let open = self.open.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                if *open {
                    self.config.record(kind, family.id, &parsed.values, value);
                }
            }
            _ => abi::log(Level::Debug, &format!("aurelis: no stat family for {name}")),
        }
    }
}

impl Metrics {
    /// Envoy is destroying the configuration: no update may reach it any more.
    pub fn close(&self) {
        *self.open.write().unwrap_or_else(std::sync::PoisonError::into_inner) = false;
    }
}

/// The core's stats sink straight into Envoy's metrics (from an Envoy thread: labelled metrics
/// resolve through Envoy's thread-local caches).
pub struct MetricsSink<'a>(pub &'a Metrics);

impl StatSink for MetricsSink<'_> {
    fn counter_add(&mut self, name: &str, by: u64) {
        if by > 0 {
            self.0.record(MetricKind::Counter, name, by);
        }
    }

    fn gauge_set(&mut self, name: &str, value: u64) {
        self.0.record(MetricKind::Gauge, name, value);
    }

    fn histogram_record(&mut self, name: &str, value: u64) {
        self.0.record(MetricKind::Histogram, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_family_and_values() {
        let parsed = parse("aurelis_requests_total.cache_status.HIT.model.m-1");
        assert_eq!(
            parsed,
            Some(Parsed {
                base: "aurelis_requests_total",
                labels: vec!["cache_status", "model"],
                values: vec!["HIT", "m-1"]
            })
        );
        assert_eq!(parse("aurelis_cache_misses_total").map(|p| p.labels.len()), Some(0));
        assert_eq!(parse("aurelis_x.dangling"), None);
    }

    #[test]
    fn every_family_has_one_label_set() {
        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        for (_, name) in templates() {
            let parsed = parse(&name).unwrap_or_else(|| panic!("template {name} does not parse"));
            let labels: Vec<String> = parsed.labels.iter().map(|l| l.to_string()).collect();
            let previous = seen.entry(parsed.base.to_string()).or_insert_with(|| labels.clone());
            assert_eq!(*previous, labels, "{name}: the family is defined once, with one label set");
        }
    }
}
