//! Anomaly detection end to end: steady traffic through real Envoy to two providers, the
//! control plane's windows from Envoy's access log stream, then a latency spike injected on one
//! provider (the mock's latency control). The spike is raised within 30 s (in `/v1/events`, as a
//! gauge on `/metrics`, and at a webhook), and cleared after the latency is back; the other
//! provider raises nothing. Windows are 2 s wide (`telemetry.window_secs`, 10 s by default);
//! the detector is told to judge after 3 windows and to raise and clear on one window each (the
//! model's `anomalies`).
mod common;
#[path = "common/grafana.rs"]
mod grafana;
use aurelis_devstack::FleetOptions;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODEL: &str = "
listener: { address: 127.0.0.1, port: {{listen_port}} }
providers:
  - { name: steady, base_url: 'http://127.0.0.1:{{mock0}}/v1', protocol: http2 }
  - { name: spiky, base_url: 'http://127.0.0.1:{{mock1}}/v1', protocol: http2 }
models:
  - { name: gpt-4o-mini, providers: [{ provider: steady, weight: 100 }] }
  - { name: gpt-4o, providers: [{ provider: spiky, weight: 100 }] }
filter: { auth: { anonymous: {} } }
telemetry: { window_secs: 2 }
anomalies:
  min_windows: 3
  raise_after: 1
  clear_after: 1
  min_requests: 5
  p95_latency: { deviations: 4, min_change: 200, min_relative: 0.5 }
";
const WEBHOOK_SECRET: &str = "e2e-webhook-secret";
const SPIKE_MS: u64 = 800;

/// A webhook receiver: answers 200 to every POST and keeps its authorization and JSON body.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink));
            }
        });
        Receiver { url, received }
    }

    fn events(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }
}

/// One connection, possibly several requests (reqwest keeps connections alive).
fn serve(stream: std::net::TcpStream, sink: &Mutex<Vec<(String, Value)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let (mut length, mut authorization) = (0usize, String::new());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        sink.lock().unwrap().push((authorization, serde_json::from_slice(&body).unwrap_or(Value::Null)));
        if writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// Polls `/v1/events` until an event of `kind` for the spiky provider's p95 is there.
fn wait_for_event(fleet: &aurelis_devstack::Fleet, kind: &str, timeout: Duration) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let body = fleet.control_plane.get("/v1/events").unwrap_or(Value::Null);
        let found = body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["kind"] == kind && e["metric"] == "p95_latency_ms" && e["series"]["provider"] == "spiky");
        if let Some(event) = found {
            return (event.clone(), started.elapsed());
        }
        assert!(started.elapsed() < timeout, "no `{kind}` event within {timeout:?}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_spike_on_one_provider_is_raised_then_cleared_and_posted_to_the_webhook() {
    let receiver = Receiver::start();
    let fleet = start_fleet(FleetOptions {
        model: Some(MODEL.into()),
        mocks: vec![Default::default(), Default::default()],
        cp_env: vec![
            ("AURELIS_ANOMALY_WEBHOOK_URL".into(), receiver.url.clone()),
            ("AURELIS_ANOMALY_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
        ],
        ..FleetOptions::default()
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = steady_traffic(fleet.url(""), &["gpt-4o-mini", "gpt-4o"], stop.clone());

    // Learning: the detector judges a series once it has seen `min_windows` windows; wait until
    // four closed windows carried the spiky provider's traffic.
    let learning = Instant::now();
    loop {
        let dashboard = fleet.control_plane.get("/v1/dashboard").unwrap_or(Value::Null);
        let windows = dashboard["points"].as_array().map_or(0, Vec::len);
        if windows >= 4 {
            break;
        }
        assert!(learning.elapsed() < Duration::from_secs(90), "windows never closed: {dashboard}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let quiet = fleet.control_plane.get("/v1/events").unwrap();
    assert_eq!(quiet["active"], json!([]), "steady traffic raises nothing: {quiet}");

    fleet.mocks[1].set_latency_ms(SPIKE_MS);
    let (raised, after) = wait_for_event(&fleet, "raised", Duration::from_secs(30));
    eprintln!("raised {after:?} after the spike began: {raised}");
    assert!(raised["value"].as_f64().unwrap() >= SPIKE_MS as f64 * 0.9, "{raised}");
    assert!(raised["baseline"].as_f64().unwrap() < 200.0, "{raised}");
    assert_eq!(raised["series"]["model"], "gpt-4o");
    let gauge = r#"provider="spiky""#;
    assert_eq!(fleet.control_plane.metric("aurelis_cp_anomaly_active", &[gauge, "p95_latency_ms"]), 1.0);
    // While an anomaly is active, every family the Grafana dashboard reads is exported.
    grafana_queries_name_exported_metrics(&fleet);

    fleet.mocks[1].set_latency_ms(0);
    let (cleared, after) = wait_for_event(&fleet, "cleared", Duration::from_secs(40));
    eprintln!("cleared {after:?} after the latency was restored: {cleared}");
    assert_eq!(cleared["reason"], "recovered");
    assert_eq!(fleet.control_plane.metric("aurelis_cp_anomaly_active", &[gauge]), 0.0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();

    let events = fleet.control_plane.get("/v1/events").unwrap();
    let steady_latency = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["series"]["provider"] == "steady" && e["metric"] == "p95_latency_ms")
        .count();
    assert_eq!(steady_latency, 0, "the other provider's latency never moved: {events}");

    // The webhook gets both, with the secret; delivery is asynchronous: wait until both came.
    let spiky_latency = |events: Vec<(String, Value)>| -> Vec<(String, Value)> {
        events
            .into_iter()
            .filter(|(_, e)| e["series"]["provider"] == "spiky" && e["metric"] == "p95_latency_ms")
            .collect()
    };
    let started = Instant::now();
    while spiky_latency(receiver.events()).len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "webhook got {:?}", receiver.events());
        std::thread::sleep(Duration::from_millis(50));
    }
    let posted = spiky_latency(receiver.events());
    let kinds: Vec<&str> = posted.iter().map(|(_, e)| e["kind"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["raised", "cleared"], "{posted:?}");
    assert!(posted.iter().all(|(auth, _)| auth == &format!("Bearer {WEBHOOK_SECRET}")), "{posted:?}");
    assert_eq!(posted[0].1["id"], raised["id"]);
    assert_eq!(posted[1].1["id"], cleared["id"]);
}

/// Every query in `deploy/grafana/aurelis.json` names only metrics that this fleet's Envoy or
/// control plane exports right now (traffic has flowed, an anomaly is active).
fn grafana_queries_name_exported_metrics(fleet: &aurelis_devstack::Fleet) {
    let envoy =
        ureq::get(&format!("{}/stats/prometheus", fleet.envoy().admin_url)).call().unwrap().into_string().unwrap();
    let control_plane = ureq::get(&fleet.control_plane.metrics_url).call().unwrap().into_string().unwrap();
    let mut exported = grafana::exported_names(&envoy);
    exported.extend(grafana::exported_names(&control_plane));
    for (expr, names) in grafana::dashboard_queries() {
        assert!(!names.is_empty(), "`{expr}` names no metric");
        for name in names {
            assert!(exported.contains(&name), "`{name}` (in `{expr}`) is not exported; exported: {exported:?}");
        }
    }
}
