//! The gRPC access log service (`envoy.service.accesslog.v3.AccessLogService`) the Envoys
//! stream their sampled per-request records to, served on the xDS port with the same TLS and
//! client identity as ADS: with TLS, the node id a stream names must be one its client
//! certificate vouches for. Thin: it admits the stream and hands batches of records to the
//! window keeper; nothing is answered until the stream ends (the protocol has no ACKs).
use super::record::{attempt_quota, Record};
use super::{now_ms, Telemetry};
use crate::xds::admission::{admit, vouched_node_ids, NodeIdentity};
use crate::xds::resources::ATTEMPTS_LOG_NAME;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{StreamAccessLogsMessage, StreamAccessLogsResponse};
use tonic::{Request, Response, Status, Streaming};

/// Largest batch message accepted: Envoy's default buffer is 16 KiB per flush.
const MAX_MESSAGE_BYTES: usize = 4 << 20;

pub struct AccessLogIngest {
    telemetry: Telemetry,
    identity: NodeIdentity,
}

pub fn service(telemetry: Telemetry, identity: NodeIdentity) -> AccessLogServiceServer<AccessLogIngest> {
    AccessLogServiceServer::new(AccessLogIngest { telemetry, identity }).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

#[tonic::async_trait]
impl AccessLogService for AccessLogIngest {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let certs = request.peer_certs();
        let vouched = vouched_node_ids(self.identity, certs.as_deref().map(Vec::as_slice))
            .map_err(|(refusal, message)| self.telemetry.refuse(&peer, refusal.reason(), &message))?;
        let mut stream = request.into_inner();
        let mut admitted = false;
        // Envoy keeps one stream per log name: the router's attempts log or the requests'.
        let mut attempts = false;
        while let Some(message) = stream.message().await? {
            if !admitted {
                // Envoy names its node (and the log) on a stream's first message only.
                let node = message.identifier.as_ref().and_then(|i| i.node.as_ref());
                admit(vouched.as_deref(), node)
                    .map_err(|(refusal, message)| self.telemetry.refuse(&peer, refusal.reason(), &message))?;
                attempts = message.identifier.as_ref().is_some_and(|i| i.log_name == ATTEMPTS_LOG_NAME);
                admitted = true;
            }
            if let Some(LogEntries::HttpLogs(logs)) = message.log_entries {
                if attempts {
                    let now = now_ms();
                    let refusals: Vec<(String, i64)> =
                        logs.log_entry.iter().filter_map(|e| attempt_quota(e, now)).collect();
                    self.telemetry.ingest_attempts(&refusals);
                    continue;
                }
                let records: Vec<Record> = logs.log_entry.iter().map(Record::from_entry).collect();
                self.telemetry.ingest(&records, now_ms());
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}
