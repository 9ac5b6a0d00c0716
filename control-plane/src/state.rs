//! Shared state: the current filter configuration (a watch channel, so the coming xDS server
//! can subscribe and push every change), the admin token's digest and the metrics.
use crate::metrics::Metrics;
use aurelis_core::config::FilterConfig;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct AppState {
    pub filter_config: Arc<watch::Sender<FilterConfig>>,
    /// SHA-256 of the admin token, not the token: comparing fixed-length digests in constant
    /// time leaks neither the content nor the length of the secret. `None`: writes refused.
    pub admin_token_digest: Option<[u8; 32]>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(filter_config: FilterConfig, admin_token: Option<&str>) -> AppState {
        let (tx, _) = watch::channel(filter_config);
        AppState {
            filter_config: Arc::new(tx),
            admin_token_digest: admin_token.map(token_digest),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// A receiver that sees the current configuration and every accepted update.
    #[cfg_attr(not(test), expect(dead_code, reason = "the xDS server (next step) is the consumer"))]
    pub fn subscribe(&self) -> watch::Receiver<FilterConfig> {
        self.filter_config.subscribe()
    }
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
