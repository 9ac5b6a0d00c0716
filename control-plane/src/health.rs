//! Active health probes: every endpoint of a provider with a `health_check` is probed with a
//! `GET` on its own address; after `unhealthy_threshold` consecutive failures it is marked
//! unhealthy in EDS (Envoy then sends it nothing), after `healthy_threshold` successes it is
//! healthy again. Admin overrides (in `state`) win over what the probes see.
use crate::model::{HealthCheckSpec, Provider};
use crate::state::AppState;
use crate::xds::resources::EndpointId;
use std::time::Duration;
use tokio::sync::watch;

/// Consecutive results → a verdict, only when a threshold is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    healthy: bool,
    successes: u32,
    failures: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        // Endpoints start healthy: a fresh control plane must not blackhole traffic while
        // the first probes run.
        Tracker { healthy: true, successes: 0, failures: 0 }
    }
}

impl Tracker {
    /// Records one probe; returns the new health when it changed.
    pub fn record(&mut self, ok: bool, spec: &HealthCheckSpec) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.healthy && self.successes >= spec.healthy_threshold {
                self.healthy = true;
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.healthy && self.failures >= spec.unhealthy_threshold {
                self.healthy = false;
                return Some(false);
            }
        }
        None
    }
}

/// Starts one probe loop per probed endpoint; they stop when `stop` fires.
pub fn spawn_probes(state: &AppState, stop: watch::Receiver<()>) {
    let model = state.config.desired().model;
    let client = match reqwest::Client::builder().pool_max_idle_per_host(1).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("health probes disabled: cannot build an HTTP client: {e}");
            return;
        }
    };
    for provider in model.providers.iter().filter(|p| p.uses_eds()) {
        let Some(spec) = provider.health_check.clone() else { continue };
        for (host, port, _) in provider.endpoint_addresses() {
            let id = EndpointId::new(&provider.name, &host, port);
            let target = probe_target(provider, &id, &spec);
            tokio::spawn(probe_loop(state.clone(), client.clone(), id, target, spec.clone(), stop.clone()));
        }
    }
}

enum Target {
    Http(String),
    /// TLS providers on IP endpoints: the certificate names a host, not the IP, so a TCP
    /// connect is what can be checked honestly.
    Tcp(String),
}

fn probe_target(provider: &Provider, id: &EndpointId, spec: &HealthCheckSpec) -> Target {
    if provider.base().tls {
        Target::Tcp(id.address.clone())
    } else {
        Target::Http(format!("http://{}{}", id.address, spec.path))
    }
}

async fn probe_loop(
    state: AppState,
    client: reqwest::Client,
    id: EndpointId,
    target: Target,
    spec: HealthCheckSpec,
    mut stop: watch::Receiver<()>,
) {
    let mut tracker = Tracker::default();
    let mut interval = tokio::time::interval(Duration::from_millis(spec.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_millis(spec.timeout_ms);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let ok = match &target {
            Target::Http(url) => {
                let response = tokio::time::timeout(timeout, client.get(url).send()).await;
                matches!(response, Ok(Ok(r)) if r.status().is_success())
            }
            Target::Tcp(address) => {
                matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await, Ok(Ok(_)))
            }
        };
        state.metrics.health_probes.with_label_values(&[&id.provider, if ok { "ok" } else { "failed" }]).inc();
        if let Some(healthy) = tracker.record(ok, &spec) {
            tracing::warn!(provider = %id.provider, endpoint = %id.address, healthy, "endpoint health changed (probe)");
            state.config.update(|d| {
                if healthy {
                    d.probe_unhealthy.remove(&id);
                } else {
                    d.probe_unhealthy.insert(id.clone());
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(unhealthy: u32, healthy: u32) -> HealthCheckSpec {
        HealthCheckSpec {
            path: "/v1/models".into(),
            interval_ms: 1000,
            timeout_ms: 100,
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
        }
    }

    #[test]
    fn thresholds_decide_transitions() {
        let spec = spec(2, 2);
        let mut t = Tracker::default();
        assert_eq!(t.record(false, &spec), None, "one failure is not enough");
        assert_eq!(t.record(true, &spec), None, "a success resets the failure count");
        assert_eq!(t.record(false, &spec), None);
        assert_eq!(t.record(false, &spec), Some(false));
        assert_eq!(t.record(false, &spec), None, "already unhealthy");
        assert_eq!(t.record(true, &spec), None);
        assert_eq!(t.record(true, &spec), Some(true));
    }
}
