//! xDS, in the order data flows: `resources` compiles the model into Envoy protos (pure),
//! `snapshot` versions them by content, `sotw` (state of the world) and `delta` (incremental)
//! run the per-connection protocol (pure, no sockets) and `server` adapts both to tonic's ADS
//! service, recording each Envoy in `clients`. `tls` (certificates, node identity),
//! `tls_incoming` (handshakes), `admission` and `limits` (per-stream request size and rate)
//! decide who may open a stream.
pub mod admission;
pub mod clients;
pub mod delta;
pub mod limits;
pub mod resources;
pub mod server;
pub mod snapshot;
pub mod sotw;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod tls_incoming;

/// Type URLs of the resources we serve, in make-before-break push order: clusters and their
/// endpoints exist before the filter config, listener and routes that use them.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const PUSH_ORDER: [&str; 5] = [CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE];

/// Short names for logs, metrics labels and the admin status.
pub fn short_name(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER => "cds",
        ENDPOINT => "eds",
        EXTENSION_CONFIG => "ecds",
        LISTENER => "lds",
        ROUTE => "rds",
        _ => "other",
    }
}

/// What a request meant, in either flavour, for metrics and the admin status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A first request for a type; `resumed` when the client already holds our version.
    Subscribed {
        resumed: bool,
    },
    Ack {
        version: String,
    },
    Nack {
        version: String,
        message: String,
    },
    /// A new request carrying the nonce of our latest, already settled, response: the client
    /// changed its subscription or asks again. Answered with the current resources.
    Resubscribed,
    /// Answers a nonce that is no longer in flight (or a type we do not serve): ignored.
    Stale,
}
