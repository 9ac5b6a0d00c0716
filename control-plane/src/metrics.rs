//! Prometheus metrics, served on their own port.
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub admin_requests: IntCounterVec,
    pub filter_config_updates: IntCounter,
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
            Opts::new("aurelis_cp_build_info", "Build information").const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .unwrap_or_else(|_| unreachable_metric());
        build_info.set(1);
        let _ = registry.register(Box::new(admin_requests.clone()));
        let _ = registry.register(Box::new(filter_config_updates.clone()));
        let _ = registry.register(Box::new(build_info));
        Metrics { registry, admin_requests, filter_config_updates }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Metric names and help texts above are constants: construction cannot fail at run time.
fn unreachable_metric<T>() -> T {
    panic!("static metric definition rejected")
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(|State(s): State<AppState>| async move { s.metrics.render() }))
        .with_state(state)
}
