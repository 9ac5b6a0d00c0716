//! Load for `aurelis-bench`: `wrk` (closed loop, installed by `scripts/bootstrap.sh bench`) for
//! saturation throughput, and a small open-loop generator for latency at a fixed rate.
//!
//! The open-loop generator schedules request `i` at `start + i / rate` whatever happened to the
//! requests before it, and measures each latency from that scheduled time, not from when a
//! worker got round to sending it: a stall shows up in the latency of every request it delayed
//! (no coordinated omission).
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One `wrk` run.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkSample {
    pub rps: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn parse_latency(value: &str) -> Option<f64> {
    let value = value.trim();
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let n: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => return None,
    })
}

/// `wrk -t1 -c<connections> -d<seconds>s --latency -s <script> <url>`, pinned to `cpus` with
/// `taskset -c` when given. Fails on any non-2xx answer or socket error.
pub fn wrk(url: &str, script: &Path, connections: u32, seconds: u32, cpus: Option<&str>) -> Result<WrkSample> {
    let mut cmd = match cpus {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpus, "wrk"]);
            cmd
        }
        None => Command::new("wrk"),
    };
    let out = cmd
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk (scripts/bootstrap.sh bench installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sample = WrkSample::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            sample.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("50%") {
            sample.p50_ms = parse_latency(v).unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("99%") {
            sample.p99_ms = parse_latency(v).unwrap_or(0.0);
        } else if line.contains(" requests in ") {
            sample.requests = line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            bail!("wrk saw errors against {url}:\n{text}");
        }
    }
    if sample.rps == 0.0 {
        bail!("could not parse wrk output:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(sample)
}

/// A wrk script POSTing `body` every time, with `headers`.
pub fn same_request_script(dir: &Path, name: &str, body: &str, headers: &[(&str, &str)]) -> Result<std::path::PathBuf> {
    let mut text = String::from("wrk.method = \"POST\"\nwrk.headers[\"content-type\"] = \"application/json\"\n");
    for (k, v) in headers {
        text.push_str(&format!("wrk.headers[\"{k}\"] = \"{v}\"\n"));
    }
    text.push_str(&format!("wrk.body = '{body}'\n"));
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A wrk script POSTing a chat completion with a different prompt each request (`prefix` keeps
/// prompts unique across runs: every request is a cacheable MISS), as the client whose
/// `authorization` header value is given.
pub fn unique_request_script(dir: &Path, name: &str, prefix: &str, authorization: &str) -> Result<std::path::PathBuf> {
    let text = format!(
        r#"counter = 0
request = function()
  counter = counter + 1
  local body = '{{"model":"gpt-4o-mini","temperature":0,"messages":[{{"role":"user","content":"{prefix} ' .. counter .. '"}}]}}'
  return wrk.format("POST", "/v1/chat/completions", {{["content-type"] = "application/json", ["authorization"] = "{authorization}"}}, body)
end
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`, in seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (`state`).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// One open-loop run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct OpenLoopResult {
    pub rate: f64,
    pub measured: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// POSTs `body(i)` to `url` at `rate` requests/s for `duration` from `workers` threads (each with
/// its own keep-alive connection); the first `warmup` is sent but not measured.
pub fn open_loop(
    url: &str,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    workers: usize,
    body: &(dyn Fn(u64) -> String + Sync),
) -> OpenLoopResult {
    let total = (rate * (duration + warmup).as_secs_f64()) as u64;
    let skip = (rate * warmup.as_secs_f64()) as u64;
    let next = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let start = Instant::now() + Duration::from_millis(100);
    let mut latencies: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (next, errors) = (&next, &errors);
                scope.spawn(move || {
                    let agent = ureq::AgentBuilder::new().max_idle_connections_per_host(1).build();
                    let mut micros = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return micros;
                        }
                        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let ok = agent
                            .post(url)
                            .set("content-type", "application/json")
                            .send_string(&body(i))
                            .ok()
                            .and_then(|r| r.into_string().ok())
                            .is_some();
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        } else if i >= skip {
                            micros.push(scheduled.elapsed().as_micros() as u64);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    latencies.sort_unstable();
    let pct = |p: f64| {
        let n = latencies.len();
        if n == 0 {
            return 0.0;
        }
        latencies.get(((n as f64 * p) as usize).min(n - 1)).copied().unwrap_or(0) as f64 / 1000.0
    };
    OpenLoopResult {
        rate,
        measured: latencies.len() as u64,
        errors: errors.into_inner(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    }
}
