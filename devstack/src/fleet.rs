//! `Fleet::start`: the control plane owning Envoy's configuration over ADS, as in production.
//! Envoys start from a bootstrap that knows only the control plane; mocks stand in for the
//! providers. Tests can stop and restart the control plane or an Envoy, and add Envoys.
use crate::host::{self, FilterHost};
use crate::paths;
use crate::pki::Pki;
use crate::process::{free_port, wait_until, Managed};
use crate::secrets::{generate_l3_keys, L2Credentials, CACHE_TOKEN_ENV, L3_KEYS_ENV};
use crate::stack::{http_get, redis_dbsize, redis_ping};
use anyhow::{anyhow, Context, Result};
use aurelis_control_plane::model::Model;
use aurelis_control_plane::render;
use aurelis_control_plane::xds::resources::{ads_bootstrap, AdsBootstrap, AdsTls};
use aurelis_mock_upstream::{MockConfig, MockUpstream};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The admin token the fleet's control plane is started with (the control plane refuses
/// tokens under 32 bytes). Fixed and printed by `make run`: use your own anywhere else.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-not-a-secret-0123456789";

#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The model file. `{{mock0}}`, `{{mock1}}`, ... are replaced by the mocks' ports and
    /// `{{listen_port}}` by the gateway port (0 = any free port). `None`: one mock, the
    /// default model's shape (`default_model`).
    pub model: Option<String>,
    /// One mock provider per entry.
    pub mocks: Vec<MockConfig>,
    pub envoy_workers: u32,
    pub redis: bool,
    /// Starts Redis and the L2 cache service (`{{cache_service}}` in the model is its address).
    pub cache_service: bool,
    /// Where the control plane tells Envoys the filter module is; default: the built one.
    pub wasm_path: Option<PathBuf>,
    /// Fixed ports for `make run`; `None` picks free ones.
    pub listen_port: Option<u16>,
    pub envoy_admin_port: Option<u16>,
    pub mock_ports: Vec<u16>,
    pub redis_port: Option<u16>,
    pub cp_admin_port: Option<u16>,
    pub cp_metrics_port: Option<u16>,
    pub cache_service_port: Option<u16>,
    pub xds_port: Option<u16>,
    pub envoy_log_level: String,
    /// Passed to the control plane (e.g. `GITHUB_TOKEN` for the GitHub Models file).
    pub cp_env: Vec<(String, String)>,
    /// Passed to every Envoy (for headers the model takes from `envoy_env`), after the L2
    /// secrets (so they may be overridden); `add_envoy_with_env` adds more for one Envoy.
    pub envoy_env: Vec<(String, String)>,
    /// Passed to the cache service, after its defaults and its token (so `RUST_LOG` or
    /// `AURELIS_CACHE_API_TOKEN` may be overridden).
    pub cache_service_env: Vec<(String, String)>,
    /// The L2 token and signing key given to the cache service and every Envoy; `None`: fresh
    /// random ones for this fleet (`Fleet::l2` has them).
    pub l2_credentials: Option<L2Credentials>,
    /// Envoys speak incremental (delta) xDS instead of state of the world.
    pub delta: bool,
    /// The Wasm module or the native dynamic module (the model's `listener.filter` is set to
    /// it); `None`: from `AURELIS_FILTER` (`host`).
    pub filter_host: Option<FilterHost>,
    /// xDS over TLS with client certificates from a throw-away CA (`pki`); otherwise plaintext
    /// on loopback (`--xds-plaintext-loopback`, what `make run` uses).
    pub xds_tls: bool,
    /// The control plane's telemetry history (`--history`): a PostgreSQL URL; `None`: the
    /// embedded database in a file of the fleet's directory (kept across control-plane restarts).
    pub history: Option<String>,
    /// The cache service's persistent L3 (needs `cache_service`), sealed with a key fresh for
    /// this fleet; `None`: no L3.
    pub l3: Option<L3Store>,
    /// How often Envoys send their stats to the control plane; `None`: `FLEET_STATS_FLUSH_MS`.
    pub stats_flush_ms: Option<u64>,
    /// A fixed overload-manager heap budget for every Envoy (a tiny one makes heap pressure);
    /// `None`: sized from the L1 budget as shipped.
    pub envoy_max_heap_bytes: Option<u64>,
}

/// Test fleets flush stats every second: the control plane's view is fresh within a second,
/// so tests wait on it briefly.
pub const FLEET_STATS_FLUSH_MS: u64 = 1000;

/// Where the fleet's cache service keeps L3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L3Store {
    /// The embedded file database, `l3.db` in the fleet's directory (kept across restarts of
    /// the cache service).
    Embedded,
    /// A store URL (`postgres://…`).
    Url(String),
}

/// The client certificate an Envoy presents to the control plane over xDS TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// One vouching for its own node id (the normal case).
    Own,
    /// None at all (the TLS handshake must fail).
    Missing,
    /// A valid certificate, but for another node id (the stream must be refused).
    OfNode(String),
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            model: None,
            mocks: vec![MockConfig::default()],
            envoy_workers: 1,
            redis: false,
            cache_service: false,
            wasm_path: None,
            listen_port: None,
            envoy_admin_port: None,
            mock_ports: Vec::new(),
            redis_port: None,
            cp_admin_port: None,
            cp_metrics_port: None,
            cache_service_port: None,
            xds_port: None,
            envoy_log_level: "warning".into(),
            cp_env: Vec::new(),
            envoy_env: Vec::new(),
            cache_service_env: Vec::new(),
            l2_credentials: None,
            delta: false,
            filter_host: None,
            xds_tls: false,
            history: None,
            l3: None,
            stats_flush_ms: None,
            envoy_max_heap_bytes: None,
        }
    }
}

/// A filter config (YAML) with explicit anonymous access and otherwise defaults, for tests
/// that need traffic, not identities.
pub const ANONYMOUS: &str = "{ auth: { anonymous: {} } }";

/// The default model's shape on the given mock port: models `gpt-4o-mini` and `gpt-4o` on the
/// one mock provider, probed on `/v1/models`.
pub fn default_model(filter_json: &str) -> String {
    format!(
        "listener: {{ address: 127.0.0.1, port: {{{{listen_port}}}} }}\n\
         providers:\n\
         \x20 - name: mock\n\
         \x20   base_url: http://127.0.0.1:{{{{mock0}}}}/v1\n\
         \x20   protocol: http2\n\
         \x20   health_check: {{ path: /v1/models, interval_ms: 300, timeout_ms: 250 }}\n\
         models:\n\
         \x20 - {{ name: gpt-4o-mini, providers: [{{ provider: mock, weight: 100 }}] }}\n\
         \x20 - {{ name: gpt-4o, providers: [{{ provider: mock, weight: 100 }}] }}\n\
         filter: {filter_json}\n"
    )
}

pub struct ControlPlane {
    process: Option<Managed>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub admin_url: String,
    pub metrics_url: String,
    pub xds_port: u16,
}

pub struct GatewayEnvoy {
    pub process: Managed,
    pub admin_url: String,
    pub gateway_url: String,
    bootstrap: PathBuf,
    node_id: String,
    /// This Envoy's own environment on top of `FleetOptions::envoy_env` (kept for restarts).
    env: Vec<(String, String)>,
    workers: u32,
    filter_host: FilterHost,
}

pub struct Fleet {
    pub mocks: Vec<MockUpstream>,
    pub redis: Option<Managed>,
    pub redis_port: Option<u16>,
    pub cache_service: Option<Managed>,
    pub cache_service_port: Option<u16>,
    /// Where the cache service serves `/metrics` (the same port across its restarts).
    pub cache_service_metrics_port: Option<u16>,
    pub control_plane: ControlPlane,
    pub envoys: Vec<GatewayEnvoy>,
    /// The L2 token (cache service and Envoys) and signing key (Envoys) of this fleet.
    pub l2: L2Credentials,
    /// The CA and certificates when `FleetOptions::xds_tls`.
    pub pki: Option<Pki>,
    options: FleetOptions,
    dir: tempfile::TempDir,
}

impl Fleet {
    pub fn start(mut options: FleetOptions) -> Result<Fleet> {
        let filter_host = options.filter_host.map_or_else(host::from_env, Ok)?;
        options.filter_host = Some(filter_host);
        let dir = tempfile::Builder::new().prefix("aurelis-fleet-").tempdir()?;
        let mut mocks = Vec::new();
        for (i, config) in options.mocks.iter().enumerate() {
            let mock = match options.mock_ports.get(i) {
                Some(port) => MockUpstream::start_on(([127, 0, 0, 1], *port).into(), config.clone()),
                None => MockUpstream::start(config.clone()),
            }
            .context("starting a mock upstream")?;
            mocks.push(mock);
        }
        let l2 = match &options.l2_credentials {
            Some(given) => given.clone(),
            None => L2Credentials::generate()?,
        };
        let (redis, redis_port) = if options.redis || options.cache_service {
            let port = options.redis_port.map_or_else(free_port, Ok)?;
            (Some(start_redis(port, dir.path())?), Some(port))
        } else {
            (None, None)
        };
        if let Some(store) = &options.l3 {
            let url = match store {
                L3Store::Embedded => format!("sqlite:{}", dir.path().join("l3.db").display()),
                L3Store::Url(url) => url.clone(),
            };
            // First, so a test's own `cache_service_env` still overrides them; kept in the
            // options, so a restarted service opens the same L3 with the same key.
            let l3_env = [("AURELIS_L3_STORE".to_string(), url), (L3_KEYS_ENV.to_string(), generate_l3_keys()?)];
            options.cache_service_env.splice(0..0, l3_env);
        }
        let (cache_service, cache_service_port, cache_service_metrics_port) =
            match redis_port.filter(|_| options.cache_service) {
                Some(redis_port) => {
                    let ports = (options.cache_service_port.map_or_else(free_port, Ok)?, free_port()?);
                    let env = &options.cache_service_env;
                    (Some(start_cache_service(ports, redis_port, &l2, env, dir.path())?), Some(ports.0), Some(ports.1))
                }
                None => (None, None, None),
            };
        let model_path = match &options.model {
            Some(template) => {
                let mut text = template.replace("{{listen_port}}", &options.listen_port.unwrap_or(0).to_string());
                if let Some(port) = cache_service_port {
                    text = text.replace("{{cache_service}}", &format!("127.0.0.1:{port}"));
                }
                for (i, mock) in mocks.iter().enumerate() {
                    text = text.replace(&format!("{{{{mock{i}}}}}"), &mock.port().to_string());
                }
                let path = dir.path().join("model.yaml");
                std::fs::write(&path, with_filter_host(Some(&text), filter_host)?.unwrap_or(text))?;
                Some(path)
            }
            None => match with_filter_host(None, filter_host)? {
                Some(text) => {
                    let path = dir.path().join("model.yaml");
                    std::fs::write(&path, text)?;
                    Some(path)
                }
                None => None,
            },
        };
        let wasm = match (&options.wasm_path, filter_host) {
            (Some(p), _) => p.clone(),
            (None, FilterHost::Wasm) => paths::wasm()?,
            // Not loaded: the native filter needs no Wasm build.
            (None, FilterHost::Native) => PathBuf::from(render::SHIPPED_WASM_PATH),
        };
        let xds_port = options.xds_port.map_or_else(free_port, Ok)?;
        let admin_port = options.cp_admin_port.map_or_else(free_port, Ok)?;
        let metrics_port = options.cp_metrics_port.map_or_else(free_port, Ok)?;
        let mut args = vec![
            "serve".to_string(),
            format!("--xds-listen=127.0.0.1:{xds_port}"),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
            format!("--metrics-listen=127.0.0.1:{metrics_port}"),
            format!("--wasm-path={}", wasm.display()),
            format!(
                "--history={}",
                options.history.clone().unwrap_or_else(|| dir.path().join("history.db").display().to_string())
            ),
        ];
        if let Some(path) = &model_path {
            args.push(format!("--model={}", path.display()));
        }
        if let Some(port) = redis_port {
            args.push(format!("--l2-redis-url=redis://127.0.0.1:{port}"));
        }
        let pki = if options.xds_tls {
            let pki = Pki::create(&dir.path().join("pki"))?;
            let server = pki.control_plane()?;
            args.push(format!("--xds-tls-cert-file={}", server.cert.display()));
            args.push(format!("--xds-tls-key-file={}", server.key.display()));
            args.push(format!("--xds-tls-client-ca-file={}", pki.ca_file.display()));
            Some(pki)
        } else {
            args.push("--xds-plaintext-loopback".to_string());
            None
        };
        let mut env = vec![("AURELIS_ADMIN_TOKEN".to_string(), ADMIN_TOKEN.to_string())];
        if options.cache_service {
            // So an admin purge also reaches the cache service (and its L3).
            env.push((CACHE_TOKEN_ENV.to_string(), l2.token.clone()));
        }
        env.extend(options.cp_env.iter().cloned());
        let mut control_plane = ControlPlane {
            process: None,
            args,
            env,
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            xds_port,
        };
        control_plane.start(dir.path())?;
        let mut fleet = Fleet {
            mocks,
            redis,
            redis_port,
            cache_service,
            cache_service_port,
            cache_service_metrics_port,
            control_plane,
            envoys: Vec::new(),
            l2,
            pki,
            options,
            dir,
        };
        fleet.add_envoy()?;
        Ok(fleet)
    }

    /// Starts one more Envoy from the ADS bootstrap and waits until it serves the gateway.
    pub fn add_envoy(&mut self) -> Result<usize> {
        self.add_envoy_with_env(&[])
    }

    /// Like `add_envoy`, with environment variables for this Envoy only (after
    /// `FleetOptions::envoy_env`, so they override it).
    pub fn add_envoy_with_env(&mut self, env: &[(&str, &str)]) -> Result<usize> {
        self.spawn_envoy(env, &ClientCert::Own, Ready::Serving)
    }

    /// Starts one more Envoy presenting `cert` on xDS TLS and waits only for its admin
    /// endpoint: a refused Envoy never serves. The test then waits for the refusal it expects.
    pub fn add_envoy_presenting(&mut self, cert: &ClientCert) -> Result<usize> {
        self.spawn_envoy(&[], cert, Ready::AdminOnly)
    }

    fn spawn_envoy(&mut self, env: &[(&str, &str)], cert: &ClientCert, ready: Ready) -> Result<usize> {
        let index = self.envoys.len();
        let node_id = format!("envoy-{index}");
        let admin_port = if index == 0 { self.options.envoy_admin_port.unwrap_or(0) } else { 0 };
        let bootstrap = self.dir.path().join(format!("{node_id}.json"));
        let files = match (&self.pki, cert) {
            (None, _) => None,
            (Some(pki), ClientCert::OfNode(other)) => Some((pki.node(other)?, pki.ca_file.display().to_string())),
            (Some(pki), _) => Some((pki.node(&node_id)?, pki.ca_file.display().to_string())),
        };
        let paths = files.as_ref().map(|(f, ca)| (f.cert.display().to_string(), f.key.display().to_string(), ca));
        let mut config = render::to_json(&ads_bootstrap(AdsBootstrap {
            node_id: &node_id,
            admin_address: "127.0.0.1",
            admin_port,
            xds_host: "127.0.0.1",
            xds_port: self.control_plane.xds_port,
            delta: self.options.delta,
            tls: paths.as_ref().map(|(cert_file, key_file, ca_file)| AdsTls { cert_file, key_file, ca_file }),
            l1_max_bytes: aurelis_core::config::FilterConfig::default().cache.max_bytes,
            stats_flush_ms: self.options.stats_flush_ms.unwrap_or(FLEET_STATS_FLUSH_MS),
            max_heap_bytes: self.options.envoy_max_heap_bytes,
        }))?;
        if *cert == ClientCert::Missing {
            // The product never renders TLS without a client certificate; this Envoy stands for
            // a client that has none.
            let context = &mut config["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
                ["common_tls_context"];
            context.as_object_mut().and_then(|c| c.remove("tls_certificates"));
        }
        std::fs::write(&bootstrap, serde_json::to_vec_pretty(&config)?)?;
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let envoy = start_envoy(&bootstrap, &node_id, &self.options, &self.l2, env, self.dir.path(), ready)?;
        self.envoys.push(envoy);
        Ok(index)
    }

    /// The build of the filter this fleet's Envoys run.
    pub fn filter_host(&self) -> FilterHost {
        self.options.filter_host.unwrap_or_default()
    }

    pub fn envoy(&self) -> &GatewayEnvoy {
        &self.envoys[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.envoys[0].gateway_url)
    }

    /// Kills an Envoy and starts it again from the same bootstrap (a fresh process: it must
    /// receive the whole configuration again).
    pub fn restart_envoy(&mut self, index: usize) -> Result<()> {
        let old = &mut self.envoys[index];
        old.process.kill();
        let (bootstrap, node_id, env) = (old.bootstrap.clone(), old.node_id.clone(), old.env.clone());
        self.envoys[index] =
            start_envoy(&bootstrap, &node_id, &self.options, &self.l2, env, self.dir.path(), Ready::Serving)?;
        Ok(())
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        let processes = self
            .envoys
            .iter()
            .map(|e| &e.process)
            .chain(self.redis.iter())
            .chain(self.cache_service.iter())
            .chain(self.control_plane.process.iter());
        for p in processes {
            out.push_str(&format!("----- {} ({}) -----\n{}\n", p.name, p.log_path.display(), p.log()));
        }
        out
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills `redis-server` (the L2 store goes away mid-traffic).
    pub fn stop_redis(&mut self) {
        if let Some(mut redis) = self.redis.take() {
            redis.kill();
        }
    }

    /// Starts `redis-server` again on the same port (empty: nothing was persisted).
    pub fn start_redis(&mut self) -> Result<()> {
        let port = self.redis_port.ok_or_else(|| anyhow!("this fleet has no Redis"))?;
        self.redis = Some(start_redis(port, self.dir.path())?);
        Ok(())
    }

    pub fn stop_cache_service(&mut self) {
        if let Some(mut service) = self.cache_service.take() {
            service.kill();
        }
    }

    pub fn start_cache_service(&mut self) -> Result<()> {
        let (ports, redis) = self
            .cache_service_port
            .zip(self.cache_service_metrics_port)
            .zip(self.redis_port)
            .ok_or_else(|| anyhow!("no cache service"))?;
        let env = &self.options.cache_service_env;
        self.cache_service = Some(start_cache_service(ports, redis, &self.l2, env, self.dir.path())?);
        Ok(())
    }

    /// Sum of a cache service metric's samples whose line contains every `labels` fragment
    /// (0 when the service is down).
    pub fn cache_service_metric(&self, name: &str, labels: &[&str]) -> f64 {
        let Some(port) = self.cache_service_metrics_port else { return 0.0 };
        let text = http_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap_or_default();
        sum_samples(&text, name, labels)
    }

    /// How many keys Redis holds (`DBSIZE`; 0 when it is down).
    pub fn redis_keys(&self) -> u64 {
        self.redis_port.and_then(redis_dbsize).unwrap_or(0)
    }

    /// How many cache entries Redis holds (`<namespace>:e:<key>`; not their indexes, nor the
    /// cache service's refill sentinel).
    pub fn redis_entries(&self) -> u64 {
        self.redis_port.and_then(|port| crate::stack::redis_count_keys(port, "*:e:*")).unwrap_or(0)
    }

    pub fn stop_control_plane(&mut self) {
        if let Some(mut p) = self.control_plane.process.take() {
            p.interrupt(Duration::from_secs(10));
        }
    }

    pub fn start_control_plane(&mut self) -> Result<()> {
        let dir = self.dir.path().to_path_buf();
        self.control_plane.start(&dir)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== aurelis fleet logs (test failed) =====\n{}", self.logs());
        }
    }
}

impl ControlPlane {
    fn start(&mut self, dir: &Path) -> Result<()> {
        let mut cmd = Command::new(paths::control_plane()?);
        cmd.args(&self.args).env("RUST_LOG", "info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let starts = std::fs::read_dir(dir)?
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("control-plane")))
            .count();
        let name = if starts == 0 { "control-plane".to_string() } else { format!("control-plane-{starts}") };
        let mut process = Managed::spawn(&name, cmd, dir)?;
        let url = format!("{}/healthz", self.admin_url);
        wait_until("control plane /healthz", READY_TIMEOUT, || {
            process.check_alive()?;
            Ok(http_get(&url).is_ok())
        })?;
        self.process = Some(process);
        Ok(())
    }

    /// An admin read with the token (every `/v1` route needs it).
    pub fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.admin_url);
        let response = ureq::get(&url)
            .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .timeout(Duration::from_secs(5))
            .call()
            .map_err(|e| anyhow!("GET {url}: {e}"))?;
        Ok(serde_json::from_str(&response.into_string()?)?)
    }

    /// An admin write with the token; returns the status and the JSON body (errors included).
    pub fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.send("PUT", path, body, Some(ADMIN_TOKEN))
    }

    pub fn send(&self, method: &str, path: &str, body: &Value, token: Option<&str>) -> Result<(u16, Value)> {
        let mut request = ureq::request(method, &format!("{}{path}", self.admin_url)).timeout(Duration::from_secs(5));
        if let Some(token) = token {
            request = request.set("authorization", &format!("Bearer {token}"));
        }
        let response = match request.send_json(body.clone()) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(anyhow!("{method} {path}: {e}")),
        };
        let status = response.status();
        Ok((status, serde_json::from_str(&response.into_string()?).unwrap_or(Value::Null)))
    }

    /// Sum of a control plane metric's samples whose line contains every `labels` fragment.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = http_get(&self.metrics_url).unwrap_or_default();
        sum_samples(&text, name, labels)
    }
}

/// Sum of the samples of metric `name` in a Prometheus text whose line has every `labels` fragment.
fn sum_samples(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

impl GatewayEnvoy {
    /// One counter from Envoy's stats (the full, untagged name).
    pub fn counter(&self, name: &str) -> u64 {
        crate::stack::stat_after_flush(&self.admin_url, name, self.workers, self.filter_host)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway_url)
    }
}

/// What `start_envoy` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    /// The gateway listener pushed over ADS is bound.
    Serving,
    /// Only Envoy's admin endpoint (for an Envoy the control plane must refuse).
    AdminOnly,
}

fn start_envoy(
    bootstrap: &Path,
    node_id: &str,
    options: &FleetOptions,
    l2: &L2Credentials,
    env: Vec<(String, String)>,
    dir: &Path,
    ready: Ready,
) -> Result<GatewayEnvoy> {
    let admin_file = dir.join(format!("{node_id}-admin-address"));
    let _ = std::fs::remove_file(&admin_file);
    let mut cmd = Command::new(paths::envoy()?);
    cmd.arg("-c")
        .arg(bootstrap)
        .arg("--concurrency")
        .arg(options.envoy_workers.to_string())
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg(&options.envoy_log_level)
        .arg("--admin-address-path")
        .arg(&admin_file);
    // Hermetic: secrets in the shell running the tests must not reach Envoys that should lack
    // them. An empty value counts as unset for the filter, so tests can take one away.
    cmd.env_remove(aurelis_core::cache::l2::TOKEN_ENV).env_remove(aurelis_core::cache::sealed::SIGNING_KEY_ENV);
    let filter_host = options.filter_host.unwrap_or_default();
    let host_env = host::envoy_env(filter_host)?;
    for (k, v) in l2.envoy_env().iter().chain(&host_env).chain(&options.envoy_env).chain(&env) {
        cmd.env(k, v);
    }
    let mut process = Managed::spawn(node_id, cmd, dir)?;
    let mut admin_url = String::new();
    let mut gateway_port = None;
    // Ready once the listener pushed over ADS is bound (it waits for its routes, clusters,
    // endpoints and the filter config: Envoy warms it before binding).
    wait_until("envoy gateway listener from ADS", READY_TIMEOUT, || {
        process.check_alive()?;
        let Ok(address) = std::fs::read_to_string(&admin_file) else { return Ok(false) };
        admin_url = format!("http://{}", address.trim());
        let Ok(text) = http_get(&format!("{admin_url}/listeners?format=json")) else { return Ok(false) };
        if ready == Ready::AdminOnly {
            return Ok(true);
        }
        let listeners: Value = serde_json::from_str(&text)?;
        gateway_port = listeners["listener_statuses"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == "gateway"))
            .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64());
        Ok(gateway_port.is_some() && http_get(&format!("{admin_url}/ready")).is_ok_and(|s| s.trim() == "LIVE"))
    })
    .map_err(|e| anyhow!("{e:#}\n{}", process.log()))?;
    let gateway_url = match (ready, gateway_port) {
        (Ready::AdminOnly, _) => String::new(),
        (Ready::Serving, Some(port)) => format!("http://127.0.0.1:{port}"),
        (Ready::Serving, None) => return Err(anyhow!("no gateway port")),
    };
    Ok(GatewayEnvoy {
        process,
        admin_url,
        gateway_url,
        bootstrap: bootstrap.to_path_buf(),
        node_id: node_id.to_string(),
        env,
        workers: options.envoy_workers,
        filter_host,
    })
}

/// The model for a native fleet: `text` (or the control plane's embedded default) with
/// `listener.filter: native`, written as JSON (which is YAML). `None` for a Wasm fleet: the
/// model is used as given.
fn with_filter_host(text: Option<&str>, filter_host: FilterHost) -> Result<Option<String>> {
    if filter_host == FilterHost::Wasm {
        return Ok(None);
    }
    let mut model = match text {
        Some(text) => Model::from_yaml(text).map_err(|e| anyhow!("the fleet's model: {e}"))?,
        None => Model::embedded_default(),
    };
    model.listener.filter = filter_host;
    Ok(Some(serde_json::to_string_pretty(&model)?))
}

/// A bounded cache, not a database: past `maxmemory` Redis evicts the least recently used keys
/// (any key: every entry has a TTL and can be refilled) instead of refusing writes or growing
/// until the machine swaps. Local only, no persistence.
pub const REDIS_HARDENING: [&str; 4] = ["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"];

pub fn start_redis(port: u16, dir: &Path) -> Result<Managed> {
    let mut cmd = Command::new(paths::redis_server()?);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(REDIS_HARDENING)
        .arg("--dir")
        .arg(dir);
    let mut redis = Managed::spawn("redis", cmd, dir)?;
    wait_until("redis PING", READY_TIMEOUT, || {
        redis.check_alive()?;
        Ok(redis_ping(port))
    })?;
    Ok(redis)
}

pub fn start_cache_service(
    (port, metrics_port): (u16, u16),
    redis_port: u16,
    l2: &L2Credentials,
    env: &[(String, String)],
    dir: &Path,
) -> Result<Managed> {
    let mut cmd = Command::new(paths::cache_service()?);
    cmd.arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--metrics-listen=127.0.0.1:{metrics_port}"))
        .arg(format!("--redis-url=redis://127.0.0.1:{redis_port}"))
        // Two Envoys, Redis and the clients share two cores here: one runtime thread keeps
        // cross-thread wake-ups out of the L2 tail latency.
        .arg("--worker-threads=1")
        .env("RUST_LOG", "warn")
        // Hermetic: only this fleet's token (or `FleetOptions::cache_service_env`) reaches it.
        .env_remove(CACHE_TOKEN_ENV);
    for (k, v) in l2.cache_service_env().iter().chain(env) {
        cmd.env(k, v);
    }
    let starts = std::fs::read_dir(dir)?
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("cache-service")))
        .count();
    let name = if starts == 0 { "cache-service".to_string() } else { format!("cache-service-{starts}") };
    let mut service = Managed::spawn(&name, cmd, dir)?;
    let url = format!("http://127.0.0.1:{port}/healthz");
    wait_until("cache service /healthz", READY_TIMEOUT, || {
        service.check_alive()?;
        Ok(http_get(&url).is_ok())
    })?;
    Ok(service)
}
