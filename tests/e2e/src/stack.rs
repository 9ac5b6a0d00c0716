//! `Stack::start`: the whole system from real processes, on free ports, ready to serve.
use crate::envoy_config::{self, GatewayConfig, UpstreamTarget};
use crate::paths;
use crate::process::{free_port, wait_until, Managed};
use anyhow::{anyhow, bail, Context, Result};
use aurelis_mock_upstream::{MockConfig, MockUpstream};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Mock,
    GitHubModels,
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Envoy worker threads (`--concurrency`).
    pub envoy_workers: u32,
    /// The filter's configuration (JSON); `{}` means defaults.
    pub filter_config: Value,
    pub mock: MockConfig,
    pub upstream: Upstream,
    pub redis: bool,
    pub control_plane: bool,
    /// Fixed ports for `make run`; `None` picks free ones.
    pub listen_port: Option<u16>,
    pub admin_port: Option<u16>,
    pub mock_port: Option<u16>,
    pub redis_port: Option<u16>,
    pub control_plane_port: Option<u16>,
    pub envoy_log_level: String,
    /// Benchmark baselines (see `GatewayConfig`).
    pub with_filter: bool,
    pub direct_response: Option<String>,
    pub extra_http_filters: Vec<Value>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            envoy_workers: 1,
            filter_config: json!({}),
            mock: MockConfig::default(),
            upstream: Upstream::Mock,
            redis: false,
            control_plane: false,
            listen_port: None,
            admin_port: None,
            mock_port: None,
            redis_port: None,
            control_plane_port: None,
            envoy_log_level: "warning".into(),
            with_filter: true,
            direct_response: None,
            extra_http_filters: Vec::new(),
        }
    }
}

pub struct Stack {
    pub mock: Option<MockUpstream>,
    pub redis: Option<Managed>,
    pub redis_port: Option<u16>,
    pub control_plane: Option<Managed>,
    pub control_plane_url: Option<String>,
    pub envoy: Managed,
    /// `http://127.0.0.1:<port>` of the gateway listener.
    pub gateway_url: String,
    pub admin_url: String,
    pub envoy_config_path: PathBuf,
    envoy_workers: u32,
    dir: tempfile::TempDir,
}

impl Stack {
    pub fn start(options: StackOptions) -> Result<Stack> {
        let dir = tempfile::Builder::new().prefix("aurelis-stack-").tempdir()?;
        let (mock, upstream) = match options.upstream {
            Upstream::Mock => {
                let mock = match options.mock_port {
                    Some(port) => MockUpstream::start_on(([127, 0, 0, 1], port).into(), options.mock.clone()),
                    None => MockUpstream::start(options.mock.clone()),
                }
                .context("starting the mock upstream")?;
                let port = mock.port();
                (Some(mock), UpstreamTarget::Mock { port })
            }
            Upstream::GitHubModels => (None, UpstreamTarget::GitHubModels),
        };
        let (redis, redis_port) = if options.redis {
            let port = match options.redis_port {
                Some(p) => p,
                None => free_port()?,
            };
            (Some(start_redis(port, dir.path())?), Some(port))
        } else {
            (None, None)
        };
        let (control_plane, control_plane_url) = if options.control_plane {
            let port = match options.control_plane_port {
                Some(p) => p,
                None => free_port()?,
            };
            let (cp, url) = start_control_plane(port, dir.path())?;
            (Some(cp), Some(url))
        } else {
            (None, None)
        };
        let wasm = paths::wasm()?;
        let config = envoy_config::gateway(&GatewayConfig {
            listen_port: options.listen_port.unwrap_or(0),
            admin_port: options.admin_port.unwrap_or(0),
            wasm_path: &wasm,
            filter_config: options.filter_config.clone(),
            upstream,
            with_filter: options.with_filter,
            direct_response: options.direct_response.clone(),
            extra_http_filters: options.extra_http_filters.clone(),
        });
        let envoy_config_path = dir.path().join("envoy.json");
        std::fs::write(&envoy_config_path, serde_json::to_vec_pretty(&config)?)?;
        let (envoy, admin_url, gateway_url) = start_envoy(&envoy_config_path, &options, dir.path())?;
        Ok(Stack {
            mock,
            redis,
            redis_port,
            control_plane,
            control_plane_url,
            envoy,
            gateway_url,
            admin_url,
            envoy_config_path,
            envoy_workers: options.envoy_workers,
            dir,
        })
    }

    pub fn mock(&self) -> &MockUpstream {
        match &self.mock {
            Some(m) => m,
            None => panic!("this stack runs without the mock upstream"),
        }
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

    /// One counter's value from Envoy's stats (the full, untagged name); the filter's own stats
    /// are read after every worker flushed them (see `stat_after_flush`).
    pub fn counter(&self, name: &str) -> u64 {
        stat_after_flush(&self.admin_url, name, self.envoy_workers)
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in [Some(&self.envoy), self.redis.as_ref(), self.control_plane.as_ref()].into_iter().flatten() {
            out.push_str(&format!("----- {} ({}) -----\n{}\n", p.name, p.log_path.display(), p.log()));
        }
        out
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
/// A filter stat (`wasmcustom.aurelis_*`) is read once the flush counter has moved by three
/// flushes per worker since the call: every worker has then flushed what it counted before.
pub fn stat_after_flush(admin_url: &str, name: &str, workers: u32) -> u64 {
    if name.starts_with("wasmcustom.aurelis_") {
        let flushes = "wasmcustom.aurelis_stats_flushes_total";
        let target = stat(admin_url, flushes) + 3 * u64::from(workers.max(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stat(admin_url, flushes) < target && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stat(admin_url, name)
}

pub fn http_get(url: &str) -> Result<String> {
    let response = ureq::get(url).timeout(Duration::from_secs(5)).call().map_err(|e| anyhow!("GET {url}: {e}"))?;
    Ok(response.into_string()?)
}

fn start_envoy(config_path: &Path, options: &StackOptions, dir: &Path) -> Result<(Managed, String, String)> {
    let admin_file = dir.join("envoy-admin-address");
    let mut cmd = Command::new(paths::envoy()?);
    cmd.arg("-c")
        .arg(config_path)
        .arg("--concurrency")
        .arg(options.envoy_workers.to_string())
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg(&options.envoy_log_level)
        .arg("--admin-address-path")
        .arg(&admin_file);
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

fn start_redis(port: u16, dir: &Path) -> Result<Managed> {
    let mut cmd = Command::new(paths::redis_server()?);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    let mut redis = Managed::spawn("redis", cmd, dir)?;
    wait_until("redis PING", READY_TIMEOUT, || {
        redis.check_alive()?;
        Ok(redis_ping(port))
    })?;
    Ok(redis)
}

/// `PING` over a raw socket: the harness needs no Redis client for readiness.
pub fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn start_control_plane(port: u16, dir: &Path) -> Result<(Managed, String)> {
    let metrics_port = free_port()?;
    let mut cmd = Command::new(paths::control_plane()?);
    cmd.arg("serve")
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"))
        // This stack configures Envoy statically; the xDS port is unused but must not collide.
        .arg("--xds-listen")
        .arg("127.0.0.1:0");
    let mut cp = Managed::spawn("control-plane", cmd, dir)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_until("control plane /healthz", READY_TIMEOUT, || {
        cp.check_alive()?;
        Ok(http_get(&format!("{url}/healthz")).is_ok())
    })?;
    Ok((cp, url))
}

/// `envoy --mode validate` on a config file: `Ok` or Envoy's own explanation.
pub fn validate_envoy_config(path: &Path) -> Result<()> {
    let output = Command::new(paths::envoy()?)
        .args(["--mode", "validate", "--disable-hot-restart", "--log-level", "error", "-c"])
        .arg(path)
        .output()?;
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
