//! Settings: every flag also reads an environment variable; validated once at start-up and
//! printed with secrets (the password, also inside URLs) redacted.
use crate::store::layout::MAX_TTL_SECONDS;
use crate::store::{StoreOptions, Target};
use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// Redis refuses strings above 512 MiB; the filter's entries are far smaller.
const MAX_VALUE_BYTES_LIMIT: usize = 512 * 1024 * 1024;

#[derive(Parser, Clone)]
#[command(name = "aurelis-cache", version, about = "Aurelis L2 cache service (HTTP/2 + HTTP/1.1 front for Redis)")]
pub struct Args {
    /// Cache API listen address (h2c and HTTP/1.1).
    #[arg(long, env = "AURELIS_CACHE_LISTEN", default_value = "127.0.0.1:18080", value_name = "ADDR")]
    pub listen: String,
    /// Prometheus metrics listen address (`/metrics`), separate so it can be exposed alone.
    #[arg(long, env = "AURELIS_CACHE_METRICS_LISTEN", default_value = "127.0.0.1:18081", value_name = "ADDR")]
    pub metrics_listen: String,
    /// Redis URL; `rediss://` means TLS. Ignored when --redis-cluster is set.
    #[arg(long, env = "AURELIS_REDIS_URL", default_value = "redis://127.0.0.1:6379", value_name = "URL")]
    pub redis_url: String,
    /// Comma-separated Redis Cluster seed node URLs; when set, cluster mode.
    #[arg(long, env = "AURELIS_REDIS_CLUSTER", value_name = "URLS")]
    pub redis_cluster: Option<String>,
    /// Redis password; overrides any password in the URLs. Never printed.
    #[arg(long, env = "AURELIS_REDIS_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub redis_password: Option<String>,
    /// TTL of entries whose PUT has no `x-aurelis-ttl-seconds` header.
    #[arg(long, env = "AURELIS_CACHE_DEFAULT_TTL_SECONDS", default_value_t = 3600, value_name = "SECONDS")]
    pub default_ttl_seconds: u64,
    /// Largest value accepted (413 above), before compression.
    #[arg(long, env = "AURELIS_CACHE_MAX_VALUE_BYTES", default_value_t = 1_048_576, value_name = "BYTES")]
    pub max_value_bytes: usize,
    /// Values at least this long are zstd-compressed when that shrinks them (per-request
    /// override: `x-aurelis-compress-min-bytes`).
    #[arg(long, env = "AURELIS_CACHE_COMPRESS_MIN_BYTES", default_value_t = 1024, value_name = "BYTES")]
    pub compress_min_bytes: usize,
    /// Bound on every Redis call; past it the request fails with 503 and the filter fails open.
    #[arg(long, env = "AURELIS_REDIS_TIMEOUT_MS", default_value_t = 50, value_name = "MS")]
    pub redis_timeout_ms: u64,
    /// Runtime threads; 0 = one per CPU. Where the service shares a small machine with Envoy
    /// and Redis, 1 avoids cross-thread wake-ups that show in tail latency (see README).
    #[arg(long, env = "AURELIS_CACHE_WORKER_THREADS", default_value_t = 0, value_name = "N")]
    pub worker_threads: usize,
}

/// Validated settings. Deliberately not `Debug`: the password must only leave via `redacted()`.
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub target: Target,
    pub store: StoreOptions,
    pub default_ttl: Duration,
    pub compress_min_bytes: usize,
    /// 0 = one per CPU.
    pub worker_threads: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct SettingsError {
    flag: &'static str,
    problem: String,
}

fn bad(flag: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError { flag, problem: problem.into() }
}

impl Args {
    pub fn validate(self) -> Result<Settings, SettingsError> {
        let listen = parse_addr(&self.listen, "--listen / AURELIS_CACHE_LISTEN")?;
        let metrics_listen = parse_addr(&self.metrics_listen, "--metrics-listen / AURELIS_CACHE_METRICS_LISTEN")?;
        if listen == metrics_listen && listen.port() != 0 {
            return Err(bad("--listen", format!("and --metrics-listen are both {listen}: they need different ports")));
        }
        // Empty means unset: compose files pass `AURELIS_REDIS_PASSWORD=""` when none is given.
        let password = self.redis_password.filter(|p| !p.is_empty());
        let cluster = self.redis_cluster.as_deref().map(str::trim).filter(|c| !c.is_empty());
        let target = match cluster {
            Some(list) => {
                let nodes: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
                for node in &nodes {
                    check_url(node, "--redis-cluster / AURELIS_REDIS_CLUSTER")?;
                }
                Target::Cluster { nodes, password }
            }
            None => {
                check_url(&self.redis_url, "--redis-url / AURELIS_REDIS_URL")?;
                Target::Single { url: self.redis_url, password }
            }
        };
        if !(1..=MAX_TTL_SECONDS).contains(&self.default_ttl_seconds) {
            return Err(bad(
                "--default-ttl-seconds / AURELIS_CACHE_DEFAULT_TTL_SECONDS",
                format!("{} is outside 1..={MAX_TTL_SECONDS}", self.default_ttl_seconds),
            ));
        }
        if !(1..=MAX_VALUE_BYTES_LIMIT).contains(&self.max_value_bytes) {
            return Err(bad(
                "--max-value-bytes / AURELIS_CACHE_MAX_VALUE_BYTES",
                format!("{} is outside 1..={MAX_VALUE_BYTES_LIMIT}", self.max_value_bytes),
            ));
        }
        if self.worker_threads > 256 {
            return Err(bad("--worker-threads", format!("{} is above 256", self.worker_threads)));
        }
        if !(1..=60_000).contains(&self.redis_timeout_ms) {
            return Err(bad(
                "--redis-timeout-ms / AURELIS_REDIS_TIMEOUT_MS",
                format!("{} is outside 1..=60000", self.redis_timeout_ms),
            ));
        }
        Ok(Settings {
            listen,
            metrics_listen,
            target,
            store: StoreOptions {
                op_timeout: Duration::from_millis(self.redis_timeout_ms),
                max_value_bytes: self.max_value_bytes,
            },
            default_ttl: Duration::from_secs(self.default_ttl_seconds),
            compress_min_bytes: self.compress_min_bytes,
            worker_threads: self.worker_threads,
        })
    }
}

fn parse_addr(value: &str, flag: &'static str) -> Result<SocketAddr, SettingsError> {
    value.parse().map_err(|_| bad(flag, format!("`{value}` is not an IP:port address (e.g. 127.0.0.1:18080)")))
}

/// The scheme is checked here; the rest is left to the Redis client at start-up. The message
/// shows the URL redacted, since it may carry a password.
fn check_url(url: &str, flag: &'static str) -> Result<(), SettingsError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(())
    } else {
        Err(bad(flag, format!("`{}` is not a redis:// or rediss:// URL", redact_url(url))))
    }
}

/// `redis://user:secret@host` → `redis://user:<redacted>@host`; URLs without a password unchanged.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else { return url.to_string() };
    let (userinfo, host) = authority.split_at(at);
    let user = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:<redacted>"),
        // `redis://secret@host` is how some clients spell a password without user.
        None => "<redacted>".to_string(),
    };
    let prefix = if scheme.is_empty() { String::new() } else { format!("{scheme}://") };
    format!("{prefix}{user}{host}{path}")
}

impl Settings {
    /// One line for the start-up log; no password appears.
    pub fn redacted(&self) -> String {
        let (mode, urls, password) = match &self.target {
            Target::Single { url, password } => ("single", redact_url(url), password.is_some()),
            Target::Cluster { nodes, password } => {
                ("cluster", nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(","), password.is_some())
            }
        };
        format!(
            "listen={} metrics_listen={} redis_mode={mode} redis={urls} redis_password={} \
             redis_timeout_ms={} default_ttl_seconds={} max_value_bytes={} compress_min_bytes={} worker_threads={}",
            self.listen,
            self.metrics_listen,
            if password { "<redacted>" } else { "<unset>" },
            self.store.op_timeout.as_millis(),
            self.default_ttl.as_secs(),
            self.store.max_value_bytes,
            self.compress_min_bytes,
            self.worker_threads,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("aurelis-cache").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_validate() {
        let s = parse(&[]).validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:18080");
        assert_eq!(s.metrics_listen.to_string(), "127.0.0.1:18081");
        assert_eq!(s.store.op_timeout, Duration::from_millis(50));
        assert_eq!(s.store.max_value_bytes, 1_048_576);
        assert_eq!((s.default_ttl.as_secs(), s.compress_min_bytes), (3600, 1024));
        assert!(matches!(s.target, Target::Single { ref url, password: None } if url == "redis://127.0.0.1:6379"));
    }

    #[test]
    fn cluster_list_selects_cluster_mode() {
        let s = parse(&["--redis-cluster", "redis://a:1, redis://b:2"]).validate().unwrap();
        let Target::Cluster { nodes, .. } = &s.target else { panic!("expected cluster") };
        assert_eq!(nodes, &["redis://a:1", "redis://b:2"]);
        assert!(s.redacted().contains("redis_mode=cluster redis=redis://a:1,redis://b:2"), "{}", s.redacted());
    }

    #[test]
    fn passwords_are_never_printed() {
        let s =
            parse(&["--redis-url", "rediss://app:hunter2@r:6380/0", "--redis-password", "s3cret"]).validate().unwrap();
        let line = s.redacted();
        assert!(!line.contains("hunter2") && !line.contains("s3cret"), "{line}");
        assert!(line.contains("redis=rediss://app:<redacted>@r:6380/0 redis_password=<redacted>"), "{line}");
        let err = parse(&["--redis-url", "http://u:hunter2@x"]).validate().err().unwrap().to_string();
        assert!(err.contains("AURELIS_REDIS_URL") && !err.contains("hunter2"), "{err}");
        assert!(parse(&["--redis-password", ""]).validate().unwrap().redacted().contains("redis_password=<unset>"));
    }

    #[test]
    fn url_redaction() {
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:<redacted>@h:1");
        assert_eq!(redact_url("redis://pw@h:1/2"), "redis://<redacted>@h:1/2");
        assert_eq!(redact_url("redis://u:p@ss@h"), "redis://u:<redacted>@h");
    }

    #[test]
    fn start_up_refuses_bad_settings() {
        for (args, flag) in [
            (&["--listen", "localhost"][..], "--listen"),
            (&["--listen", "127.0.0.1:9", "--metrics-listen", "127.0.0.1:9"][..], "--listen"),
            (&["--default-ttl-seconds", "0"][..], "--default-ttl-seconds"),
            (&["--default-ttl-seconds", "2592001"][..], "--default-ttl-seconds"),
            (&["--max-value-bytes", "0"][..], "--max-value-bytes"),
            (&["--redis-timeout-ms", "0"][..], "--redis-timeout-ms"),
            (&["--redis-cluster", "redis://a:1,,"][..], "--redis-cluster"),
        ] {
            let err = parse(args).validate().err().unwrap_or_else(|| panic!("{args:?} accepted")).to_string();
            assert!(err.starts_with(flag), "{args:?}: {err}");
        }
    }
}
