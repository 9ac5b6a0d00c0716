//! Shared state. `ConfigStore` holds what the operator wants (model, filter settings, health
//! overrides) plus what the probes saw, and publishes a freshly compiled snapshot on every
//! change; each xDS stream watches it. `Clients` is what the admin status shows about Envoys.
//! The state owns the metrics and keeps the version gauge on the current snapshot.
use crate::anomaly::Anomalies;
use crate::dashboard::Dashboard;
use crate::metrics::Metrics;
use crate::model::{Model, Secrets};
use crate::telemetry::{Telemetry, TelemetryOptions};
use crate::xds::clients::Clients;
use crate::xds::resources::{self, EndpointId, Inputs};
use crate::xds::short_name;
use crate::xds::snapshot::Snapshot;
use aurelis_cache_service::ApiToken;
use aurelis_core::config::FilterConfig;
use aurelis_store::RollupStore;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ConfigStore>,
    pub clients: Arc<Clients>,
    /// The admin token, kept as its digest and compared in constant time (the cache service's
    /// `ApiToken`, shared so both services check bearer tokens one way). `None`: writes refused.
    pub admin_token: Option<ApiToken>,
    pub metrics: Arc<Metrics>,
    /// The L2 store, for purges; `None` when no Redis is configured.
    pub l2: Option<aurelis_cache_service::Store>,
    /// The adaptive loops' memory (routing decisions, pins, tuning).
    pub adaptive: Arc<crate::adaptive::Adaptive>,
    /// The cache service's API token (`AURELIS_CACHE_API_TOKEN`, environment only): with it a
    /// purge also calls every cache service of the model (`POST /v1/purge`), which reaches
    /// their L3. `None`: purges reach Redis only.
    pub cache_service_token: Option<String>,
    /// Anomaly detection over the fleet's windows: events, active anomalies, the webhook.
    pub anomalies: Arc<Anomalies>,
    /// The dashboard's recent windows.
    pub dashboard: Arc<Dashboard>,
    /// The fleet's telemetry: windows, history, the report's data.
    pub telemetry: Telemetry,
    /// Envoy's own stats as each Envoy last reported them (metrics-service sink).
    pub fleet_stats: crate::fleetstats::FleetStats,
}

impl AppState {
    /// With history in memory only (tests; nothing survives the process).
    pub fn new(desired: Desired, admin_token: Option<&str>) -> AppState {
        AppState::with_history(desired, admin_token, Arc::new(aurelis_store::memory::MemoryStore::default()))
    }

    /// With telemetry history kept in `history` (the embedded file store or PostgreSQL).
    pub fn with_history(desired: Desired, admin_token: Option<&str>, history: Arc<dyn RollupStore>) -> AppState {
        let metrics = Arc::new(Metrics::new());
        let anomalies = Arc::new(Anomalies::new(desired.model.anomalies.clone(), metrics.registry()));
        let spec = &desired.model.telemetry;
        let options = TelemetryOptions {
            top_tenants: spec.top_tenants,
            sample_rate: spec.sample_rate,
            window_secs: spec.window_secs,
            ..TelemetryOptions::default()
        };
        let telemetry = Telemetry::new(history, options, &metrics, crate::telemetry::now_ms());
        let config = Arc::new(ConfigStore::new(desired));
        report_versions(&metrics, &config.current());
        let adaptive = Arc::new(crate::adaptive::Adaptive::new(&metrics));
        let fleet_stats = crate::fleetstats::FleetStats::new(&metrics);
        AppState {
            config,
            clients: Arc::new(Clients::default()),
            admin_token: admin_token.map(ApiToken::new),
            metrics,
            l2: None,
            adaptive,
            cache_service_token: None,
            anomalies,
            dashboard: Arc::new(Dashboard::default()),
            telemetry,
            fleet_stats,
        }
    }

    /// The embedded default model with these filter settings.
    #[cfg(test)]
    pub fn with_filter_config(filter: FilterConfig, admin_token: Option<&str>) -> AppState {
        let model = Model::embedded_default();
        AppState::new(Desired::new(model, filter, Secrets::default(), "aurelis_filter.wasm".into()), admin_token)
    }

    /// Keeps `aurelis_cp_xds_version_info` on the current snapshot's versions until `stop` fires.
    pub async fn track_versions(self, mut stop: watch::Receiver<()>) {
        let mut snapshots = self.config.subscribe();
        // The snapshot may have changed since `new` reported it (a probe's first verdict).
        report_versions(&self.metrics, &snapshots.borrow_and_update());
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    report_versions(&self.metrics, &snapshots.borrow_and_update());
                }
                _ = stop.changed() => return,
            }
        }
    }
}

fn report_versions(metrics: &Metrics, snapshot: &Snapshot) {
    let versions = snapshot.versions();
    metrics.set_versions(versions.iter().map(|(type_url, version)| (short_name(type_url), version.as_str())));
}

/// An operator's verdict on an endpoint, overriding the probes until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthOverride {
    Healthy,
    Unhealthy,
}

/// Everything the snapshot is compiled from.
#[derive(Clone)]
pub struct Desired {
    pub model: Model,
    pub filter: FilterConfig,
    pub secrets: Secrets,
    pub wasm_path: String,
    pub probe_unhealthy: BTreeSet<EndpointId>,
    pub overrides: BTreeMap<EndpointId, HealthOverride>,
    /// Provider weights the adaptive routing (or an operator's pin) chose, by model; they
    /// replace the model file's weights when compiling, while the file stays the intent.
    pub adaptive_weights: BTreeMap<String, BTreeMap<String, u32>>,
    /// Load-balancing policies (and, for response-time weighting, endpoint weights by
    /// address) the adaptive balancing chose, by provider.
    pub adaptive_balancing: BTreeMap<String, crate::adaptive::Balancing>,
    /// L1 purge rules (`crate::purges`), pushed in the filter configuration's `cache.purges`
    /// on top of `filter`, so replacing the filter settings does not drop them.
    pub purges: Vec<aurelis_core::cache::PurgeRule>,
}

impl Desired {
    pub fn new(model: Model, filter: FilterConfig, secrets: Secrets, wasm_path: String) -> Desired {
        Desired {
            model,
            filter,
            secrets,
            wasm_path,
            probe_unhealthy: BTreeSet::new(),
            overrides: BTreeMap::new(),
            adaptive_weights: BTreeMap::new(),
            adaptive_balancing: BTreeMap::new(),
            purges: Vec::new(),
        }
    }

    /// The filter configuration as pushed: the settings with the purge rules in force.
    pub fn pushed_filter(&self) -> FilterConfig {
        let mut filter = self.filter.clone();
        filter.cache.purges.clone_from(&self.purges);
        filter
    }

    /// Overrides win over probes.
    pub fn unhealthy(&self) -> BTreeSet<EndpointId> {
        let mut unhealthy: BTreeSet<EndpointId> =
            self.probe_unhealthy.iter().filter(|id| !self.overrides.contains_key(*id)).cloned().collect();
        unhealthy
            .extend(self.overrides.iter().filter(|(_, o)| **o == HealthOverride::Unhealthy).map(|(id, _)| id.clone()));
        unhealthy
    }

    /// The model file with the adaptive weights in place of the file's.
    pub fn effective_model(&self) -> Model {
        let mut model = self.model.clone();
        for route in model.models.iter_mut() {
            if let Some(weights) = self.adaptive_weights.get(&route.name) {
                for provider in route.providers.iter_mut() {
                    if let Some(weight) = weights.get(&provider.provider) {
                        provider.weight = *weight;
                    }
                }
            }
        }
        for provider in model.providers.iter_mut() {
            if let Some(balancing) = self.adaptive_balancing.get(&provider.name) {
                balancing.apply(provider);
            }
        }
        model
    }

    fn compile(&self) -> Snapshot {
        let model = self.effective_model();
        let filter = self.pushed_filter();
        resources::compile(&Inputs {
            model: &model,
            filter: &filter,
            secrets: &self.secrets,
            unhealthy: &self.unhealthy(),
            wasm_path: &self.wasm_path,
        })
    }
}

pub struct ConfigStore {
    desired: Mutex<Desired>,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

impl ConfigStore {
    pub fn new(desired: Desired) -> ConfigStore {
        let (snapshot, _) = watch::channel(Arc::new(desired.compile()));
        ConfigStore { desired: Mutex::new(desired), snapshot }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn desired(&self) -> Desired {
        self.lock().clone()
    }

    /// Applies a change and publishes the recompiled snapshot if any resource changed.
    /// Returns whether it did.
    pub fn update(&self, change: impl FnOnce(&mut Desired)) -> bool {
        let mut desired = self.lock();
        change(&mut desired);
        self.publish(&desired)
    }

    /// Like `update`, for a change that may be refused: it reads and writes under one lock
    /// (two admin writes cannot lose each other's change), and a refused change leaves
    /// everything as it was.
    pub fn try_update<E>(&self, change: impl FnOnce(&mut Desired) -> Result<(), E>) -> Result<bool, E> {
        let mut desired = self.lock();
        let mut next = desired.clone();
        change(&mut next)?;
        *desired = next;
        Ok(self.publish(&desired))
    }

    fn publish(&self, desired: &Desired) -> bool {
        let snapshot = desired.compile();
        self.snapshot.send_if_modified(|current| {
            if **current == snapshot {
                return false;
            }
            *current = Arc::new(snapshot);
            true
        })
    }

    fn lock(&self) -> MutexGuard<'_, Desired> {
        // A panic while holding the lock cannot leave `Desired` half-written (changes are
        // plain assignments), so a poisoned lock is still safe to use.
        self.desired.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_starts_with_its_own_registry_and_the_snapshot_versions() {
        let a = AppState::with_filter_config(FilterConfig::default(), None);
        let b = AppState::with_filter_config(FilterConfig::default(), None);
        a.metrics.filter_config_updates.inc();
        assert!(b.metrics.render().contains("aurelis_cp_filter_config_updates_total 0"), "tests stay isolated");
        let rds = a.config.current().version(crate::xds::ROUTE);
        let line = format!(r#"aurelis_cp_xds_version_info{{type="rds",version="{rds}"}} 1"#);
        assert!(a.metrics.render().contains(&line), "{line} in\n{}", a.metrics.render());
    }
}
