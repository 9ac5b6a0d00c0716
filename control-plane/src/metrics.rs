//! Prometheus metrics, served on their own port so they can be scraped (or exposed) without
//! exposing the admin API. One registry per process, not the global default: tests stay isolated.
//! Knows nothing of the rest of the control plane: callers hand it label values.
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::Arc;

pub struct Metrics {
    registry: Registry,
    /// By `route` (handler name, or `unmatched`) and `outcome` (`ok`, `unauthorized`, `invalid`,
    /// `not_found`): both small fixed sets, never request data, so cardinality stays bounded.
    pub admin_requests: IntCounterVec,
    pub filter_config_updates: IntCounter,
    /// xDS by `type` (`cds`, `eds`, `ecds`, `lds`, `rds`).
    pub xds_pushes: IntCounterVec,
    pub xds_acks: IntCounterVec,
    pub xds_nacks: IntCounterVec,
    pub xds_connected_clients: IntGauge,
    /// ADS streams refused, by `reason` (a fixed set: `no_certificate`, `no_node_identity`,
    /// `no_node`, `node_mismatch`, `rate_limited`, `request_too_large`).
    pub xds_refused_streams: IntCounterVec,
    /// Failed xDS TLS handshakes, by `reason` (`no_certificate`, `invalid_certificate`,
    /// `timeout`, `overloaded`, `other`).
    pub xds_tls_handshake_failures: IntCounterVec,
    /// 1 for the current version of each type; old versions are removed.
    pub xds_version: IntGaugeVec,
    /// Endpoint probes by `provider` and `result` (`ok`, `failed`).
    pub health_probes: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let admin_requests = IntCounterVec::new(
            Opts::new("aurelis_cp_admin_requests_total", "Admin API requests by route and outcome"),
            &["route", "outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let filter_config_updates =
            IntCounter::new("aurelis_cp_filter_config_updates_total", "Accepted filter configuration updates")
                .unwrap_or_else(|_| unreachable_metric());
        let build_info = IntGauge::with_opts(
            Opts::new("aurelis_cp_build_info", "Build information; always 1")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .unwrap_or_else(|_| unreachable_metric());
        build_info.set(1);
        let by_type = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["type"]).unwrap_or_else(|_| unreachable_metric())
        };
        let xds_pushes = by_type("aurelis_cp_xds_pushes_total", "xDS responses sent, by resource type");
        let xds_acks = by_type("aurelis_cp_xds_acks_total", "xDS responses accepted by Envoys, by resource type");
        let xds_nacks = by_type("aurelis_cp_xds_nacks_total", "xDS responses rejected by Envoys, by resource type");
        let xds_connected_clients = IntGauge::new("aurelis_cp_xds_connected_clients", "Open ADS streams")
            .unwrap_or_else(|_| unreachable_metric());
        let xds_refused_streams = IntCounterVec::new(
            Opts::new("aurelis_cp_xds_refused_streams_total", "ADS streams refused (identity or limits), by reason"),
            &["reason"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let xds_tls_handshake_failures = IntCounterVec::new(
            Opts::new("aurelis_cp_xds_tls_handshake_failures_total", "Failed xDS TLS handshakes, by reason"),
            &["reason"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let xds_version = IntGaugeVec::new(
            Opts::new("aurelis_cp_xds_version_info", "Current version (content hash) of each resource type; always 1"),
            &["type", "version"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let health_probes = IntCounterVec::new(
            Opts::new("aurelis_cp_health_probes_total", "Active endpoint probes by provider and result"),
            &["provider", "result"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        for collector in [
            Box::new(admin_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(filter_config_updates.clone()),
            Box::new(build_info),
            Box::new(xds_pushes.clone()),
            Box::new(xds_acks.clone()),
            Box::new(xds_nacks.clone()),
            Box::new(xds_connected_clients.clone()),
            Box::new(xds_refused_streams.clone()),
            Box::new(xds_tls_handshake_failures.clone()),
            Box::new(xds_version.clone()),
            Box::new(health_probes.clone()),
        ] {
            registry.register(collector).unwrap_or_else(|_| unreachable_metric());
        }
        Metrics {
            registry,
            admin_requests,
            filter_config_updates,
            xds_pushes,
            xds_acks,
            xds_nacks,
            xds_connected_clients,
            xds_refused_streams,
            xds_tls_handshake_failures,
            xds_version,
            health_probes,
        }
    }

    /// Replaces the reported versions with these `(type, version)` pairs, `type` being the short
    /// name (`cds`, `eds`, ...).
    pub fn set_versions<'a>(&self, versions: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.xds_version.reset();
        for (kind, version) in versions {
            self.xds_version.with_label_values(&[kind, version]).set(1);
        }
    }

    /// The registry, for components that own their metrics (the anomaly detector's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a component's own metrics (telemetry) in this registry, so they are served
    /// on the same `/metrics`. A duplicate name is a programming error, refused and logged.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::error!("metric registration refused: {e}");
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which the constants exclude.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Metric names, labels and help texts above are constants, registered once into a fresh
/// registry: construction cannot fail at run time, and a mistake fails every test at once.
pub(crate) fn unreachable_metric<T>() -> T {
    panic!("static metric definition rejected")
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, TextEncoder::new().format_type().to_string())], metrics.render())
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(serve_metrics)).with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn metrics_route_serves_the_text_format() {
        let metrics = Arc::new(Metrics::new());
        metrics.admin_requests.with_label_values(&["get_filter_config", "ok"]).inc();
        let resp = router(metrics).oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.contains(&format!("aurelis_cp_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))));
        assert!(text.contains(r#"aurelis_cp_admin_requests_total{outcome="ok",route="get_filter_config"} 1"#));
        assert!(text.contains("aurelis_cp_filter_config_updates_total 0"), "{text}");
    }

    /// Dashboards and alerts are written against these names and types: renaming one is a
    /// breaking change, so it must fail here first (and be noted in the changelog).
    #[test]
    fn the_metric_names_users_depend_on_are_stable() {
        let metrics = Metrics::new();
        // Labelled families only render once a label set exists: touch each one.
        metrics.xds_pushes.with_label_values(&["cds"]).inc();
        metrics.xds_acks.with_label_values(&["cds"]).inc();
        metrics.xds_nacks.with_label_values(&["cds"]).inc();
        metrics.xds_connected_clients.set(2);
        metrics.xds_refused_streams.with_label_values(&["node_mismatch"]).inc();
        metrics.xds_tls_handshake_failures.with_label_values(&["no_certificate"]).inc();
        metrics.set_versions([("rds", "abc123")]);
        metrics.admin_requests.with_label_values(&["get_status", "ok"]).inc();
        metrics.filter_config_updates.inc();
        metrics.health_probes.with_label_values(&["mock", "failed"]).inc();
        let text = metrics.render();
        for (name, kind) in [
            ("aurelis_cp_xds_pushes_total", "counter"),
            ("aurelis_cp_xds_acks_total", "counter"),
            ("aurelis_cp_xds_nacks_total", "counter"),
            ("aurelis_cp_xds_connected_clients", "gauge"),
            ("aurelis_cp_xds_refused_streams_total", "counter"),
            ("aurelis_cp_xds_tls_handshake_failures_total", "counter"),
            ("aurelis_cp_xds_version_info", "gauge"),
            ("aurelis_cp_admin_requests_total", "counter"),
            ("aurelis_cp_filter_config_updates_total", "counter"),
            ("aurelis_cp_health_probes_total", "counter"),
            ("aurelis_cp_build_info", "gauge"),
        ] {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "missing {name} ({kind}) in\n{text}");
        }
        // The labels users filter on.
        for line in [
            r#"aurelis_cp_xds_pushes_total{type="cds"} 1"#,
            r#"aurelis_cp_xds_acks_total{type="cds"} 1"#,
            r#"aurelis_cp_xds_nacks_total{type="cds"} 1"#,
            "aurelis_cp_xds_connected_clients 2",
            r#"aurelis_cp_xds_refused_streams_total{reason="node_mismatch"} 1"#,
            r#"aurelis_cp_xds_tls_handshake_failures_total{reason="no_certificate"} 1"#,
            r#"aurelis_cp_xds_version_info{type="rds",version="abc123"} 1"#,
            r#"aurelis_cp_admin_requests_total{outcome="ok",route="get_status"} 1"#,
            "aurelis_cp_filter_config_updates_total 1",
            r#"aurelis_cp_health_probes_total{provider="mock",result="failed"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn only_the_current_versions_are_reported() {
        let metrics = Metrics::new();
        metrics.set_versions([("cds", "old")]);
        metrics.set_versions([("cds", "new")]);
        let text = metrics.render();
        assert!(text.contains(r#"aurelis_cp_xds_version_info{type="cds",version="new"} 1"#), "{text}");
        assert!(!text.contains(r#"version="old""#), "{text}");
    }
}
