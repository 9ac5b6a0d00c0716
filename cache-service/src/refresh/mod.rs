//! Refresh-ahead, the cache service's side: every `every`, list each namespace's hot L3
//! entries that expire within `ahead`, and replay each one's recorded request through the
//! Envoy listener with a fresh grant, at most `concurrency` at a time. The filter decides
//! whether the replay may act for the tenant (it verifies the grant and the record's seal,
//! charges the tenant's budget and limits, and stores the fresh answer, which renews the entry
//! here through the ordinary PUT). This side only picks entries and signs grants.
//!
//! Failure modes: L3 unavailable → nothing is refreshed this round (entries simply expire);
//! Envoy unreachable or refusing → counted, and the entry is not tried again before
//! `retry_after`, so a refused or over-budget tenant is not hammered.
mod plan;

use crate::l3::L3;
use crate::metrics::Metrics;
use crate::settings::refresh::RefreshSettings;
use aurelis_core::refresh::grant::{issue, GrantFor, NONCE_BYTES};
use aurelis_core::refresh::{Record, GRANT_HEADER};
use aurelis_store::HotQuery;
pub use plan::Attempts;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a grant is valid: enough for the request to reach the filter, not for reuse.
const GRANT_LIFETIME_MS: u64 = 30_000;
/// Entries looked at per namespace and round.
const CANDIDATES: usize = 50;
/// The window hits count in, as for warming.
const WINDOW_MS: i64 = 30 * 86_400_000;
/// A replay is a real LLM call: give it as long as a slow completion takes.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Refresher {
    l3: Arc<L3>,
    settings: RefreshSettings,
    namespaces: Vec<String>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    attempts: Mutex<Attempts>,
}

/// What became of one replay (the `outcome` label of `aurelis_refresh_replays_total`).
pub fn outcome_of(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "refreshed",
        Some(429) => "over_budget",
        Some(401 | 403) => "refused",
        Some(_) => "failed",
        None => "unreachable",
    }
}

impl Refresher {
    pub fn new(l3: Arc<L3>, settings: RefreshSettings, namespaces: Vec<String>, metrics: Arc<Metrics>) -> Refresher {
        let client = reqwest::Client::builder().timeout(REPLAY_TIMEOUT).build().unwrap_or_default();
        Refresher { l3, settings, namespaces, client, metrics, attempts: Mutex::new(Attempts::default()) }
    }

    /// Runs a round every `every` until the process ends.
    pub fn start(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(self.settings.every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                self.round(unix_ms_now()).await;
            }
        });
    }

    /// One round: every due entry of every namespace, `concurrency` replays at a time.
    pub async fn round(&self, now_ms: u64) -> usize {
        let mut due = Vec::new();
        for namespace in &self.namespaces {
            let query = HotQuery {
                namespace: namespace.clone(),
                min_hits: self.settings.min_hits,
                since_ms: signed(now_ms).saturating_sub(WINDOW_MS),
                now_ms: signed(now_ms),
                limit: CANDIDATES,
            };
            let ahead = i64::try_from(self.settings.ahead.as_millis()).unwrap_or(i64::MAX);
            let Ok(keys) = self.l3.due_for_refresh(&query, ahead).await else { continue };
            due.extend(keys.into_iter().map(|k| (namespace.clone(), k)));
        }
        let chosen = self.lock().choose(due, now_ms, self.settings.retry_after);
        let count = chosen.len();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.settings.concurrency));
        let mut replays = tokio::task::JoinSet::new();
        for (namespace, key) in chosen {
            let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else { break };
            let request = self.prepare(&namespace, &key, now_ms).await;
            if matches!(request, Err("no_record")) {
                // Other tenants' entries never have one; an opted-in fill's may be on its way.
                self.lock().forget(&(namespace, key));
                metrics_no_record(&self.metrics);
                continue;
            }
            let client = self.client.clone();
            let metrics = Arc::clone(&self.metrics);
            replays.spawn(async move {
                let outcome = match request {
                    Ok(request) => outcome_of(client.execute(request).await.ok().map(|r| r.status().as_u16())),
                    Err(outcome) => outcome,
                };
                metrics.refresh(outcome);
                drop(permit);
            });
        }
        while replays.join_next().await.is_some() {}
        count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Attempts> {
        self.attempts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The replay of `key`: its recorded request with a fresh grant. `Err(outcome)` when there
    /// is nothing to replay.
    async fn prepare(&self, namespace: &str, key: &str, now_ms: u64) -> Result<reqwest::Request, &'static str> {
        let bytes = self.l3.record(namespace, key, signed(now_ms)).await.ok_or("no_record")?;
        let record = Record::decode(&bytes).ok_or("bad_record")?;
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::getrandom(&mut nonce).map_err(|_| "failed")?;
        let grant = issue(
            &self.settings.secret,
            &GrantFor {
                namespace,
                key,
                kind: record.kind,
                label: &record.label,
                tenant: &record.tenant,
                expires_at_ms: now_ms.saturating_add(GRANT_LIFETIME_MS),
                nonce,
                record_seal: record.seal,
            },
        );
        let mut builder = self.client.post(format!("{}{}", self.settings.envoy_url, record.path));
        for (name, value) in &record.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.header(GRANT_HEADER, grant).body(record.body).build().map_err(|_| "bad_record")
    }
}

fn metrics_no_record(metrics: &Metrics) {
    metrics.refresh("no_record");
}

fn signed(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn unix_ms_now() -> u64 {
    crate::store::layout::unix_ms(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_outcomes() {
        assert_eq!(outcome_of(Some(200)), "refreshed");
        assert_eq!(outcome_of(Some(429)), "over_budget");
        assert_eq!(outcome_of(Some(401)), "refused");
        assert_eq!(outcome_of(Some(403)), "refused");
        assert_eq!(outcome_of(Some(502)), "failed");
        assert_eq!(outcome_of(None), "unreachable");
    }
}
