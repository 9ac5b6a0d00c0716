//! Who may open an ADS stream. With TLS, the node id of a stream's first request must be one the
//! verified client certificate vouches for (`tls::node_ids`: URI SANs
//! `spiffe://aurelis/node/<id>`); plaintext (loopback only) takes the id as sent. Every refusal
//! is logged and counted in `aurelis_cp_xds_refused_streams_total{reason}`, and answered with a
//! gRPC status that says why (Envoy logs it and retries with back-off).
use super::limits::StreamLimits;
use super::tls;
use crate::metrics::Metrics;
use envoy_types::pb::envoy::config::core::v3::Node;
use rustls::pki_types::CertificateDer;
use tonic::Status;

/// Who may open a stream, and within which limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    pub identity: NodeIdentity,
    pub limits: StreamLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeIdentity {
    /// Plaintext on loopback (`--xds-plaintext-loopback`, development only): the node id is
    /// taken as sent.
    AsSent,
    /// xDS over TLS: the node id must be one the verified client certificate vouches for.
    FromCertificate,
}

/// Why a stream was refused: the `reason` label of `aurelis_cp_xds_refused_streams_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// TLS is on but the connection carries no client certificate (cannot happen with tonic's
    /// required client auth; kept so a configuration change cannot open the door silently).
    NoCertificate,
    /// The certificate has no `spiffe://aurelis/node/<id>` URI SAN.
    NoNodeIdentity,
    /// The first request has no node.
    NoNode,
    /// The node id is not one the certificate vouches for.
    NodeMismatch,
    RateLimited,
    RequestTooLarge,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::NoNodeIdentity => "no_node_identity",
            Refusal::NoNode => "no_node",
            Refusal::NodeMismatch => "node_mismatch",
            Refusal::RateLimited => "rate_limited",
            Refusal::RequestTooLarge => "request_too_large",
        }
    }
}

/// The node ids a stream may use: `None` when any is taken as sent (plaintext), else those the
/// client's certificate names (at least one, or the stream is refused before it starts).
pub(crate) fn vouched_node_ids(
    identity: NodeIdentity,
    peer_certs: Option<&[CertificateDer<'static>]>,
) -> Result<Option<Vec<String>>, (Refusal, String)> {
    if identity == NodeIdentity::AsSent {
        return Ok(None);
    }
    // tonic hands over the chain rustls verified; the first certificate is the client's own.
    // Without one (cannot happen while client auth is required) nothing is vouched for.
    let Some(leaf) = peer_certs.and_then(|c| c.first()) else {
        return Err((Refusal::NoCertificate, "a client certificate is required".into()));
    };
    let ids = tls::node_ids(leaf);
    if ids.is_empty() {
        let message = format!("the client certificate names no node (URI SAN {}<node id>)", tls::NODE_URI_PREFIX);
        return Err((Refusal::NoNodeIdentity, message));
    }
    Ok(Some(ids))
}

/// Logs and counts a refusal; returns the status the client gets.
pub(super) fn refuse(metrics: &Metrics, peer: &str, refusal: Refusal, message: &str) -> Status {
    metrics.xds_refused_streams.with_label_values(&[refusal.reason()]).inc();
    tracing::warn!(%peer, reason = refusal.reason(), "xDS stream refused: {message}");
    match refusal {
        Refusal::RateLimited => Status::resource_exhausted(message),
        Refusal::RequestTooLarge => Status::out_of_range(message),
        _ => Status::permission_denied(message),
    }
}

/// The first request's node against what the certificate vouches for (`None`: plaintext,
/// nothing to check).
pub(crate) fn admit(vouched: Option<&[String]>, node: Option<&Node>) -> Result<(), (Refusal, String)> {
    let Some(vouched) = vouched else { return Ok(()) };
    let Some(node) = node.filter(|n| !n.id.is_empty()) else {
        return Err((Refusal::NoNode, "the first request must carry the node (with its id)".into()));
    };
    if vouched.contains(&node.id) {
        return Ok(());
    }
    Err((
        Refusal::NodeMismatch,
        format!("node id `{}` does not match the client certificate (it names {})", node.id, vouched.join(", ")),
    ))
}
