//! `make bench` (xDS part): how long a weight change takes to reach every connected Envoy, and
//! the control plane's memory while they are connected. The control plane is the real binary;
//! the Envoys are simulated in this process: each opens an ADS stream, subscribes like Envoy
//! does (CDS and LDS, then EDS, RDS and ECDS as they are discovered) and ACKs every response.
//! Baseline: the same change with 1 client, measured in the same run.
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const TOKEN: &str = "bench-token-bench-token-bench-token";
const ROUNDS: usize = 10;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

struct ControlPlane {
    child: Child,
    admin: String,
    xds: String,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_control_plane() -> ControlPlane {
    let (xds, admin, metrics) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_aurelis-control-plane"))
        .args([
            format!("--xds-listen=127.0.0.1:{xds}"),
            format!("--admin-listen=127.0.0.1:{admin}"),
            format!("--metrics-listen=127.0.0.1:{metrics}"),
            "--xds-plaintext-loopback".to_string(),
        ])
        .env("AURELIS_ADMIN_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the control plane: {e}"));
    let cp = ControlPlane { child, admin: format!("http://127.0.0.1:{admin}"), xds: format!("http://127.0.0.1:{xds}") };
    for _ in 0..200 {
        if reqwest::get(format!("{}/healthz", cp.admin)).await.is_ok() {
            return cp;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("control plane did not start");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        .unwrap_or(0)
}

/// One simulated Envoy: reports (client, RDS version) each time it receives routes.
async fn simulated_envoy(id: usize, xds: String, routes: mpsc::UnboundedSender<(usize, String)>) {
    let mut client = match AggregatedDiscoveryServiceClient::connect(xds).await {
        Ok(c) => c,
        Err(e) => panic!("client {id}: {e}"),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let request = |type_url: &str, version: &str, nonce: &str, names: &[&str]| DiscoveryRequest {
        type_url: type_url.into(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let mut first = request(CLUSTER, "", "", &[]);
    first.node = Some(Node { id: format!("sim-{id}"), cluster: "bench".into(), ..Default::default() });
    let _ = tx.send(first);
    let _ = tx.send(request(LISTENER, "", "", &[]));
    let mut stream =
        match client.stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx)).await {
            Ok(s) => s.into_inner(),
            Err(e) => panic!("client {id}: {e}"),
        };
    let mut subscribed_eds = false;
    let mut subscribed_listener_deps = false;
    while let Ok(Some(response)) = stream.message().await {
        let DiscoveryResponse { type_url, version_info, nonce, .. } = response;
        let names: Vec<&str> = match type_url.as_str() {
            ENDPOINT => vec!["mock"],
            ROUTE => vec!["aurelis_routes"],
            EXTENSION_CONFIG => vec!["aurelis.filter"],
            _ => vec![],
        };
        let _ = tx.send(request(&type_url, &version_info, &nonce, &names));
        if type_url == CLUSTER && !subscribed_eds {
            subscribed_eds = true;
            let _ = tx.send(request(ENDPOINT, "", "", &["mock"]));
        }
        if type_url == LISTENER && !subscribed_listener_deps {
            subscribed_listener_deps = true;
            let _ = tx.send(request(ROUTE, "", "", &["aurelis_routes"]));
            let _ = tx.send(request(EXTENSION_CONFIG, "", "", &["aurelis.filter"]));
        }
        if type_url == ROUTE {
            let _ = routes.send((id, version_info));
        }
    }
}

/// Connects `n` clients, then changes weights `ROUNDS` times; returns the time for each change
/// to reach all of them, and the control plane's RSS (KiB) idle and with the clients.
async fn run(n: usize) -> (Vec<Duration>, u64, u64) {
    let cp = start_control_plane().await;
    let pid = cp.child.id();
    let idle_rss = rss_kib(pid);
    let (routes_tx, mut routes_rx) = mpsc::unbounded_channel();
    for id in 0..n {
        tokio::spawn(simulated_envoy(id, cp.xds.clone(), routes_tx.clone()));
    }
    let mut received = 0;
    while received < n {
        if routes_rx.recv().await.is_some() {
            received += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let connected_rss = rss_kib(pid);
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let body = format!(r#"{{"weights":{{"mock":{}}}}}"#, 10 + round);
        let started = Instant::now();
        let response = http
            .put(format!("{}/v1/models/gpt-4o-mini/weights", cp.admin))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        assert!(response.is_ok_and(|r| r.status().is_success()), "weight change refused");
        let mut reached = std::collections::BTreeSet::new();
        let mut version = None;
        while reached.len() < n {
            let Some((id, v)) = routes_rx.recv().await else { break };
            let version = version.get_or_insert(v.clone());
            if *version == v {
                reached.insert(id);
            }
        }
        times.push(started.elapsed());
    }
    (times, idle_rss, connected_rss)
}

fn summary(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

#[tokio::main]
async fn main() {
    let (mut base, _, _) = run(1).await;
    let (mut fleet, idle, connected) = run(100).await;
    let (b50, bmax) = summary(&mut base);
    let (f50, fmax) = summary(&mut fleet);
    println!("xDS fan-out ({ROUNDS} weight changes through the admin API, each until every client has the new routes)");
    println!("  1 client (baseline):  p50 {:>8.2?}  max {:>8.2?}", b50, bmax);
    println!(
        "  100 clients:          p50 {:>8.2?}  max {:>8.2?}  (target <= 1 s)  ratio p50 {:.1}x",
        f50,
        fmax,
        f50.as_secs_f64() / b50.as_secs_f64().max(1e-9)
    );
    println!(
        "  control plane RSS: idle {:.1} MiB, with 100 ADS streams {:.1} MiB ({:.0} KiB per stream)",
        idle as f64 / 1024.0,
        connected as f64 / 1024.0,
        connected.saturating_sub(idle) as f64 / 100.0
    );
}
