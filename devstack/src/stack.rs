//! `Stack::start`: the whole system from real processes, on free ports, ready to serve.
use crate::host::{self, FilterHost};
use crate::paths;
use crate::process::{wait_until, Managed};
use anyhow::{anyhow, bail, Context, Result};
use aurelis_control_plane::model::Model;
use aurelis_control_plane::render;
use aurelis_control_plane::xds::resources::{static_bootstrap, Answer, StaticBootstrap};
use aurelis_mock_upstream::{MockConfig, MockUpstream};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Envoy worker threads (`--concurrency`).
    pub envoy_workers: u32,
    /// The filter's configuration (JSON); `{}` means defaults, except that clients are
    /// anonymous (`auth.anonymous`, each address its own cache scope) unless it has its own
    /// `auth`: the filter's own default refuses everybody.
    pub filter_config: Value,
    pub mock: MockConfig,
    /// Benchmark baselines: `false` leaves the Aurelis filter out.
    pub with_filter: bool,
    /// The Wasm module or the native dynamic module; `None`: from `AURELIS_FILTER` (`host`).
    pub filter_host: Option<FilterHost>,
    /// Benchmark baselines without the filter: nothing routes by the body's model there, and
    /// unknown models are refused (404), so requests naming no model take the model's route.
    pub route_unknown_models: bool,
    /// Benchmark baselines: Envoy answers every request itself with this JSON body (after
    /// buffering the request; `Answer::Direct`).
    pub direct_response: Option<String>,
    /// Benchmark baselines: more HTTP filters, before the Aurelis filter.
    pub extra_http_filters: Vec<HttpFilter>,
    /// Another Wasm module in the filter's place (benchmarks: the null filter, the counting
    /// build); default: the built filter (`paths::wasm`).
    pub wasm: Option<PathBuf>,
    /// Another native module directory in the filter's place (benchmarks: the null module);
    /// default: the built filter's (`paths::native_module_dir`).
    pub native_dir: Option<PathBuf>,
    /// Pins Envoy to these CPUs (`taskset -c`), e.g. `"0"` (benchmarks).
    pub envoy_cpus: Option<String>,
    /// The provider's port instead of the mock's (benchmarks: an upstream Envoy). The mock still
    /// starts, unused.
    pub upstream_port: Option<u16>,
    /// Where Envoy writes its JSON access log; `Stack::start` picks `access.log` in the stack's
    /// directory (`Stack::access_log`) when unset, a rendering alone keeps the model's default.
    pub access_log: Option<PathBuf>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            envoy_workers: 1,
            filter_config: json!({}),
            mock: MockConfig::default(),
            with_filter: true,
            filter_host: None,
            route_unknown_models: false,
            direct_response: None,
            extra_http_filters: Vec::new(),
            wasm: None,
            native_dir: None,
            envoy_cpus: None,
            upstream_port: None,
            access_log: None,
        }
    }
}

/// Envoy configured statically with the filter in front of one mock provider.
pub struct Stack {
    pub mock: MockUpstream,
    pub envoy: Managed,
    /// `http://127.0.0.1:<port>` of the gateway listener.
    pub gateway_url: String,
    pub admin_url: String,
    pub envoy_config_path: PathBuf,
    /// Envoy's JSON access log (one line per request; `docs/operations.md`).
    pub access_log: PathBuf,
    envoy_workers: u32,
    filter_host: FilterHost,
    dir: tempfile::TempDir,
}

impl Stack {
    pub fn start(options: StackOptions) -> Result<Stack> {
        let dir = tempfile::Builder::new().prefix("aurelis-stack-").tempdir()?;
        let mock = MockUpstream::start(options.mock.clone()).context("starting the mock upstream")?;
        let filter_host = options.filter_host.map_or_else(host::from_env, Ok)?;
        let wasm = match (&options.wasm, filter_host) {
            (Some(path), _) => path.clone(),
            (None, FilterHost::Wasm) => paths::wasm()?,
            // Not loaded: the native filter needs no Wasm build.
            (None, FilterHost::Native) => PathBuf::from(render::SHIPPED_WASM_PATH),
        };
        let mut options = options;
        let access_log = options.access_log.get_or_insert_with(|| dir.path().join("access.log")).clone();
        let port = options.upstream_port.unwrap_or(mock.port());
        let config = envoy_config(&options, port, &wasm.display().to_string(), filter_host)?;
        let envoy_config_path = dir.path().join("envoy.json");
        std::fs::write(&envoy_config_path, serde_json::to_vec_pretty(&config)?)?;
        let env = match (&options.native_dir, filter_host) {
            (Some(dir), FilterHost::Native) => vec![(host::SEARCH_PATH_ENV.to_string(), dir.display().to_string())],
            _ => host::envoy_env(filter_host)?,
        };
        let (envoy, admin_url, gateway_url) = start_envoy(&envoy_config_path, &options, &env, dir.path())?;
        let envoy_workers = options.envoy_workers;
        Ok(Stack {
            mock,
            envoy,
            gateway_url,
            admin_url,
            envoy_config_path,
            access_log,
            envoy_workers,
            filter_host,
            dir,
        })
    }

    /// The build of the filter this stack runs.
    pub fn filter_host(&self) -> FilterHost {
        self.filter_host
    }

    pub fn mock(&self) -> &MockUpstream {
        &self.mock
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway_url)
    }

    /// Envoy admin `GET /stats?filter=...` as `name: value` lines.
    pub fn envoy_stats(&self, filter: &str) -> Result<String> {
        http_get(&format!("{}/stats?filter={filter}", self.admin_url))
    }

    pub fn prometheus(&self) -> Result<String> {
        http_get(&format!("{}/stats/prometheus", self.admin_url))
    }

    /// One counter's value from Envoy's stats (the full, untagged name; the filter's own stats
    /// by their Wasm name, read under this stack's host); the filter's own stats are read after
    /// every worker flushed them (see `stat_after_flush`).
    pub fn counter(&self, name: &str) -> u64 {
        stat_after_flush(&self.admin_url, name, self.envoy_workers, self.filter_host)
    }

    pub fn logs(&self) -> String {
        let p = &self.envoy;
        format!("----- {} ({}) -----\n{}\n", p.name, p.log_path.display(), p.log())
    }

    /// The access log's lines so far (Envoy flushes it about once a second).
    pub fn access_log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== aurelis stack logs (test failed) =====\n{}", self.logs());
        }
    }
}

/// One stat's value (the full, untagged name), 0 when absent.
pub fn stat(admin_url: &str, name: &str) -> u64 {
    let url = format!("{admin_url}/stats?filter=^{}$", name.replace('.', "\\."));
    let stats = http_get(&url).unwrap_or_default();
    stats.lines().find_map(|l| l.split_once(": ").and_then(|(_, v)| v.trim().parse().ok())).unwrap_or(0)
}

/// The filter counts in memory and flushes its stats on every 50 ms timer tick, per worker.
/// A filter stat (`wasmcustom.aurelis_*`, named the Wasm way and read under `filter_host`'s
/// name) is read once the flush counter has moved by three flushes per worker since the call:
/// every worker has then flushed what it counted before.
///
/// The native filter ticks a worker only while it has streams (its timer borrows a stream's
/// scheduler) and flushes when its last stream ends, so an idle native Envoy may not flush
/// again: there the wait is for one more flush, at most 250 ms.
pub fn stat_after_flush(admin_url: &str, name: &str, workers: u32, filter_host: FilterHost) -> u64 {
    let name = host::stat_name(filter_host, name);
    if host::is_filter_stat(&name) {
        let flushes = host::stat_name(filter_host, "wasmcustom.aurelis_stats_flushes_total");
        let (moves, wait) = match filter_host {
            FilterHost::Wasm => (3 * u64::from(workers.max(1)), Duration::from_secs(5)),
            FilterHost::Native => (1, Duration::from_millis(250)),
        };
        let target = stat(admin_url, &flushes) + moves;
        let deadline = std::time::Instant::now() + wait;
        while stat(admin_url, &flushes) < target && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stat(admin_url, &name)
}

/// The static bootstrap a stack's Envoy runs (admin and gateway on free ports, the provider on
/// `upstream_port`), rendered by the control plane's generator.
pub fn envoy_config(
    options: &StackOptions,
    upstream_port: u16,
    wasm_path: &str,
    filter_host: FilterHost,
) -> Result<Value> {
    let mut model = stack_model(upstream_port)?;
    model.listener.filter = filter_host;
    if let Some(path) = &options.access_log {
        model.listener.access_log.path = path.display().to_string();
    }
    if options.route_unknown_models {
        model.api.fallback_model = model.models.first().map(|m| m.name.clone());
    }
    render::to_json(&static_bootstrap(StaticBootstrap {
        model: &model,
        filter_json: options.with_filter.then(|| with_default_auth(&options.filter_config).to_string()),
        wasm_path,
        admin_address: "127.0.0.1",
        admin_port: 0,
        answer: match &options.direct_response {
            Some(body) => Answer::Direct(body.clone()),
            None => Answer::Providers,
        },
        extra_http_filters: options.extra_http_filters.clone(),
    }))
}

/// `config` with explicit anonymous access unless it configures `auth` itself.
pub fn with_default_auth(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(object) = config.as_object_mut() {
        object.entry("auth").or_insert_with(|| json!({ "anonymous": {} }));
    }
    config
}

/// The stack's model: the mock provider on `port`, every model routed to it. No retries and no
/// outlier ejection, so a test sees exactly what the mock answered; no compression (the filter's
/// own behaviour is under test).
pub fn stack_model(port: u16) -> Result<Model> {
    let yaml = format!(
        "listener: {{ address: 127.0.0.1, port: 0, compression: false }}\n\
         providers:\n\
         \x20 - name: mock\n\
         \x20   base_url: http://127.0.0.1:{port}/v1\n\
         \x20   protocol: http2\n\
         \x20   limits: {{ num_retries: 0, consecutive_5xx: 1000000, max_ejection_percent: 0 }}\n\
         models:\n\
         \x20 - {{ name: gpt-4o-mini, providers: [{{ provider: mock, weight: 100 }}] }}\n"
    );
    Model::from_yaml(&yaml).map_err(|e| anyhow!("the stack's model: {e}"))
}

pub fn http_get(url: &str) -> Result<String> {
    let response = ureq::get(url).timeout(Duration::from_secs(5)).call().map_err(|e| anyhow!("GET {url}: {e}"))?;
    Ok(response.into_string()?)
}

/// Starts Envoy on `config_path` (whose listener is named `gateway`) and waits until it serves:
/// the process, its admin URL and the gateway URL.
pub fn start_envoy(
    config_path: &Path,
    options: &StackOptions,
    env: &[(String, String)],
    dir: &Path,
) -> Result<(Managed, String, String)> {
    let admin_file = dir.join("envoy-admin-address");
    let mut cmd = match &options.envoy_cpus {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpus).arg(paths::envoy()?);
            cmd
        }
        None => Command::new(paths::envoy()?),
    };
    cmd.arg("-c")
        .arg(config_path)
        .arg("--concurrency")
        .arg(options.envoy_workers.to_string())
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warning")
        .arg("--admin-address-path")
        .arg(&admin_file);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut envoy = Managed::spawn("envoy", cmd, dir)?;
    let mut admin_url = String::new();
    wait_until("envoy admin /ready", READY_TIMEOUT, || {
        envoy.check_alive()?;
        let Ok(address) = std::fs::read_to_string(&admin_file) else { return Ok(false) };
        admin_url = format!("http://{}", address.trim());
        Ok(http_get(&format!("{admin_url}/ready")).is_ok_and(|s| s.trim() == "LIVE"))
    })
    .map_err(|e| anyhow!("{e:#}\n{}", envoy.log()))?;
    let listeners: Value = serde_json::from_str(&http_get(&format!("{admin_url}/listeners?format=json"))?)?;
    let port = listeners["listener_statuses"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "gateway"))
        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .ok_or_else(|| anyhow!("no gateway listener in {listeners}"))?;
    Ok((envoy, admin_url, format!("http://127.0.0.1:{port}")))
}

/// `PING` over a raw socket: the harness needs no Redis client for readiness.
pub fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// `DBSIZE` over a raw socket (an integer reply, `:N`): how many keys Redis holds.
pub fn redis_dbsize(port: u16) -> Option<u64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"DBSIZE\r\n").ok()?;
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).ok()?;
    let reply = std::str::from_utf8(buf.get(..n)?).ok()?;
    reply.strip_prefix(':')?.trim_end().parse().ok()
}

/// How many keys match `pattern` (`KEYS`: fine for a test's few keys, not for production).
pub fn redis_count_keys(port: u16, pattern: &str) -> Option<u64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(format!("KEYS {pattern}\r\n").as_bytes()).ok()?;
    // Only the array header (`*<n>\r\n`) is read.
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let reply = String::from_utf8_lossy(buf.get(..n)?).into_owned();
    reply.strip_prefix('*')?.split("\r\n").next()?.parse().ok()
}

/// `envoy --mode validate` on a config file: `Ok` or Envoy's own explanation. Validation loads
/// dynamic modules too: Envoy is shown the built native filter.
pub fn validate_envoy_config(path: &Path) -> Result<()> {
    let mut cmd = Command::new(paths::envoy()?);
    cmd.args(["--mode", "validate", "--disable-hot-restart", "--log-level", "error", "-c"]).arg(path);
    cmd.envs(host::envoy_env(FilterHost::Native).unwrap_or_default());
    let output = cmd.output()?;
    if !output.status.success() {
        bail!(
            "envoy rejected {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
