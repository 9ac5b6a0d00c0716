//! The optional webhook: every anomaly event as a JSON POST to one URL. The detector's loop only
//! puts events on a bounded queue (`notify` never waits); one task delivers them in order, each
//! with a timeout and a bounded number of retries with exponential backoff. When the receiver is
//! down long enough for the queue to fill, new events are dropped and counted, never buffered
//! without bound: `GET /v1/events` still has them.
use super::detector::AnomalyEvent;
use prometheus::IntCounterVec;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where events go. Not `Debug`: the URL itself may be a credential (chat webhooks often are).
#[derive(Clone)]
pub struct WebhookTarget {
    pub url: reqwest::Url,
    /// Sent as `authorization: Bearer <secret>` when set.
    pub secret: Option<String>,
}

impl WebhookTarget {
    /// Scheme and host only, for logs.
    pub fn redacted(&self) -> String {
        format!("{}://{}/<redacted>", self.url.scheme(), self.url.host_str().unwrap_or("?"))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Events waiting for delivery at most.
    pub queue: usize,
    /// Tries per event, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled for each later one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Per try.
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            queue: 256,
            attempts: 4,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

impl DeliveryPolicy {
    /// The wait after failed try number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// How one event's delivery ended; the `outcome` label of
/// `aurelis_cp_anomaly_webhook_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Every try failed, or the receiver refused it for good (a 4xx other than 408/429).
    Failed,
    /// The queue was full.
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// The loop's handle: hands events to the delivery task.
pub struct Webhook {
    queue: mpsc::Sender<AnomalyEvent>,
    deliveries: IntCounterVec,
}

impl Webhook {
    /// Starts the delivery task; it ends when `stop` fires or every handle is dropped.
    pub fn spawn(
        target: WebhookTarget,
        policy: DeliveryPolicy,
        deliveries: IntCounterVec,
        stop: watch::Receiver<()>,
    ) -> Webhook {
        let (queue, events) = mpsc::channel(policy.queue.max(1));
        tokio::spawn(deliver_all(target, policy, events, deliveries.clone(), stop));
        Webhook { queue, deliveries }
    }

    /// Queues `event` without waiting; a full queue drops it (counted).
    pub fn notify(&self, event: AnomalyEvent) {
        if self.queue.try_send(event).is_err() {
            self.deliveries.with_label_values(&[Outcome::Dropped.as_str()]).inc();
        }
    }
}

async fn deliver_all(
    target: WebhookTarget,
    policy: DeliveryPolicy,
    mut events: mpsc::Receiver<AnomalyEvent>,
    deliveries: IntCounterVec,
    mut stop: watch::Receiver<()>,
) {
    let client = match reqwest::Client::builder().timeout(policy.timeout).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("anomaly webhook disabled: building its HTTP client failed: {e}");
            return;
        }
    };
    loop {
        let event = tokio::select! {
            event = events.recv() => match event { Some(event) => event, None => return },
            _ = stop.changed() => return,
        };
        let outcome = tokio::select! {
            outcome = deliver(&client, &target, &policy, &event) => outcome,
            _ = stop.changed() => return,
        };
        deliveries.with_label_values(&[outcome.as_str()]).inc();
    }
}

async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    policy: &DeliveryPolicy,
    event: &AnomalyEvent,
) -> Outcome {
    for attempt in 1..=policy.attempts.max(1) {
        let mut request = client.post(target.url.clone()).json(event);
        if let Some(secret) = &target.secret {
            request = request.bearer_auth(secret);
        }
        let retry = match request.send().await {
            Ok(response) if response.status().is_success() => return Outcome::Delivered,
            Ok(response) => {
                let status = response.status();
                tracing::warn!(event = event.id, attempt, %status, "anomaly webhook refused the event");
                status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
            }
            Err(e) => {
                // reqwest's error text can quote the URL; log only what kind of failure it was.
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                tracing::warn!(event = event.id, attempt, kind, "anomaly webhook delivery failed");
                true
            }
        };
        if !retry {
            break;
        }
        if attempt < policy.attempts {
            tokio::time::sleep(policy.backoff(attempt)).await;
        }
    }
    Outcome::Failed
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
