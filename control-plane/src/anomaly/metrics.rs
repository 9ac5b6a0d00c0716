//! The anomaly detector's metrics, registered into the control plane's registry (`/metrics`).
//! Names are part of the interface: `the_anomaly_metric_names_are_stable` pins them.
use super::detector::{ActiveAnomaly, AnomalyEvent, EventKind};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct AnomalyMetrics {
    /// 1 per active anomaly, by `model`, `provider` and `metric`; removed when it clears.
    /// Bounded: series are capped by `anomalies.max_series`, metrics are four.
    pub active: IntGaugeVec,
    /// Events by `kind` (`raised`, `cleared`) and `metric`.
    pub events: IntCounterVec,
    /// Webhook deliveries by `outcome` (`delivered`, `failed`, `dropped`).
    pub webhook_deliveries: IntCounterVec,
}

impl AnomalyMetrics {
    pub fn new(registry: &Registry) -> AnomalyMetrics {
        let active = IntGaugeVec::new(
            Opts::new("aurelis_cp_anomaly_active", "1 for each active anomaly, by model, provider and metric"),
            &["model", "provider", "metric"],
        );
        let events = IntCounterVec::new(
            Opts::new("aurelis_cp_anomaly_events_total", "Anomaly events by kind (raised, cleared) and metric"),
            &["kind", "metric"],
        );
        let webhook_deliveries = IntCounterVec::new(
            Opts::new("aurelis_cp_anomaly_webhook_deliveries_total", "Anomaly webhook deliveries by outcome"),
            &["outcome"],
        );
        // The definitions are constants: they can only fail if a name is malformed, which the
        // pinned-names test would catch first.
        let (Ok(active), Ok(events), Ok(webhook_deliveries)) = (active, events, webhook_deliveries) else {
            unreachable!("static anomaly metric definitions")
        };
        for collector in [
            Box::new(active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(events.clone()),
            Box::new(webhook_deliveries.clone()),
        ] {
            if let Err(e) = registry.register(collector) {
                tracing::error!("anomaly metrics not exported: {e}");
            }
        }
        AnomalyMetrics { active, events, webhook_deliveries }
    }

    pub fn record(&self, event: &AnomalyEvent) {
        let kind = match event.kind {
            EventKind::Raised => "raised",
            EventKind::Cleared => "cleared",
        };
        self.events.with_label_values(&[kind, event.metric.as_str()]).inc();
    }

    /// Makes the gauge show exactly `active`.
    pub fn show_active(&self, active: &[ActiveAnomaly]) {
        self.active.reset();
        for anomaly in active {
            self.active
                .with_label_values(&[&anomaly.series.model, &anomaly.series.provider, anomaly.metric.as_str()])
                .set(1);
        }
    }
}
