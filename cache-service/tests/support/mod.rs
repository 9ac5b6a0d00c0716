//! Test support: private `redis-server` processes (single, TLS-only, and a 3-node Cluster) on
//! free ports, killed on drop; a test PKI; helpers to call the router and to inspect Redis.
#![allow(dead_code)]
pub mod tls;

use aurelis_cache_service::api::{self, Access, AppState, Defaults};
use aurelis_cache_service::metrics::Metrics;
use aurelis_cache_service::store::{Store, StoreOptions, Target, TlsOptions};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// A free port whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
    /// Listens only for TLS, on `port` (`--port 0 --tls-port <port>`).
    tls: bool,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("aurelis-cache-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server =
            RedisServer { port, child: None, dir, extra: extra.iter().map(|s| s.to_string()).collect(), tls: false };
        server.launch();
        server
    }

    /// A server that speaks only TLS, with the PKI's server certificate; `auth_clients` is
    /// Redis' `tls-auth-clients` (`no`, `optional`, `yes`: client certificates from the PKI's CA).
    pub fn start_tls(pki: &tls::TestPki, auth_clients: &str, extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("aurelis-cache-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |p: &PathBuf| p.display().to_string();
        let mut args = vec![
            "--tls-cert-file".to_string(),
            path(&pki.server_cert),
            "--tls-key-file".to_string(),
            path(&pki.server_key),
            "--tls-ca-cert-file".to_string(),
            path(&pki.ca),
            "--tls-auth-clients".to_string(),
            auth_clients.to_string(),
            "--logfile".to_string(),
            path(&dir.join("redis.log")),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = RedisServer { port, child: None, dir, extra: args, tls: true };
        server.launch();
        server
    }

    /// A cluster-enabled node (not yet part of a cluster).
    fn start_cluster_node() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("aurelis-cache-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join(format!("nodes-{port}.conf")).display().to_string();
        let extra = vec!["--cluster-enabled".into(), "yes".into(), "--cluster-config-file".into(), conf];
        let mut server = RedisServer { port, child: None, dir, extra, tls: false };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let ports: &[&str] = if self.tls { &["--port", "0", "--tls-port", &port] } else { &["--port", &port] };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        if self.tls {
            self.wait_for_tls_listener();
        } else {
            wait_for_ping(self.port);
        }
    }

    /// A TLS-only server cannot be PINGed in clear text: wait until it accepts TCP connections,
    /// failing at once (with its log) if it exited, e.g. because it was built without TLS.
    fn wait_for_tls_listener(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                panic!("redis-server (TLS on port {}) exited with {status}:\n{log}", self.port);
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server (TLS on port {}) did not start", self.port);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: no shutdown handshake with clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// `redis-cli` against this (clear-text) server; stdout as text.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the server answers on its port (PING, or NOAUTH when a password is required).
fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 64];
            if stream.write_all(b"PING\r\n").is_ok() {
                if let Ok(n) = stream.read(&mut buf) {
                    let reply = String::from_utf8_lossy(&buf[..n]);
                    if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
                        return;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server on port {port} did not start");
}

/// Three primaries, no replicas, all 16384 slots covered.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_cluster_node()).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !nodes.iter().all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

pub const MAX_VALUE_BYTES: usize = 64 * 1024;

pub fn store(target: &Target, op_timeout: Duration) -> Store {
    Store::connect(target, StoreOptions { op_timeout, max_value_bytes: MAX_VALUE_BYTES }).unwrap()
}

pub fn store_with_tls(target: &Target, tls: &TlsOptions, op_timeout: Duration) -> Store {
    Store::connect_with_tls(target, tls, StoreOptions { op_timeout, max_value_bytes: MAX_VALUE_BYTES }).unwrap()
}

/// The service's state as `main` builds it, with test limits.
pub fn app(target: &Target) -> AppState {
    app_with_tls(target, &TlsOptions::default())
}

pub fn app_with_tls(target: &Target, tls: &TlsOptions) -> AppState {
    AppState {
        // Generous for loaded CI machines; the fail-fast tests use their own.
        store: store_with_tls(target, tls, Duration::from_millis(500)),
        metrics: Arc::new(Metrics::new()),
        defaults: Defaults { ttl: Duration::from_secs(3600), compress_min_bytes: 1024 },
        // Open: the contract is about storage; `tests/http.rs` covers tokens and namespaces.
        access: Access::Open,
        l3: None,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    /// `x-aurelis-cache-level` (set on L3 answers).
    pub cache_level: Option<String>,
    /// `x-aurelis-origin` (set on Redis answers of entries put there from L3).
    pub origin: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn message(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)));
        v["error"]["message"].as_str().unwrap_or_else(|| panic!("not an error body: {v}")).to_string()
    }
}

pub async fn call(state: &AppState, req: Request<Body>) -> Reply {
    let resp: Response<Body> = api::router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let header = |name: &str| resp.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let (content_type, cache_level, origin) = (header("content-type"), header(api::CACHE_LEVEL), header(api::ORIGIN));
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, content_type, cache_level, origin, body }
}

pub fn get(path: &str, namespace: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(ns) = namespace {
        b = b.header("x-aurelis-namespace", ns);
    }
    b.body(Body::empty()).unwrap()
}

pub fn put(path: &str, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Request<Body> {
    let mut b = Request::put(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.into())).unwrap()
}

pub fn delete(path: &str, namespace: Option<&str>) -> Request<Body> {
    let mut b = Request::delete(path);
    if let Some(ns) = namespace {
        b = b.header("x-aurelis-namespace", ns);
    }
    b.body(Body::empty()).unwrap()
}

/// Direct Redis access, to check what the service wrote.
pub enum Raw {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    pub async fn connect(target: &Target) -> Raw {
        match target {
            Target::Single { url, password } => {
                let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).unwrap();
                if let Some(p) = password {
                    let settings = info.redis_settings().clone().set_password(p);
                    info = info.set_redis_settings(settings);
                }
                let client = redis::Client::open(info).unwrap();
                Raw::Single(client.get_multiplexed_async_connection().await.unwrap())
            }
            Target::Cluster { nodes, .. } => {
                let client = redis::cluster::ClusterClient::new(nodes.clone()).unwrap();
                Raw::Cluster(client.get_async_connection().await.unwrap())
            }
        }
    }

    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> T {
        match self {
            Raw::Single(c) => cmd.query_async(c).await.unwrap(),
            Raw::Cluster(c) => cmd.query_async(c).await.unwrap(),
        }
    }

    pub async fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    pub async fn ttl(&mut self, key: &str) -> i64 {
        self.query(redis::cmd("TTL").arg(key)).await
    }
}

/// The `aurelis-cache` binary, killed on drop; `log` holds every line it printed so far.
pub struct Service {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Service {
    /// Everything the service printed (stdout and stderr) up to now.
    pub fn log(&mut self) -> String {
        self.log.extend(self.lines.try_iter());
        self.log.join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on ephemeral (loopback) ports, unauthenticated; returns it, its settings
/// line and its API base URL.
pub fn start_service(args: &[&str]) -> (Service, String, String) {
    let mut with_flag = vec!["--allow-unauthenticated"];
    with_flag.extend_from_slice(args);
    start_service_with_env(&with_flag, &[])
}

pub fn start_service_with_env(args: &[&str], env: &[(&str, &str)]) -> (Service, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aurelis-cache"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        // Hermetic: only `env` may give it a token.
        .env_remove("AURELIS_CACHE_API_TOKEN")
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read on threads that keep draining, so the service never writes to a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    for stream in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut service = Service { child, lines: rx, log: Vec::new() };
    let (mut settings, mut base) = (None, None);
    while let Ok(line) = service.lines.recv_timeout(Duration::from_secs(10)) {
        service.log.push(line.clone());
        if let Some((_, rest)) = line.split_once("settings: ") {
            settings = Some(rest.to_string());
        }
        if let Some((_, rest)) = line.split_once("API on ") {
            base = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("the service printed no API address:\n{}", service.log()));
    (service, settings.expect("the service printed no settings line"), base)
}
