//! Settings: every flag also reads an environment variable; validated once at start-up and
//! printed with secrets (the password, also inside URLs, and the API tokens) redacted. The API
//! token is the one secret with no flag: a flag's value shows in `ps` (see `access`).
use crate::api::Access;
use crate::store::layout::MAX_TTL_SECONDS;
use crate::store::StoreOptions;
use clap::Parser;
use std::ffi::OsString;
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
    /// PEM file with the CA certificate(s) that issued Redis' certificate, trusted instead of the
    /// system's roots (a private CA). Needs rediss:// URLs.
    #[arg(long, env = "AURELIS_REDIS_TLS_CA_FILE", value_name = "PEM_FILE")]
    pub redis_tls_ca_file: Option<OsString>,
    /// PEM client certificate chain for mutual TLS (Redis `tls-auth-clients yes`); needs
    /// --redis-tls-key-file and rediss:// URLs.
    #[arg(long, env = "AURELIS_REDIS_TLS_CERT_FILE", value_name = "PEM_FILE")]
    pub redis_tls_cert_file: Option<OsString>,
    /// PEM private key of --redis-tls-cert-file. Its contents are never printed.
    #[arg(long, env = "AURELIS_REDIS_TLS_KEY_FILE", value_name = "PEM_FILE")]
    pub redis_tls_key_file: Option<OsString>,
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
    /// A file holding the API token (see AURELIS_CACHE_API_TOKEN), bound to --namespace.
    #[arg(long, env = "AURELIS_CACHE_API_TOKEN_FILE", value_name = "FILE")]
    pub api_token_file: Option<OsString>,
    /// The namespace the API token (AURELIS_CACHE_API_TOKEN or --api-token-file) may use.
    #[arg(long, env = "AURELIS_CACHE_NAMESPACE", default_value = "aurelis", value_name = "NAMESPACE")]
    pub namespace: String,
    /// More tokens, each bound to a namespace: lines `<namespace> <sha256 hex of the token>`.
    #[arg(long, env = "AURELIS_CACHE_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<OsString>,
    /// Runs without any token (entries open to every caller), for local development only:
    /// refused unless --listen is a loopback address.
    #[arg(long, env = "AURELIS_CACHE_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// The API token, from the environment variable AURELIS_CACHE_API_TOKEN only (no flag: `ps`
    /// shows flags). Entry requests must send `authorization: Bearer <token>` (401 otherwise);
    /// at least 32 printable ASCII bytes without spaces. The filter reads the same value from
    /// Envoy's `AURELIS_L2_TOKEN`.
    #[arg(skip)]
    pub api_token: Option<OsString>,
    /// L3, the persistent level behind Redis: `sqlite:PATH` (embedded file database) or
    /// `postgres://user:password@host/db`. Unset: no L3. Needs AURELIS_L3_KEYS or --l3-keys-file.
    #[arg(long, env = "AURELIS_L3_STORE", hide_env_values = true, value_name = "LOCATION")]
    pub l3_store: Option<String>,
    /// A file with the L3 keys (`<key id>:<64 hex>` per line; the first seals), instead of
    /// the AURELIS_L3_KEYS environment variable.
    #[arg(long, env = "AURELIS_L3_KEYS_FILE", value_name = "FILE")]
    pub l3_keys_file: Option<OsString>,
    /// Bound on an L3 lookup; past it the lookup is a miss (fail open).
    #[arg(long, env = "AURELIS_L3_TIMEOUT_MS", default_value_t = 20, value_name = "MS")]
    pub l3_timeout_ms: u64,
    /// Lifetime of an entry in L3.
    #[arg(long, env = "AURELIS_L3_TTL_SECONDS", default_value_t = 86_400, value_name = "SECONDS")]
    pub l3_ttl_seconds: u64,
    /// Bytes L3 may hold (keys + sealed values); the least recently used are evicted above it.
    #[arg(long, env = "AURELIS_L3_MAX_BYTES", default_value_t = 1 << 30, value_name = "BYTES")]
    pub l3_max_bytes: u64,
    /// The L3 keys, from the environment variable AURELIS_L3_KEYS only (no flag).
    #[arg(skip)]
    pub l3_keys: Option<OsString>,
    #[command(flatten)]
    pub refill: refill::RefillArgs,
    /// Refresh-ahead: the Envoy listener (`http://host:port`) replays of hot entries near expiry
    /// are sent to. Unset: off. Needs L3 and AURELIS_REFRESH_SECRET (the Envoys' value).
    #[arg(long, env = "AURELIS_REFRESH_ENVOY_URL", value_name = "URL")]
    pub refresh_envoy_url: Option<String>,
    /// Entries expiring within this many seconds are refreshed.
    #[arg(long, env = "AURELIS_REFRESH_AHEAD_SECONDS", default_value_t = 600, value_name = "SECONDS")]
    pub refresh_ahead_seconds: u64,
    /// Only entries with at least this many hits are refreshed (warming's definition of hot).
    #[arg(long, env = "AURELIS_REFRESH_MIN_HITS", default_value_t = 10, value_name = "N")]
    pub refresh_min_hits: u64,
    /// How often the refresher looks for entries near expiry.
    #[arg(long, env = "AURELIS_REFRESH_EVERY_MS", default_value_t = 10_000, value_name = "MS")]
    pub refresh_every_ms: u64,
    /// Replays in flight at most (1 to 5).
    #[arg(long, env = "AURELIS_REFRESH_CONCURRENCY", default_value_t = 5, value_name = "N")]
    pub refresh_concurrency: usize,
    /// An entry tried (refreshed or refused) is not tried again for this long.
    #[arg(long, env = "AURELIS_REFRESH_RETRY_SECONDS", default_value_t = 300, value_name = "SECONDS")]
    pub refresh_retry_seconds: u64,
    /// The refresh secret, from the environment variable AURELIS_REFRESH_SECRET only (no flag).
    #[arg(skip)]
    pub refresh_secret: Option<OsString>,
}

impl Args {
    /// The command line, plus the API token from the environment.
    pub fn from_env() -> Args {
        let mut args = <Args as clap::Parser>::parse();
        args.api_token = std::env::var_os(access::TOKEN_ENV);
        args.l3_keys = std::env::var_os(l3::KEYS_ENV);
        args.refresh_secret = std::env::var_os(aurelis_core::refresh::SECRET_ENV);
        args
    }
}

/// Validated settings. Deliberately not `Debug`: the password must only leave via `redacted()`.
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// Where Redis is, its password and TLS material.
    pub redis: RedisConnection,
    pub store: StoreOptions,
    pub default_ttl: Duration,
    pub compress_min_bytes: usize,
    /// 0 = one per CPU.
    pub worker_threads: usize,
    /// The tokens and their namespaces, or open (explicitly, on loopback only).
    pub access: Access,
    /// The persistent level, when configured.
    pub l3: Option<l3::L3Settings>,
    /// Refilling Redis from L3 after it lost its contents (with L3 only).
    pub refill: crate::l3::refill::RefillSettings,
    /// Refresh-ahead, when configured.
    pub refresh: Option<refresh::RefreshSettings>,
}

pub mod access;
pub mod l3;
mod redis;
pub mod refill;
pub mod refresh;
pub use redis::{redact_url, RedisConnection, RedisFlags, RedisInput};

/// The cache service's names for the Redis settings.
const FLAGS: RedisFlags = RedisFlags {
    url: "--redis-url / AURELIS_REDIS_URL",
    cluster: "--redis-cluster / AURELIS_REDIS_CLUSTER",
    ca: "--redis-tls-ca-file / AURELIS_REDIS_TLS_CA_FILE",
    cert: "--redis-tls-cert-file / AURELIS_REDIS_TLS_CERT_FILE",
    key: "--redis-tls-key-file / AURELIS_REDIS_TLS_KEY_FILE",
};

#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct SettingsError {
    flag: &'static str,
    problem: String,
}

pub(crate) fn bad(flag: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError { flag, problem: problem.into() }
}

impl Args {
    pub fn validate(self) -> Result<Settings, SettingsError> {
        let listen = parse_addr(&self.listen, "--listen / AURELIS_CACHE_LISTEN")?;
        let metrics_listen = parse_addr(&self.metrics_listen, "--metrics-listen / AURELIS_CACHE_METRICS_LISTEN")?;
        if listen == metrics_listen && listen.port() != 0 {
            return Err(bad("--listen", format!("and --metrics-listen are both {listen}: they need different ports")));
        }
        let redis = RedisInput {
            url: Some(self.redis_url),
            cluster: self.redis_cluster,
            password: self.redis_password,
            tls_ca_file: self.redis_tls_ca_file,
            tls_cert_file: self.redis_tls_cert_file,
            tls_key_file: self.redis_tls_key_file,
        }
        .validate(&FLAGS)?
        .ok_or_else(|| bad(FLAGS.url, "is empty"))?;
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
        let access = access::AccessInput {
            token: self.api_token,
            token_file: self.api_token_file,
            namespace: self.namespace,
            tokens_file: self.tokens_file,
            allow_unauthenticated: self.allow_unauthenticated,
            listen,
        }
        .validate()?;
        let refresh = refresh::RefreshInput {
            envoy_url: self.refresh_envoy_url,
            secret: self.refresh_secret,
            ahead_seconds: self.refresh_ahead_seconds,
            min_hits: self.refresh_min_hits,
            every_ms: self.refresh_every_ms,
            concurrency: self.refresh_concurrency,
            retry_seconds: self.refresh_retry_seconds,
            l3_configured: self.l3_store.as_ref().is_some_and(|s| !s.trim().is_empty()),
        }
        .validate()?;
        let l3 = l3::L3Input {
            store: self.l3_store,
            keys: self.l3_keys,
            keys_file: self.l3_keys_file,
            timeout_ms: self.l3_timeout_ms,
            ttl_seconds: self.l3_ttl_seconds,
            max_bytes: self.l3_max_bytes,
            max_value_bytes: self.max_value_bytes,
        }
        .validate()?;
        let refill = self.refill.validate()?;
        Ok(Settings {
            listen,
            metrics_listen,
            redis,
            store: StoreOptions {
                op_timeout: Duration::from_millis(self.redis_timeout_ms),
                max_value_bytes: self.max_value_bytes,
            },
            default_ttl: Duration::from_secs(self.default_ttl_seconds),
            compress_min_bytes: self.compress_min_bytes,
            worker_threads: self.worker_threads,
            access,
            l3,
            refill,
            refresh,
        })
    }
}

fn parse_addr(value: &str, flag: &'static str) -> Result<SocketAddr, SettingsError> {
    value.parse().map_err(|_| bad(flag, format!("`{value}` is not an IP:port address (e.g. 127.0.0.1:18080)")))
}

impl Settings {
    /// One line for the start-up log; no password or token appears.
    pub fn redacted(&self) -> String {
        format!(
            "listen={} metrics_listen={} {} redis_timeout_ms={} default_ttl_seconds={} max_value_bytes={} \
             compress_min_bytes={} worker_threads={} {} {} {} {}",
            self.listen,
            self.metrics_listen,
            self.redis.redacted(),
            self.store.op_timeout.as_millis(),
            self.default_ttl.as_secs(),
            self.store.max_value_bytes,
            self.compress_min_bytes,
            self.worker_threads,
            l3::describe(&self.l3),
            refill::describe(&self.refill),
            refresh::describe(&self.refresh),
            access::describe(&self.access),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;
    use std::path::PathBuf;

    const TOKEN: &str = "settings-test-token-0123456789abcdef";

    /// Parsed with a valid token in the environment, as a deployment has.
    fn parse(args: &[&str]) -> Args {
        Args { api_token: Some(TOKEN.into()), ..bare(args) }
    }

    fn bare(args: &[&str]) -> Args {
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
        assert!(
            matches!(s.redis.target, Target::Single { ref url, password: None } if url == "redis://127.0.0.1:6379")
        );
    }

    #[test]
    fn cluster_list_selects_cluster_mode() {
        let s = parse(&["--redis-cluster", "redis://a:1, redis://b:2"]).validate().unwrap();
        let Target::Cluster { nodes, .. } = &s.redis.target else { panic!("expected cluster") };
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
    fn l3_needs_a_key_and_never_prints_secrets() {
        const KEY: &str = "k1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        assert!(parse(&[]).validate().unwrap().redacted().contains(" l3=off "));
        let pg = ["--l3-store", "postgres://aurelis:pg-s3cret@db:5432/l3"];
        let err = parse(&pg).validate().err().unwrap().to_string();
        assert!(err.starts_with("AURELIS_L3_KEYS or --l3-keys-file") && err.contains("no key"), "{err}");
        let s = Args { l3_keys: Some(KEY.into()), ..parse(&pg) }.validate().unwrap();
        let line = s.redacted();
        assert!(line.contains("l3=postgres://aurelis:<redacted>@db:5432/l3 (pool 4) l3_key_id=k1"), "{line}");
        assert!(!line.contains("pg-s3cret") && !line.contains("00112233"), "{line}");
        let bad_key = Args { l3_keys: Some("k1:00112233".into()), ..parse(&["--l3-store", "sqlite:l3.db"]) };
        let err = bad_key.validate().err().unwrap().to_string();
        assert!(err.contains("entry 1") && !err.contains("00112233"), "{err}");
        let slow = Args { l3_keys: Some(KEY.into()), ..parse(&["--l3-store", "x.db", "--l3-timeout-ms", "0"]) };
        assert!(slow.validate().err().unwrap().to_string().starts_with("--l3-timeout-ms"));
    }

    #[test]
    fn the_api_token_is_required_checked_and_never_printed() {
        let s = parse(&[]).validate().unwrap();
        let line = s.redacted();
        assert!(line.ends_with(" api_tokens=1 namespaces=aurelis") && !line.contains(TOKEN), "{line}");
        // Without a token the service refuses to start, naming the setting.
        let err = bare(&[]).validate().err().unwrap().to_string();
        assert!(err.starts_with("AURELIS_CACHE_API_TOKEN: is required"), "{err}");
        // Unless told to run open, on loopback only.
        let s = bare(&["--allow-unauthenticated"]).validate().unwrap();
        assert!(s.redacted().ends_with(" api_tokens=<none> (unauthenticated: loopback only)"));
        let err = bare(&["--allow-unauthenticated", "--listen", "0.0.0.0:18080"]).validate().err().unwrap();
        assert!(err.to_string().starts_with("--allow-unauthenticated"), "{err}");
        // A token can be bound to another namespace.
        assert!(parse(&["--namespace", "fleet-a"]).validate().unwrap().redacted().ends_with("namespaces=fleet-a"));
        // No flag takes the token itself: `ps` would show it.
        let command = <Args as clap::CommandFactory>::command();
        assert!(command.get_arguments().all(|a| a.get_id() != "api_token"));
        assert!(Args::try_parse_from(["aurelis-cache", "--api-token", TOKEN]).is_err());
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

    /// PEM files in a fresh directory, removed on drop.
    struct PemDir(PathBuf);

    impl PemDir {
        fn new(name: &str) -> PemDir {
            let dir = std::env::temp_dir().join(format!("aurelis-settings-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            PemDir(dir)
        }

        fn file(&self, name: &str, contents: &str) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path.display().to_string()
        }
    }

    impl Drop for PemDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn refused(args: &[&str]) -> String {
        parse(args).validate().err().unwrap_or_else(|| panic!("{args:?} accepted")).to_string()
    }

    #[test]
    fn tls_is_reported_without_secrets() {
        assert!(parse(&[]).validate().unwrap().redacted().contains(" redis_tls=off "));
        let line = parse(&["--redis-url", "rediss://r:6380"]).validate().unwrap().redacted();
        assert!(line.contains(" redis_tls=on redis_tls_roots=system redis_tls_client_cert=<unset> "), "{line}");

        let pki = crate::store::tls::test_pki::pki();
        let dir = PemDir::new("report");
        let (ca, cert, key) =
            (dir.file("ca.pem", &pki.ca), dir.file("client.pem", &pki.leaf), dir.file("client.key", &pki.leaf_key));
        let s = parse(&[
            "--redis-url",
            "rediss://r:6380",
            "--redis-tls-ca-file",
            &ca,
            "--redis-tls-cert-file",
            &cert,
            "--redis-tls-key-file",
            &key,
        ])
        .validate()
        .unwrap();
        assert!(s.redis.tls.has_ca() && s.redis.tls.has_client_identity());
        let line = s.redacted();
        assert!(
            line.contains(&format!(" redis_tls=on redis_tls_roots=ca-file:{ca} redis_tls_client_cert={cert} ")),
            "{line}"
        );
        assert!(!line.contains("PRIVATE KEY") && !line.contains("BEGIN"), "{line}");
        // A cluster of rediss:// nodes takes the same files.
        let s =
            parse(&["--redis-cluster", "rediss://a:1,rediss://b:2", "--redis-tls-ca-file", &ca]).validate().unwrap();
        assert!(s.redis.tls.has_ca() && !s.redis.tls.has_client_identity());
    }

    #[test]
    fn empty_tls_settings_mean_unset() {
        let s = parse(&["--redis-tls-ca-file", "", "--redis-tls-cert-file", "", "--redis-tls-key-file", ""])
            .validate()
            .unwrap();
        assert!(!s.redis.tls.is_set());
    }

    #[test]
    fn tls_files_need_rediss_urls() {
        let pki = crate::store::tls::test_pki::pki();
        let dir = PemDir::new("plain");
        let ca = dir.file("ca.pem", &pki.ca);
        let err = refused(&["--redis-url", "redis://:hunter2@r:6379", "--redis-tls-ca-file", &ca]);
        assert!(err.starts_with("--redis-tls-ca-file / AURELIS_REDIS_TLS_CA_FILE: "), "{err}");
        assert!(
            err.contains("--redis-url / AURELIS_REDIS_URL must use rediss://")
                && err.contains("redis://:<redacted>@r:6379"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        // Every cluster node must be TLS.
        let err = refused(&["--redis-cluster", "rediss://a:1,redis://b:2", "--redis-tls-ca-file", &ca]);
        assert!(
            err.starts_with("--redis-tls-ca-file")
                && err.contains("--redis-cluster / AURELIS_REDIS_CLUSTER must use rediss://"),
            "{err}"
        );
        let err = refused(&["--redis-tls-cert-file", "c.pem", "--redis-tls-key-file", "k.pem"]);
        assert!(err.starts_with("--redis-tls-cert-file / AURELIS_REDIS_TLS_CERT_FILE: "), "{err}");
    }

    #[test]
    fn unusable_tls_files_name_the_flag_and_path() {
        let pki = crate::store::tls::test_pki::pki();
        let dir = PemDir::new("bad");
        let ca = dir.file("ca.pem", &pki.ca);
        let cert = dir.file("client.pem", &pki.leaf);
        let key = dir.file("client.key", &pki.leaf_key);
        let garbage = dir.file("garbage.pem", "not a certificate\n");
        let other_key = dir.file("other.key", &pki.other_key);
        let missing = dir.0.join("missing.pem").display().to_string();
        let tls = |extra: &[&str]| {
            let mut args = vec!["--redis-url", "rediss://r:6380"];
            args.extend_from_slice(extra);
            refused(&args)
        };
        for (args, flag, path, problem) in [
            (
                vec!["--redis-tls-ca-file", &missing],
                "--redis-tls-ca-file / AURELIS_REDIS_TLS_CA_FILE",
                &missing,
                "cannot read",
            ),
            (vec!["--redis-tls-ca-file", &garbage], "--redis-tls-ca-file", &garbage, "no PEM `CERTIFICATE` block"),
            (vec!["--redis-tls-ca-file", &key], "--redis-tls-ca-file", &key, "no PEM `CERTIFICATE` block"),
            (
                vec!["--redis-tls-ca-file", &ca, "--redis-tls-cert-file", &cert, "--redis-tls-key-file", &missing],
                "--redis-tls-key-file / AURELIS_REDIS_TLS_KEY_FILE",
                &missing,
                "cannot read",
            ),
            (
                vec!["--redis-tls-cert-file", &missing, "--redis-tls-key-file", &key],
                "--redis-tls-cert-file / AURELIS_REDIS_TLS_CERT_FILE",
                &missing,
                "cannot read",
            ),
            (
                vec!["--redis-tls-cert-file", &garbage, "--redis-tls-key-file", &key],
                "--redis-tls-cert-file",
                &garbage,
                "no PEM `CERTIFICATE` block",
            ),
            (
                vec!["--redis-tls-cert-file", &cert, "--redis-tls-key-file", &garbage],
                "--redis-tls-key-file",
                &garbage,
                "no usable PEM private key",
            ),
            (
                vec!["--redis-tls-cert-file", &cert, "--redis-tls-key-file", &other_key],
                "--redis-tls-key-file",
                &other_key,
                "cannot be used with the client certificate",
            ),
        ] {
            let err = tls(&args);
            assert!(err.starts_with(flag), "{args:?}: {err}");
            assert!(
                err.contains(&format!(": {path}: ")) || err.contains(&format!("cannot read {path}: ")),
                "{args:?}: {err}"
            );
            assert!(err.contains(problem), "{args:?}: {err}");
        }
        let err = tls(&["--redis-tls-cert-file", &cert]);
        assert!(err.starts_with("--redis-tls-cert-file") && err.contains("without --redis-tls-key-file"), "{err}");
        let err = tls(&["--redis-tls-key-file", &key]);
        assert!(err.starts_with("--redis-tls-key-file") && err.contains("without --redis-tls-cert-file"), "{err}");
    }
}
