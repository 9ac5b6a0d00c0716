//! One multiplexed, self-reconnecting connection for either deployment: `ConnectionManager` for a
//! single Redis, `ClusterConnection` for Redis Cluster. Both implement `ConnectionLike`, so the
//! store's commands are written once.
//!
//! Reconnect tuning. A dead Redis must cost each request milliseconds, so:
//! - connections are created lazily: the service starts (and reports not-ready) while Redis is down;
//! - no reconnect retries inside the client: a failed connection attempt fails the requests that
//!   waited for it, and the next request starts a fresh attempt. Without this, requests would
//!   queue behind seconds of exponential backoff;
//! - connection attempts time out after `connect_timeout`, so a black-holed address frees the slot
//!   for a new attempt soon;
//! - the store still wraps every call in its own per-operation timeout (the hard bound);
//! - after a failure, the whole client is replaced (at most once per `HEAL_INTERVAL`). The
//!   clients only reconnect by themselves after I/O errors: a handshake refused for another
//!   reason (wrong password later fixed, `LOADING` while Redis restarts) or a half-open TCP
//!   connection that only times out would otherwise stay broken until the process restarts.
//!
//! TLS is chosen by the `rediss://` scheme; `TlsOptions` adds a private CA and a client
//! certificate; they are kept so that a client replaced after a failure uses them too.
use super::tls::TlsOptions;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Shortest time between two replacements of the client.
pub const HEAL_INTERVAL: Duration = Duration::from_secs(1);

/// Where Redis is. Passwords given here override any in the URLs.
#[derive(Clone)]
pub enum Target {
    /// `redis://` or `rediss://` (TLS) URL of a single server (or a proxy in front of several).
    Single { url: String, password: Option<String> },
    /// Seed node URLs of a Redis Cluster; the topology is discovered from them.
    Cluster { nodes: Vec<String>, password: Option<String> },
}

impl Target {
    fn urls(&self) -> Vec<&str> {
        match self {
            Target::Single { url, .. } => vec![url.as_str()],
            Target::Cluster { nodes, .. } => nodes.iter().map(String::as_str).collect(),
        }
    }

    pub fn uses_tls(&self) -> bool {
        self.urls().iter().any(|u| u.starts_with("rediss://"))
    }

    /// Whether every URL is `rediss://`, as a CA or client certificate needs.
    pub fn all_tls(&self) -> bool {
        self.urls().iter().all(|u| u.starts_with("rediss://"))
    }
}

/// One client handle; clones share its multiplexed connection(s).
#[derive(Clone)]
pub enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The current handle, replaceable when it stops recovering by itself. Cheap to clone.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    tls: TlsOptions,
    op_timeout: Duration,
    current: RwLock<Handle>,
    last_built: Mutex<Instant>,
}

impl Conn {
    /// Builds the client without contacting Redis.
    pub fn new(target: &Target, tls: &TlsOptions, op_timeout: Duration) -> RedisResult<Conn> {
        if tls.is_set() && !target.all_tls() {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a TLS CA or client certificate needs rediss:// URLs only",
            )));
        }
        let handle = build(target, tls, op_timeout)?;
        Ok(Conn {
            inner: Arc::new(Inner {
                target: target.clone(),
                tls: tls.clone(),
                op_timeout,
                current: RwLock::new(handle),
                last_built: Mutex::new(Instant::now()),
            }),
        })
    }

    pub fn handle(&self) -> Handle {
        self.inner.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Called after a failed call: replaces the client unless that was done recently.
    /// Requests in flight keep the old handle until they finish.
    pub fn heal(&self) {
        let mut last_built = self.inner.last_built.lock().unwrap_or_else(PoisonError::into_inner);
        if last_built.elapsed() < HEAL_INTERVAL {
            return;
        }
        *last_built = Instant::now();
        // The target was built once already, so building again cannot fail on it.
        if let Ok(handle) = build(&self.inner.target, &self.inner.tls, self.inner.op_timeout) {
            *self.inner.current.write().unwrap_or_else(PoisonError::into_inner) = handle;
            tracing::info!("redis client replaced after a failure");
        }
    }
}

/// Whether a failed call points at the connection rather than the command. A fresh client
/// helps after I/O errors, refused handshakes or a topology change (READONLY after a failover,
/// CLUSTERDOWN); it does not when the server refused one command (out of memory, wrong type),
/// where rebuilding would only add handshakes to a Redis that is already struggling.
pub fn connection_suspect(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    match error.kind() {
        ErrorKind::Server(
            ServerErrorKind::ReadOnly
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => true,
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::UnexpectedReturnType => false,
        _ => true,
    }
}

fn build(target: &Target, tls: &TlsOptions, op_timeout: Duration) -> RedisResult<Handle> {
    if target.uses_tls() {
        // redis' rustls builds its config from the process-wide provider; installing fails
        // harmlessly if one already is.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let connect_timeout = connect_timeout(op_timeout);
    match target {
        Target::Single { url, password } => {
            let mut info = url.as_str().into_connection_info()?;
            if let Some(password) = password {
                let redis = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(redis);
            }
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(0)
                .set_connection_timeout(Some(connect_timeout))
                // The store's own timeout bounds each request; this one only stops a response
                // wait from outliving it by much if the caller is gone.
                .set_response_timeout(Some(connect_timeout));
            let client = match tls.certificates() {
                Some(certs) => redis::Client::build_with_tls(info, certs)?,
                None => redis::Client::open(info)?,
            };
            let manager = ConnectionManager::new_lazy_with_config(client, config)?;
            Ok(Handle::Single(manager))
        }
        Target::Cluster { nodes, password } => {
            let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                .connection_timeout(connect_timeout)
                .response_timeout(connect_timeout)
                // Retries serve MOVED/ASK redirects during resharding; keep their waits tiny.
                .retries(2)
                .min_retry_wait(1)
                .max_retry_wait(10);
            if let Some(password) = password {
                builder = builder.password(password);
            }
            if let Some(certs) = tls.certificates() {
                builder = builder.certs(certs);
            }
            let client = builder.build()?;
            Ok(Handle::Cluster(
                client.get_pending_async_connection_with_config(redis::cluster::ClusterConfig::default()),
            ))
        }
    }
}

/// How long one TCP (+TLS) connection attempt may take: ten operation timeouts, within
/// 250 ms..2 s. Longer than an operation because a handshake costs several round trips.
pub fn connect_timeout(op_timeout: Duration) -> Duration {
    (op_timeout * 10).clamp(Duration::from_millis(250), Duration::from_secs(2))
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_failures_rebuild_the_client() {
        use redis::{ErrorKind, RedisError, ServerErrorKind};
        let suspect = |kind: ErrorKind| connection_suspect(&RedisError::from((kind, "test")));
        assert!(suspect(ErrorKind::Io));
        assert!(suspect(ErrorKind::AuthenticationFailed));
        assert!(suspect(ErrorKind::Server(ServerErrorKind::ReadOnly)));
        assert!(suspect(ErrorKind::Server(ServerErrorKind::ClusterDown)));
        assert!(!suspect(ErrorKind::Server(ServerErrorKind::ResponseError)), "e.g. OOM");
        assert!(!suspect(ErrorKind::Extension), "e.g. WRONGTYPE");
        assert!(!suspect(ErrorKind::UnexpectedReturnType));
    }

    #[test]
    fn connect_timeout_is_bounded() {
        assert_eq!(connect_timeout(Duration::from_millis(50)), Duration::from_millis(500));
        assert_eq!(connect_timeout(Duration::from_millis(1)), Duration::from_millis(250));
        assert_eq!(connect_timeout(Duration::from_secs(5)), Duration::from_secs(2));
    }

    #[test]
    fn tls_is_chosen_by_scheme() {
        let plain = Target::Single { url: "redis://h:1".into(), password: None };
        let tls = Target::Cluster { nodes: vec!["redis://a:1".into(), "rediss://b:1".into()], password: None };
        assert!(!plain.uses_tls());
        assert!(tls.uses_tls());
        assert!(!tls.all_tls());
        assert!(Target::Single { url: "rediss://h:1".into(), password: None }.all_tls());
    }

    #[tokio::test]
    async fn tls_material_needs_tls_urls() {
        let tls = TlsOptions::default().with_ca(crate::store::tls::test_pki::pki().ca.into_bytes()).unwrap();
        let plain = Target::Single { url: "redis://h:1".into(), password: None };
        let err = Conn::new(&plain, &tls, Duration::from_millis(50)).err().unwrap().to_string();
        assert!(err.contains("rediss://"), "{err}");
        let mixed = Target::Cluster { nodes: vec!["rediss://a:1".into(), "redis://b:1".into()], password: None };
        assert!(Conn::new(&mixed, &tls, Duration::from_millis(50)).is_err());
        let single = Target::Single { url: "rediss://127.0.0.1:1".into(), password: None };
        assert!(Conn::new(&single, &tls, Duration::from_millis(50)).is_ok());
        let cluster = Target::Cluster { nodes: vec!["rediss://127.0.0.1:1".into()], password: None };
        assert!(Conn::new(&cluster, &tls, Duration::from_millis(50)).is_ok());
    }

    #[tokio::test]
    async fn connecting_is_lazy() {
        // Nothing listens on port 1: building must still succeed, without waiting.
        let target = Target::Single { url: "redis://127.0.0.1:1".into(), password: Some("p".into()) };
        assert!(Conn::new(&target, &TlsOptions::default(), Duration::from_millis(50)).is_ok());
        let target = Target::Cluster { nodes: vec!["redis://127.0.0.1:1".into()], password: None };
        assert!(Conn::new(&target, &TlsOptions::default(), Duration::from_millis(50)).is_ok());
    }
}
