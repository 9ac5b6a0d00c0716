//! The ADS adapter with sockets: admission (TLS client certificates and node ids) and the
//! per-stream limits, driven by a tonic client against the service on an ephemeral port; and
//! the pure pieces (`admit`, the status codes) on their own.
use super::*;
use crate::state::AppState;
use crate::xds::admission::{NodeIdentity, Refusal};
use crate::xds::limits::StreamLimits;
use crate::xds::tls::test_pki::{Ca, Leaf};
use crate::xds::tls::{TlsFiles, TlsFlags, XdsTls, CONTROL_PLANE_URI};
use crate::xds::CLUSTER;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server};

fn node(id: &str) -> Node {
    Node { id: id.into(), ..Default::default() }
}

#[test]
fn the_node_id_must_be_one_the_certificate_names() {
    let vouched = vec!["gw-1".to_string()];
    assert_eq!(admit(Some(&vouched), Some(&node("gw-1"))), Ok(()));
    let (refusal, message) = admit(Some(&vouched), Some(&node("gw-2"))).unwrap_err();
    assert_eq!(refusal, Refusal::NodeMismatch);
    assert!(message.contains("`gw-2`") && message.contains("gw-1"), "{message}");
    assert_eq!(admit(Some(&vouched), None).unwrap_err().0, Refusal::NoNode);
    assert_eq!(admit(Some(&vouched), Some(&node(""))).unwrap_err().0, Refusal::NoNode);
    assert_eq!(admit(None, Some(&node("anything"))), Ok(()), "plaintext loopback takes the id as sent");
    assert_eq!(admit(None, None), Ok(()));
}

#[test]
fn refusals_map_to_grpc_codes() {
    let metrics = Arc::new(Metrics::new());
    let (_, stop) = watch::channel(());
    let state = crate::state::AppState::with_filter_config(Default::default(), None);
    let shared = Shared {
        snapshots: state.config.subscribe(),
        clients: state.clients.clone(),
        metrics: metrics.clone(),
        stop,
        admission: Admission { identity: NodeIdentity::FromCertificate, limits: StreamLimits::default() },
    };
    assert_eq!(refuse(&shared.metrics, "p", Refusal::NodeMismatch, "m").code(), Code::PermissionDenied);
    assert_eq!(refuse(&shared.metrics, "p", Refusal::NoNodeIdentity, "m").code(), Code::PermissionDenied);
    assert_eq!(refuse(&shared.metrics, "p", Refusal::RateLimited, "m").code(), Code::ResourceExhausted);
    assert_eq!(refuse(&shared.metrics, "p", Refusal::RequestTooLarge, "m").code(), Code::OutOfRange);
    let text = metrics.render();
    assert!(text.contains(r#"aurelis_cp_xds_refused_streams_total{reason="node_mismatch"} 1"#), "{text}");
    assert!(text.contains(r#"aurelis_cp_xds_refused_streams_total{reason="rate_limited"} 1"#), "{text}");
}

struct Running {
    url: String,
    metrics: Arc<Metrics>,
    /// Holds the snapshot sender: streams end when it is dropped.
    _state: AppState,
    _stop: watch::Sender<()>,
}

async fn serve(limits: StreamLimits, tls: Option<&XdsTls>) -> Running {
    let state = AppState::with_filter_config(Default::default(), None);
    let (stop, stop_rx) = watch::channel(());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let identity = if tls.is_some() { NodeIdentity::FromCertificate } else { NodeIdentity::AsSent };
    let router = Server::builder().add_service(service(
        state.config.subscribe(),
        state.clients.clone(),
        state.metrics.clone(),
        stop_rx,
        Admission { identity, limits },
    ));
    match tls {
        Some(tls) => {
            let incoming = crate::xds::tls_incoming::incoming(listener, tls.rustls_config(), state.metrics.clone());
            tokio::spawn(router.serve_with_incoming(incoming));
        }
        None => {
            tokio::spawn(router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    Running { url: format!("{scheme}://localhost:{port}"), metrics: state.metrics.clone(), _state: state, _stop: stop }
}

fn subscribe(node_id: &str) -> DiscoveryRequest {
    DiscoveryRequest { node: Some(node(node_id)), type_url: CLUSTER.into(), ..Default::default() }
}

/// Sends `requests` on one SotW stream, then half-closes; returns how many responses came and
/// how the stream ended (`Ok` for a clean end).
async fn exchange(channel: Channel, requests: Vec<DiscoveryRequest>) -> (usize, Result<(), Status>) {
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut stream = match client.stream_aggregated_resources(tokio_stream::iter(requests)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (0, Err(status)),
    };
    let mut responses = 0;
    loop {
        match stream.message().await {
            Ok(Some(_)) => responses += 1,
            Ok(None) => return (responses, Ok(())),
            Err(status) => return (responses, Err(status)),
        }
    }
}

async fn plaintext(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap()
}

fn refused(metrics: &Metrics, reason: &str) -> u64 {
    metrics.xds_refused_streams.with_label_values(&[reason]).get()
}

#[tokio::test]
async fn a_stream_past_its_request_rate_is_ended_and_counted() {
    let limits = StreamLimits { max_request_bytes: 1 << 20, burst: 3, per_second: 1 };
    let cp = serve(limits, None).await;
    let (_, end) = exchange(plaintext(&cp.url).await, vec![subscribe("gw-1"); 3]).await;
    assert!(end.is_ok(), "the burst passes: {end:?}");
    let (_, end) = exchange(plaintext(&cp.url).await, vec![subscribe("gw-1"); 10]).await;
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("burst 3"), "{status:?}");
    assert_eq!(refused(&cp.metrics, "rate_limited"), 1);
}

#[tokio::test]
async fn a_request_over_the_size_limit_ends_its_stream() {
    let limits = StreamLimits { max_request_bytes: 1024, ..StreamLimits::default() };
    let cp = serve(limits, None).await;
    let mut big = subscribe("gw-1");
    big.resource_names = vec!["x".repeat(4096)];
    let (_, end) = exchange(plaintext(&cp.url).await, vec![big]).await;
    assert_eq!(end.unwrap_err().code(), Code::OutOfRange);
    assert_eq!(refused(&cp.metrics, "request_too_large"), 1);
}

/// A server certificate (also named `localhost`, which the test client checks) and the client
/// CA, as files, loaded the way start-up does.
fn server_tls(ca: &Ca, dir: &std::path::Path) -> XdsTls {
    let server = ca.leaf(&[CONTROL_PLANE_URI], &["localhost"]);
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = TlsFiles {
        cert: write("cert.pem", &server.cert_pem),
        key: write("key.pem", &server.key_pem),
        client_ca: write("ca.pem", &ca.pem),
    };
    XdsTls::load(files, &TlsFlags { cert: "cert", key: "key", client_ca: "ca" }).unwrap()
}

async fn tls_channel(url: &str, ca: &Ca, client: Option<&Leaf>) -> Result<Channel, tonic::transport::Error> {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem)).domain_name("localhost");
    if let Some(leaf) = client {
        config = config.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    Endpoint::from_shared(url.to_string()).unwrap().tls_config(config).unwrap().connect().await
}

#[tokio::test]
async fn over_tls_only_the_node_the_certificate_names_is_served() {
    let ca = Ca::new();
    let dir = std::env::temp_dir().join(format!("aurelis-cp-server-tls-{}", std::process::id()));
    let cp = serve(StreamLimits::default(), Some(&server_tls(&ca, &dir))).await;
    let gw1 = ca.leaf(&["spiffe://aurelis/node/gw-1"], &[]);

    let (responses, end) =
        exchange(tls_channel(&cp.url, &ca, Some(&gw1)).await.unwrap(), vec![subscribe("gw-1")]).await;
    assert!(responses >= 1 && end.is_ok(), "{responses} responses, {end:?}");

    let (responses, end) =
        exchange(tls_channel(&cp.url, &ca, Some(&gw1)).await.unwrap(), vec![subscribe("gw-2")]).await;
    let status = end.unwrap_err();
    assert_eq!((responses, status.code()), (0, Code::PermissionDenied), "{status:?}");
    assert!(status.message().contains("`gw-2`") && status.message().contains("gw-1"), "{status:?}");
    assert_eq!(refused(&cp.metrics, "node_mismatch"), 1);

    // A certificate from the CA that names no node (a DNS name is not a node identity).
    let host = ca.leaf(&[], &["gw-1"]);
    let (responses, end) =
        exchange(tls_channel(&cp.url, &ca, Some(&host)).await.unwrap(), vec![subscribe("gw-1")]).await;
    assert_eq!((responses, end.unwrap_err().code()), (0, Code::PermissionDenied));
    assert_eq!(refused(&cp.metrics, "no_node_identity"), 1);

    // No client certificate, or one from another CA: the handshake fails, nothing is served.
    let stranger = Ca::new().leaf(&["spiffe://aurelis/node/gw-1"], &[]);
    for client in [None, Some(&stranger)] {
        let served = match tls_channel(&cp.url, &ca, client).await {
            Err(_) => 0,
            Ok(channel) => {
                let (responses, end) = exchange(channel, vec![subscribe("gw-1")]).await;
                assert!(end.is_err(), "{end:?}");
                responses
            }
        };
        assert_eq!(served, 0, "with {:?}", client.map(|_| "a stranger's certificate"));
    }
    // Both handshakes were refused and counted, each with its reason (counted once the server's
    // handshake task ends, which may be after the client gave up: wait for it).
    for reason in ["no_certificate", "invalid_certificate"] {
        let counter = cp.metrics.xds_tls_handshake_failures.with_label_values(&[reason]);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while counter.get() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(counter.get(), 1, "{reason}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
