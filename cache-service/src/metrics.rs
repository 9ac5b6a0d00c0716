//! Prometheus metrics, served on their own port so they can be scraped without exposing the
//! cache API. One registry per `Metrics`, not the global default: tests stay isolated.
//! Labels are small fixed sets, never request data, so cardinality stays bounded.
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::sync::Arc;
use std::time::Duration;

/// Sub-millisecond (a local Redis hit) to 100 ms (well past the default 50 ms timeout).
const DURATION_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

pub struct Metrics {
    registry: Registry,
    /// `op`: get, put, delete, purge. `outcome`: hit, miss, stored, deleted, too_large,
    /// bad_request, unauthorized (no or wrong API token), error.
    pub operations: IntCounterVec,
    /// `op`, `kind`: timeout (no answer within the timeout) or redis (any other Redis failure).
    pub errors: IntCounterVec,
    pub duration: HistogramVec,
    /// `direction`: in (PUT bodies), out (GET bodies). `form`: raw (as the client sees it) or
    /// stored (as Redis holds it, after compression): raw/stored is the compression ratio.
    pub value_bytes: IntCounterVec,
    /// L3 (the persistent level). `op`: get, put. `outcome`: hit, miss, unknown_key (sealed by
    /// a key not loaded), undecryptable (wrong key, moved or altered row), timeout, error
    /// (get); stored, timeout, error (put); deleted, timeout, error (delete).
    pub l3: IntCounterVec,
    /// Hits counted towards L3 entries' hotness by the level that served them: `L1` (reported
    /// by Envoys in batches), `L2` (Redis hits here). L3's own hits are in `l3{op="get"}`.
    pub hot_hits: IntCounterVec,
    /// Entries put back into Redis from L3 after Redis lost its contents, by `outcome`:
    /// stored, error.
    pub refill_entries: IntCounterVec,
    /// Refills by `outcome`: done, error (L3 could not list its entries).
    pub refills: IntCounterVec,
    /// Refresh-ahead replays sent to Envoy, by `outcome`: refreshed, over_budget, refused,
    /// failed, unreachable, no_record, bad_record.
    pub refreshes: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let operations = IntCounterVec::new(
            Opts::new("aurelis_l2_operations_total", "L2 operations by operation and outcome"),
            &["op", "outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let errors = IntCounterVec::new(
            Opts::new("aurelis_l2_errors_total", "L2 operations failed by Redis, by operation and kind"),
            &["op", "kind"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let duration = HistogramVec::new(
            HistogramOpts::new("aurelis_l2_operation_duration_seconds", "L2 operation latency, Redis included")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["op"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let value_bytes = IntCounterVec::new(
            Opts::new("aurelis_l2_value_bytes_total", "Value bytes moved, by direction and form (raw or stored)"),
            &["direction", "form"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let l3 = IntCounterVec::new(
            Opts::new("aurelis_l3_operations_total", "L3 operations by operation and outcome"),
            &["op", "outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let hot_hits = IntCounterVec::new(
            Opts::new("aurelis_l3_hot_hits_total", "Hits counted towards L3 entries' hotness, by serving level"),
            &["level"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let refill_entries = IntCounterVec::new(
            Opts::new("aurelis_l2_refill_entries_total", "Entries put back into Redis from L3, by outcome"),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let refills = IntCounterVec::new(
            Opts::new("aurelis_l2_refills_total", "Refills of Redis from L3 after it lost its contents, by outcome"),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let refreshes = IntCounterVec::new(
            Opts::new("aurelis_refresh_replays_total", "Refresh-ahead replays by outcome"),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let build_info = IntGauge::with_opts(
            Opts::new("aurelis_l2_build_info", "Build information; always 1")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .unwrap_or_else(|_| unreachable_metric());
        build_info.set(1);
        for collector in [
            Box::new(operations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(value_bytes.clone()),
            Box::new(l3.clone()),
            Box::new(hot_hits.clone()),
            Box::new(refill_entries.clone()),
            Box::new(refills.clone()),
            Box::new(refreshes.clone()),
            Box::new(build_info),
        ] {
            registry.register(collector).unwrap_or_else(|_| unreachable_metric());
        }
        Metrics {
            registry,
            operations,
            errors,
            duration,
            value_bytes,
            l3,
            hot_hits,
            refill_entries,
            refills,
            refreshes,
        }
    }

    /// Counts one finished operation and its latency.
    pub fn observe(&self, op: &str, outcome: &str, elapsed: Duration) {
        self.operations.with_label_values(&[op, outcome]).inc();
        self.duration.with_label_values(&[op]).observe(elapsed.as_secs_f64());
    }

    pub fn l3(&self, op: &str, outcome: &str) {
        self.l3.with_label_values(&[op, outcome]).inc();
    }

    pub fn refresh(&self, outcome: &str) {
        self.refreshes.with_label_values(&[outcome]).inc();
    }

    pub fn error(&self, op: &str, kind: &str) {
        self.errors.with_label_values(&[op, kind]).inc();
    }

    pub fn bytes(&self, direction: &str, raw: usize, stored: usize) {
        self.value_bytes.with_label_values(&[direction, "raw"]).inc_by(raw as u64);
        self.value_bytes.with_label_values(&[direction, "stored"]).inc_by(stored as u64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which the constants exclude.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Metric names, labels and help texts above are constants, registered once into a fresh
/// registry: construction cannot fail at run time, and a mistake fails every test at once.
fn unreachable_metric<T>() -> T {
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

    /// Dashboards and alerts depend on these names and labels: changing them is a breaking change.
    #[tokio::test]
    async fn metric_names_are_pinned() {
        let metrics = Arc::new(Metrics::new());
        metrics.observe("get", "hit", Duration::from_micros(300));
        metrics.observe("put", "unauthorized", Duration::from_micros(10));
        metrics.error("put", "timeout");
        metrics.bytes("in", 2000, 500);
        metrics.l3("get", "undecryptable");
        metrics.hot_hits.with_label_values(&["L1"]).inc_by(3);
        metrics.refill_entries.with_label_values(&["stored"]).inc();
        metrics.refills.with_label_values(&["done"]).inc();
        metrics.refresh("refreshed");
        let resp = router(metrics).oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        for line in [
            r#"aurelis_l2_operations_total{op="get",outcome="hit"} 1"#,
            r#"aurelis_l2_operations_total{op="put",outcome="unauthorized"} 1"#,
            r#"aurelis_l2_errors_total{kind="timeout",op="put"} 1"#,
            r#"aurelis_l2_operation_duration_seconds_bucket{op="get",le="0.0005"} 1"#,
            r#"aurelis_l2_operation_duration_seconds_bucket{op="get",le="0.00025"} 0"#,
            r#"aurelis_l2_operation_duration_seconds_count{op="get"} 1"#,
            r#"aurelis_l2_value_bytes_total{direction="in",form="raw"} 2000"#,
            r#"aurelis_l2_value_bytes_total{direction="in",form="stored"} 500"#,
            r#"aurelis_l3_operations_total{op="get",outcome="undecryptable"} 1"#,
            r#"aurelis_l3_hot_hits_total{level="L1"} 3"#,
            r#"aurelis_l2_refill_entries_total{outcome="stored"} 1"#,
            r#"aurelis_l2_refills_total{outcome="done"} 1"#,
            r#"aurelis_refresh_replays_total{outcome="refreshed"} 1"#,
            &format!("aurelis_l2_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
