//! The metrics service (`envoy.service.metrics.v3.MetricsService`) the Envoys' stat sinks
//! stream to, served on the xDS port with the same TLS and client identity as ADS and the
//! access log service. Thin: it admits the stream, flattens each message's metric families
//! into `(name, value)` and hands them to `FleetStats`.
use super::FleetStats;
use crate::telemetry::now_ms;
use crate::xds::admission::{admit, vouched_node_ids, NodeIdentity};
use envoy_types::pb::envoy::service::metrics::v3::metrics_service_server::{MetricsService, MetricsServiceServer};
use envoy_types::pb::envoy::service::metrics::v3::{StreamMetricsMessage, StreamMetricsResponse};
use envoy_types::pb::io::prometheus::client::MetricFamily;
use tonic::{Request, Response, Status, Streaming};

/// Largest message accepted: the bounded stat set of one Envoy is far below this.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

pub struct MetricsIngest {
    stats: FleetStats,
    identity: NodeIdentity,
}

pub fn service(stats: FleetStats, identity: NodeIdentity) -> MetricsServiceServer<MetricsIngest> {
    MetricsServiceServer::new(MetricsIngest { stats, identity }).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// A family's value: a counter's or a gauge's (Envoy sends one metric per family when tags are
/// not emitted as labels); histograms and summaries are not read.
fn value(family: &MetricFamily) -> Option<(String, f64)> {
    let name = family.name.clone()?;
    let metric = family.metric.first()?;
    let value =
        metric.counter.as_ref().and_then(|c| c.value).or_else(|| metric.gauge.as_ref().and_then(|g| g.value))?;
    Some((name, value))
}

impl MetricsIngest {
    fn refuse(&self, peer: &str, reason: &str, message: &str) -> Status {
        self.stats.error(reason);
        tracing::warn!(%peer, reason, "stats stream refused: {message}");
        Status::permission_denied(message.to_string())
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsIngest {
    async fn stream_metrics(
        &self,
        request: Request<Streaming<StreamMetricsMessage>>,
    ) -> Result<Response<StreamMetricsResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let certs = request.peer_certs();
        let vouched = vouched_node_ids(self.identity, certs.as_deref().map(Vec::as_slice))
            .map_err(|(refusal, message)| self.refuse(&peer, refusal.reason(), &message))?;
        let mut stream = request.into_inner();
        let mut node_id: Option<String> = None;
        let result = loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => break Ok(()),
                Err(status) => {
                    self.stats.error("stream");
                    break Err(status);
                }
            };
            if node_id.is_none() {
                // Envoy names its node on a stream's first message only.
                let node = message.identifier.as_ref().and_then(|i| i.node.as_ref());
                if let Err((refusal, text)) = admit(vouched.as_deref(), node) {
                    break Err(self.refuse(&peer, refusal.reason(), &text));
                }
                match node.map(|n| n.id.clone()).filter(|id| !id.is_empty()) {
                    Some(id) => node_id = Some(id),
                    None => break Err(self.refuse(&peer, "no_node", "the first message must carry the node id")),
                }
            }
            if let Some(node) = &node_id {
                self.stats.report(node, message.envoy_metrics.iter().filter_map(value), now_ms());
            }
        };
        if let Some(node) = &node_id {
            self.stats.gone(node);
        }
        result.map(|()| Response::new(StreamMetricsResponse {}))
    }
}
