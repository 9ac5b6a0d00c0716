//! Shared state: the current filter configuration (a watch channel, so the coming xDS server
//! can push every change) and the admin token.
use crate::metrics::Metrics;
use aurelis_core::config::FilterConfig;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct AppState {
    pub filter_config: Arc<watch::Sender<FilterConfig>>,
    pub admin_token: Option<Arc<str>>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(filter_config: FilterConfig, admin_token: Option<String>) -> AppState {
        let (tx, _) = watch::channel(filter_config);
        AppState {
            filter_config: Arc::new(tx),
            admin_token: admin_token.map(Arc::from),
            metrics: Arc::new(Metrics::new()),
        }
    }
}
