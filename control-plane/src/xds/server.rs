//! The tonic adapter: one task per ADS stream (state of the world or delta), feeding requests and
//! snapshot changes into a pure protocol state and sending what it answers. No protocol
//! decisions are made here. It is handed what it serves (a snapshot watch), where it reports
//! (the client registry, the metrics), how streams are admitted (`Admission`) and when to stop;
//! it knows nothing else of the process.
//!
//! Who may open a stream is decided in `admission` (node identity) and `limits` (request size
//! and rate); this file only applies it: before the stream starts (the certificate), on the
//! first request (its node) and on every request (the rate).
use super::admission::{admit, refuse, vouched_node_ids, Admission, Refusal};
use super::clients::{ClientStatus, Clients, NackStatus, TypeStatus};
use super::delta::DeltaState;
use super::limits::RequestBudget;
use super::snapshot::Snapshot;
use super::sotw::SotwState;
use super::{short_name, Outcome};
use crate::metrics::Metrics;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

pub struct AdsServer {
    shared: Shared,
    next_stream: AtomicU64,
}

/// What every stream is given.
#[derive(Clone)]
struct Shared {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    clients: Arc<Clients>,
    metrics: Arc<Metrics>,
    /// Fires at shutdown so open streams end and the server can drain.
    stop: watch::Receiver<()>,
    admission: Admission,
}

/// The gRPC service, ready for `tonic::transport::Server::add_service`: serves the latest value
/// of `snapshots` and keeps `clients` and `metrics` on what the Envoys do.
pub fn service(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    clients: Arc<Clients>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<()>,
    admission: Admission,
) -> AggregatedDiscoveryServiceServer<AdsServer> {
    let shared = Shared { snapshots, clients, metrics, stop, admission };
    AggregatedDiscoveryServiceServer::new(AdsServer { shared, next_stream: AtomicU64::new(1) })
        // What a client may send: small requests (a larger one ends its stream).
        .max_decoding_message_size(admission.limits.max_request_bytes)
        // Resources (listeners with their filter chains) can exceed tonic's 4 MiB default.
        .max_encoding_message_size(16 << 20)
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.spawn_stream::<SotwState>(request)?))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.spawn_stream::<DeltaState>(request)?))
    }
}

impl AdsServer {
    /// Starts the task serving one stream; returns what it sends. A TLS client whose
    /// certificate names no node is refused here, before anything is read.
    fn spawn_stream<P: Protocol>(
        &self,
        request: Request<Streaming<P::Request>>,
    ) -> Result<ReceiverStream<Result<P::Response, Status>>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let certs = request.peer_certs();
        let vouched = vouched_node_ids(self.shared.admission.identity, certs.as_deref().map(Vec::as_slice))
            .map_err(|(refusal, message)| refuse(&self.shared.metrics, &peer, refusal, &message))?;
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_stream::<P>(id, peer, vouched, self.shared.clone(), request.into_inner(), tx));
        Ok(ReceiverStream::new(rx))
    }
}

/// Removes the client from the registry however the stream ends.
struct Connected {
    id: u64,
    shared: Shared,
}

impl Connected {
    /// Lists the stream as a connected client until it ends.
    fn register(id: u64, peer: &str, shared: &Shared) -> Connected {
        shared.clients.connect(ClientStatus {
            stream_id: id,
            peer: peer.to_string(),
            connected_at_unix_ms: unix_ms(),
            ..Default::default()
        });
        shared.metrics.xds_connected_clients.inc();
        Connected { id, shared: shared.clone() }
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.shared.clients.disconnect(self.id);
        self.shared.metrics.xds_connected_clients.dec();
    }
}

/// What the stream loop needs from a protocol flavour: state of the world (`SotwState`) or
/// incremental (`DeltaState`). Both are pure state machines; this is the only seam.
trait Protocol: Default + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    /// For logs: "ADS" or "delta ADS".
    const NAME: &'static str;
    fn handle(&mut self, request: &Self::Request, snapshot: &Snapshot) -> (Outcome, Vec<Self::Response>);
    fn pending(&mut self, snapshot: &Snapshot) -> Vec<Self::Response>;
    /// The request's node (first message only), type and the version it speaks of, for the
    /// client registry.
    fn describe<'a>(request: &'a Self::Request, snapshot: &Snapshot) -> (Option<&'a Node>, &'a str, String);
    fn response_type(response: &Self::Response) -> &str;
}

impl Protocol for SotwState {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "ADS";
    fn handle(&mut self, request: &DiscoveryRequest, snapshot: &Snapshot) -> (Outcome, Vec<DiscoveryResponse>) {
        self.handle_request(request, snapshot)
    }
    fn pending(&mut self, snapshot: &Snapshot) -> Vec<DiscoveryResponse> {
        SotwState::pending(self, snapshot)
    }
    fn describe<'a>(request: &'a DiscoveryRequest, _: &Snapshot) -> (Option<&'a Node>, &'a str, String) {
        (request.node.as_ref(), &request.type_url, request.version_info.clone())
    }
    fn response_type(response: &DiscoveryResponse) -> &str {
        &response.type_url
    }
}

impl Protocol for DeltaState {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta ADS";
    fn handle(
        &mut self,
        request: &DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> (Outcome, Vec<DeltaDiscoveryResponse>) {
        self.handle_request(request, snapshot)
    }
    fn pending(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        DeltaState::pending(self, snapshot)
    }
    /// Delta requests carry no type-wide version; the registry shows the snapshot's.
    fn describe<'a>(request: &'a DeltaDiscoveryRequest, snapshot: &Snapshot) -> (Option<&'a Node>, &'a str, String) {
        (request.node.as_ref(), &request.type_url, snapshot.version(&request.type_url).to_string())
    }
    fn response_type(response: &DeltaDiscoveryResponse) -> &str {
        &response.type_url
    }
}

/// One ADS stream: requests and snapshot changes in, the protocol's answers out.
async fn run_stream<P: Protocol>(
    id: u64,
    peer: String,
    vouched: Option<Vec<String>>,
    shared: Shared,
    mut incoming: Streaming<P::Request>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
) {
    let mut snapshots = shared.snapshots.clone();
    // Only changes from now on wake the loop; each request reads the latest snapshot anyway.
    snapshots.mark_unchanged();
    let mut stop = shared.stop.clone();
    let mut protocol = P::default();
    // Set once the first request is admitted: only admitted streams are listed as clients.
    let mut admitted: Option<Connected> = None;
    let mut budget = RequestBudget::new(&shared.admission.limits, Instant::now());
    tracing::info!(stream = id, %peer, "{} stream opened", P::NAME);
    loop {
        let responses = tokio::select! {
            message = incoming.message() => match message {
                Ok(Some(request)) => {
                    let snapshot = Arc::clone(&snapshots.borrow_and_update());
                    let (node, type_url, version) = P::describe(&request, &snapshot);
                    let refusal = if admitted.is_none() {
                        admit(vouched.as_deref(), node).err()
                    } else if !budget.take(Instant::now()) {
                        let message = format!(
                            "more than {} requests per second on one stream (burst {}); retry in {:?}",
                            shared.admission.limits.per_second, shared.admission.limits.burst, budget.retry_after()
                        );
                        Some((Refusal::RateLimited, message))
                    } else {
                        None
                    };
                    if let Some((refusal, message)) = refusal {
                        let _ = tx.send(Err(refuse(&shared.metrics, &peer, refusal, &message))).await;
                        return;
                    }
                    if admitted.is_none() {
                        admitted = Some(Connected::register(id, &peer, &shared));
                        // The first request counts against the budget too.
                        budget.take(Instant::now());
                    }
                    let (outcome, responses) = protocol.handle(&request, &snapshot);
                    record(&shared, id, node, type_url, &version, &outcome);
                    responses
                }
                Ok(None) => break,
                Err(status) if status.code() == Code::OutOfRange => {
                    // tonic's decoder refused a request over `max_request_bytes`.
                    let _ = tx.send(Err(refuse(&shared.metrics, &peer, Refusal::RequestTooLarge, status.message()))).await;
                    return;
                }
                Err(status) => {
                    tracing::info!(stream = id, "{} stream ended: {}", P::NAME, status.message());
                    break;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = Arc::clone(&snapshots.borrow_and_update());
                protocol.pending(&snapshot)
            }
            _ = stop.changed() => break,
        };
        for response in responses {
            let kind = short_name(P::response_type(&response));
            shared.metrics.xds_pushes.with_label_values(&[kind]).inc();
            tracing::debug!(stream = id, r#type = kind, "push");
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(stream = id, "{} stream closed", P::NAME);
}

fn record(shared: &Shared, id: u64, node: Option<&Node>, type_url: &str, version_info: &str, outcome: &Outcome) {
    let kind = short_name(type_url);
    if let Some(node) = node {
        // Sent on the first request only (set_node_on_first_message_only).
        shared.clients.update(id, |c| {
            c.node_id = node.id.clone();
            c.node_cluster = node.cluster.clone();
        });
    }
    match outcome {
        Outcome::Subscribed { resumed: true } => {
            tracing::info!(stream = id, r#type = kind, version = %version_info, "client resumed at the current version; nothing to send");
            set_acked(&shared.clients, id, kind, version_info);
        }
        Outcome::Subscribed { resumed: false } | Outcome::Resubscribed | Outcome::Stale => {}
        Outcome::Ack { version } => {
            shared.metrics.xds_acks.with_label_values(&[kind]).inc();
            set_acked(&shared.clients, id, kind, version);
        }
        Outcome::Nack { version, message } => {
            shared.metrics.xds_nacks.with_label_values(&[kind]).inc();
            tracing::warn!(stream = id, r#type = kind, %version, "Envoy rejected the config: {message}");
            let nack = NackStatus { version: version.clone(), message: message.clone(), at_unix_ms: unix_ms() };
            shared
                .clients
                .update(id, |c| c.types.entry(kind).or_insert_with(TypeStatus::default).last_nack = Some(nack));
        }
    }
}

fn set_acked(clients: &Clients, id: u64, kind: &'static str, version: &str) {
    clients.update(id, |c| {
        c.types.entry(kind).or_insert_with(TypeStatus::default).acked_version = Some(version.to_string())
    });
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests;
