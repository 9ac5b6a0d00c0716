//! The webhook against a real HTTP receiver on an ephemeral port.
use super::*;
use crate::anomaly::{EventKind, Metric};
use crate::telemetry::SeriesKey;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use prometheus::Opts;
use serde_json::Value;
use std::sync::{Arc, Mutex};

fn event(id: u64) -> AnomalyEvent {
    AnomalyEvent {
        id,
        kind: EventKind::Raised,
        series: SeriesKey { model: "gpt-4o-mini".into(), provider: "slow".into() },
        metric: Metric::P95LatencyMs,
        value: 900.0,
        baseline: 100.0,
        limit: 250.0,
        reason: None,
        window_start_ms: 10_000,
        at_ms: 21_000,
    }
}

#[derive(Default)]
struct Receiver {
    /// Statuses to answer, in order; 200 once they run out.
    answers: Mutex<Vec<u16>>,
    received: Mutex<Vec<(Option<String>, Value)>>,
}

async fn start(answers: Vec<u16>) -> (Arc<Receiver>, reqwest::Url) {
    let receiver = Arc::new(Receiver { answers: Mutex::new(answers), ..Receiver::default() });
    let shared = receiver.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let shared = shared.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
                shared.received.lock().unwrap().push((auth, body));
                let mut answers = shared.answers.lock().unwrap();
                let status = if answers.is_empty() { 200 } else { answers.remove(0) };
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap()).parse().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, url)
}

fn fast() -> DeliveryPolicy {
    DeliveryPolicy {
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
        ..DeliveryPolicy::default()
    }
}

fn counter() -> IntCounterVec {
    IntCounterVec::new(Opts::new("deliveries", "test"), &["outcome"]).unwrap()
}

/// Polls the counter until `outcome` reaches `n` (the delivery task runs on its own).
async fn wait_for(deliveries: &IntCounterVec, outcome: &str, n: u64) {
    for _ in 0..500 {
        if deliveries.with_label_values(&[outcome]).get() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{outcome} never reached {n}");
}

#[tokio::test]
async fn retries_until_delivered_with_the_secret() {
    let (receiver, url) = start(vec![503, 500]).await;
    let deliveries = counter();
    let (_stop_tx, stop) = watch::channel(());
    let target = WebhookTarget { url, secret: Some("hook-s3cret".into()) };
    let webhook = Webhook::spawn(target, fast(), deliveries.clone(), stop);
    webhook.notify(event(7));
    wait_for(&deliveries, "delivered", 1).await;
    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len(), 3, "two failures, then delivered");
    let (auth, body) = &received[2];
    assert_eq!(auth.as_deref(), Some("Bearer hook-s3cret"));
    assert_eq!(body["id"], 7);
    assert_eq!(body["kind"], "raised");
    assert_eq!(body["metric"], "p95_latency_ms");
    assert_eq!(body["series"]["provider"], "slow");
    assert_eq!((body["value"].as_f64(), body["baseline"].as_f64()), (Some(900.0), Some(100.0)));
}

#[tokio::test]
async fn retries_are_bounded_and_a_refusal_is_final() {
    let (receiver, url) = start(vec![503; 10]).await;
    let deliveries = counter();
    let (_stop_tx, stop) = watch::channel(());
    let webhook = Webhook::spawn(WebhookTarget { url: url.clone(), secret: None }, fast(), deliveries.clone(), stop);
    webhook.notify(event(1));
    wait_for(&deliveries, "failed", 1).await;
    assert_eq!(receiver.received.lock().unwrap().len(), 4, "`attempts` tries, no more");
    assert_eq!(receiver.received.lock().unwrap()[0].0, None, "no secret configured, no header");

    let (receiver, url) = start(vec![400]).await;
    let deliveries = counter();
    let (_stop_tx, stop) = watch::channel(());
    let webhook = Webhook::spawn(WebhookTarget { url, secret: None }, fast(), deliveries.clone(), stop);
    webhook.notify(event(2));
    wait_for(&deliveries, "failed", 1).await;
    assert_eq!(receiver.received.lock().unwrap().len(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn a_full_queue_drops_without_waiting() {
    // A listener nobody accepts on: the kernel takes the connection and the request, no answer
    // ever comes, so the delivery task stays busy with the first event.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap()).parse().unwrap();
    let deliveries = counter();
    let (_stop_tx, stop) = watch::channel(());
    let policy = DeliveryPolicy { queue: 2, timeout: Duration::from_secs(30), ..fast() };
    let webhook = Webhook::spawn(WebhookTarget { url, secret: None }, policy, deliveries.clone(), stop);
    let started = std::time::Instant::now();
    for id in 0..10 {
        webhook.notify(event(id));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "notify never waits for the receiver");
    // One in flight (or still queued), two queued, the rest dropped.
    let dropped = deliveries.with_label_values(&["dropped"]).get();
    assert!((7..=8).contains(&dropped), "{dropped} dropped");
    drop(silent);
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let policy = DeliveryPolicy::default();
    let waits: Vec<u128> = (1..=7).map(|a| policy.backoff(a).as_millis()).collect();
    assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
}
