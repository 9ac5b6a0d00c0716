//! The tonic adapter: one task per ADS stream, feeding requests and snapshot changes into a
//! `StreamState` and sending what it answers. No protocol decisions are made here.
use super::short_name;
use super::stream::{Outcome, StreamState};
use crate::state::{AppState, ClientStatus, TypeStatus};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct AdsServer {
    state: AppState,
    next_stream: AtomicU64,
    /// Fires at shutdown so open streams end and the server can drain.
    stop: watch::Receiver<()>,
}

/// The gRPC service, ready for `tonic::transport::Server::add_service`.
pub fn service(state: AppState, stop: watch::Receiver<()>) -> AggregatedDiscoveryServiceServer<AdsServer> {
    // Resources (listeners with their filter chains) can exceed tonic's 4 MiB default.
    AggregatedDiscoveryServiceServer::new(AdsServer { state, next_stream: AtomicU64::new(1), stop })
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_stream(id, peer, self.state.clone(), request.into_inner(), tx, self.stop.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_delta_stream(id, peer, self.state.clone(), request.into_inner(), tx, self.stop.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Removes the client from the registry however the stream ends.
struct Connected {
    id: u64,
    state: AppState,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.state.clients.disconnect(self.id);
        self.state.metrics.xds_connected_clients.dec();
    }
}

async fn run_stream(
    id: u64,
    peer: String,
    state: AppState,
    mut incoming: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    mut stop: watch::Receiver<()>,
) {
    let mut snapshots = state.config.subscribe();
    let mut protocol = StreamState::default();
    state.clients.connect(ClientStatus {
        stream_id: id,
        peer: peer.clone(),
        connected_at_unix_ms: unix_ms(),
        ..Default::default()
    });
    state.metrics.xds_connected_clients.inc();
    let _connected = Connected { id, state: state.clone() };
    tracing::info!(stream = id, %peer, "ADS stream opened");
    loop {
        let responses = tokio::select! {
            message = incoming.message() => match message {
                Ok(Some(request)) => {
                    let snapshot = Arc::clone(&snapshots.borrow_and_update());
                    let (outcome, responses) = protocol.handle_request(&request, &snapshot);
                    record(&state, id, request.node.as_ref(), &request.type_url, &request.version_info, &outcome);
                    responses
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::info!(stream = id, "ADS stream ended: {}", status.message());
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
            state.metrics.xds_pushes.with_label_values(&[short_name(&response.type_url)]).inc();
            tracing::debug!(stream = id, r#type = short_name(&response.type_url), version = %response.version_info, "push");
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(stream = id, "ADS stream closed");
}

fn record(state: &AppState, id: u64, node: Option<&Node>, type_url: &str, version_info: &str, outcome: &Outcome) {
    let kind = short_name(type_url);
    if let Some(node) = node {
        // Sent on the first request only (set_node_on_first_message_only).
        state.clients.update(id, |c| {
            c.node_id = node.id.clone();
            c.node_cluster = node.cluster.clone();
        });
    }
    match outcome {
        Outcome::Subscribed { resumed: true } => {
            tracing::info!(stream = id, r#type = kind, version = %version_info, "client resumed at the current version; nothing to send");
            set_acked(state, id, kind, version_info);
        }
        Outcome::Subscribed { resumed: false } | Outcome::Stale => {}
        Outcome::Ack { version } => {
            state.metrics.xds_acks.with_label_values(&[kind]).inc();
            set_acked(state, id, kind, version);
        }
        Outcome::Nack { version, message } => {
            state.metrics.xds_nacks.with_label_values(&[kind]).inc();
            tracing::warn!(stream = id, r#type = kind, %version, "Envoy rejected the config: {message}");
            let nack = crate::state::clients::NackStatus {
                version: version.clone(),
                message: message.clone(),
                at_unix_ms: unix_ms(),
            };
            state
                .clients
                .update(id, |c| c.types.entry(kind).or_insert_with(TypeStatus::default).last_nack = Some(nack));
        }
    }
}

/// The incremental twin of `run_stream`.
async fn run_delta_stream(
    id: u64,
    peer: String,
    state: AppState,
    mut incoming: Streaming<DeltaDiscoveryRequest>,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    mut stop: watch::Receiver<()>,
) {
    let mut snapshots = state.config.subscribe();
    let mut protocol = super::delta::DeltaState::default();
    state.clients.connect(ClientStatus {
        stream_id: id,
        peer: peer.clone(),
        connected_at_unix_ms: unix_ms(),
        ..Default::default()
    });
    state.metrics.xds_connected_clients.inc();
    let _connected = Connected { id, state: state.clone() };
    tracing::info!(stream = id, %peer, "delta ADS stream opened");
    loop {
        let responses = tokio::select! {
            message = incoming.message() => match message {
                Ok(Some(request)) => {
                    let snapshot = Arc::clone(&snapshots.borrow_and_update());
                    let (outcome, responses) = protocol.handle_request(&request, &snapshot);
                    let version = snapshot.version(&request.type_url);
                    record(&state, id, request.node.as_ref(), &request.type_url, &version, &outcome);
                    responses
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::info!(stream = id, "delta ADS stream ended: {}", status.message());
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
            state.metrics.xds_pushes.with_label_values(&[short_name(&response.type_url)]).inc();
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(stream = id, "delta ADS stream closed");
}

fn set_acked(state: &AppState, id: u64, kind: &'static str, version: &str) {
    state.clients.update(id, |c| {
        c.types.entry(kind).or_insert_with(TypeStatus::default).acked_version = Some(version.to_string())
    });
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
