//! Settings: every flag also reads an environment variable; validated once at start-up and
//! printed with secrets redacted.
use crate::model::{Model, Secrets};
use crate::xds::limits::StreamLimits;
use crate::xds::tls::XdsTls;
use anyhow::{bail, Context, Result};
use aurelis_cache_service::settings::{RedisConnection, RedisFlags, RedisInput};
use aurelis_core::config::FilterConfig;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod manifests;
mod security;
mod webhook;
use security::{admin_token, xds_tls, ADMIN_TOKEN_FILE_FLAG};
pub use security::{ADMIN_TOKEN_ENV, MIN_ADMIN_TOKEN_BYTES};

#[derive(Parser)]
#[command(name = "aurelis-control-plane", version, about = "Aurelis control plane")]
// The serve flags are also accepted without the `serve` word (it is the default command), but
// not mixed with another subcommand, where they would be silently ignored.
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// The subcommand to run: `serve` with the top-level flags when none is named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(Box::new(self.serve)))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve xDS, the admin API and metrics (the default).
    Serve(Box<ServeArgs>),
    /// Validate a model file (YAML), a filter configuration (JSON), or the filter
    /// configurations inside Kubernetes manifests (Istio WasmPlugin `pluginConfig`, EnvoyFilter
    /// Wasm extension config, Envoy Gateway EnvoyExtensionPolicy `wasm[].config`) offline, with
    /// the same code the server and the filter use; exit code 0/1.
    CheckConfig { file: PathBuf },
    /// Render Envoy configuration files from a model file with the compile step that feeds xDS:
    /// the static drop-in (`aurelis-static.yaml`) and the ADS bootstraps. `make envoy-configs`
    /// writes the shipped `envoy/*.yaml` this way.
    RenderEnvoy {
        /// The model file (YAML) the static drop-in serves.
        #[arg(long, value_name = "FILE", default_value = crate::render::STATIC_MODEL)]
        model: PathBuf,
        /// Path of the filter module as Envoy will find it.
        #[arg(long, value_name = "FILE", default_value = crate::render::SHIPPED_WASM_PATH)]
        wasm_path: String,
        /// Directory to write the files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the fleet's performance report (the admin API's `GET /v1/report`) as a table.
    /// The admin token comes from AURELIS_ADMIN_TOKEN or --admin-token-file, as for serving.
    Report {
        #[arg(long, default_value = "24h", value_name = "1h|24h|7d|30d")]
        period: String,
        /// The control plane's admin API.
        #[arg(long, env = "AURELIS_ADMIN_URL", default_value = "http://127.0.0.1:18000", value_name = "URL")]
        admin_url: String,
        #[arg(long, env = "AURELIS_ADMIN_TOKEN_FILE", value_name = "FILE")]
        admin_token_file: Option<PathBuf>,
    },
}

/// The admin token a client command (`report`) sends, from the same places the server reads it.
pub fn client_admin_token(file: Option<&Path>) -> Result<Option<String>> {
    Ok(admin_token(file, &|name| std::env::var(name).ok())?.0)
}

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    // Addresses are parsed in `validate`, not by clap: clap reads these variables even for
    // `check-config`, which must not fail because the serving environment is set differently.
    /// Admin API listen address (health, filter configuration).
    #[arg(long, env = "AURELIS_ADMIN_LISTEN", default_value = "127.0.0.1:18000", value_name = "ADDR")]
    pub admin_listen: String,
    /// Prometheus metrics listen address (`/metrics`), separate so it can be exposed alone.
    #[arg(long, env = "AURELIS_METRICS_LISTEN", default_value = "127.0.0.1:18001", value_name = "ADDR")]
    pub metrics_listen: String,
    /// xDS (ADS, gRPC) listen address Envoys connect to.
    #[arg(long, env = "AURELIS_XDS_LISTEN", default_value = "127.0.0.1:18002", value_name = "ADDR")]
    pub xds_listen: String,
    /// PEM certificate chain the control plane presents on xDS; its URI SAN should be
    /// `spiffe://aurelis/control-plane` (rendered Envoy bootstraps accept no other).
    #[arg(long, env = "AURELIS_XDS_TLS_CERT_FILE", value_name = "PEM_FILE")]
    pub xds_tls_cert_file: Option<PathBuf>,
    /// PEM private key of --xds-tls-cert-file; its contents are never printed.
    #[arg(long, env = "AURELIS_XDS_TLS_KEY_FILE", value_name = "PEM_FILE")]
    pub xds_tls_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) Envoys' client certificates must chain to. A certificate names its
    /// node with the URI SAN `spiffe://aurelis/node/<node id>`; other node ids are refused.
    #[arg(long, env = "AURELIS_XDS_TLS_CLIENT_CA_FILE", value_name = "PEM_FILE")]
    pub xds_tls_client_ca_file: Option<PathBuf>,
    /// Serve xDS without TLS and take node ids as sent: development only, and only on a
    /// loopback --xds-listen (`make run` and the tests use it).
    #[arg(long, env = "AURELIS_XDS_PLAINTEXT_LOOPBACK")]
    pub xds_plaintext_loopback: bool,
    /// Largest xDS request accepted from an Envoy, in bytes; a larger one ends its stream.
    #[arg(long, env = "AURELIS_XDS_MAX_REQUEST_BYTES", default_value = "1048576", value_name = "BYTES")]
    pub xds_max_request_bytes: String,
    /// Requests one ADS stream may send at once before --xds-requests-per-second applies.
    #[arg(long, env = "AURELIS_XDS_REQUEST_BURST", default_value = "100", value_name = "N")]
    pub xds_request_burst: String,
    /// Sustained requests per second per ADS stream; past it the stream is ended
    /// (RESOURCE_EXHAUSTED) and Envoy reconnects with backoff.
    #[arg(long, env = "AURELIS_XDS_REQUESTS_PER_SECOND", default_value = "20", value_name = "N")]
    pub xds_requests_per_second: String,
    /// The model file (YAML): providers, models and weights, listener, filter settings.
    /// Without it, the embedded default (the mock provider on 127.0.0.1:8000) is served.
    #[arg(long, env = "AURELIS_MODEL", value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// JSON filter configuration; replaces the model file's `filter` section when given.
    #[arg(long, env = "AURELIS_FILTER_CONFIG", value_name = "FILE")]
    pub filter_config: Option<PathBuf>,
    /// Path of the filter module (`aurelis_filter.wasm`) on the Envoy hosts.
    #[arg(long, env = "AURELIS_WASM_PATH", default_value = "/etc/aurelis/aurelis_filter.wasm", value_name = "FILE")]
    pub wasm_path: String,
    /// Redis (`redis://` or `rediss://`) of the L2 cache, for purges through the admin API;
    /// without it, purges answer 503.
    #[arg(long, env = "AURELIS_L2_REDIS_URL", value_name = "URL")]
    pub l2_redis_url: Option<String>,
    /// Comma-separated Redis Cluster seed node URLs of the L2 cache (instead of the URL).
    #[arg(long, env = "AURELIS_L2_REDIS_CLUSTER", value_name = "URLS")]
    pub l2_redis_cluster: Option<String>,
    /// Password for that Redis (overrides one in the URL); never printed.
    #[arg(long, env = "AURELIS_L2_REDIS_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub l2_redis_password: Option<String>,
    /// PEM CA certificate(s) trusted for `rediss://` instead of the system's roots.
    #[arg(long, env = "AURELIS_L2_REDIS_TLS_CA_FILE", value_name = "PEM_FILE")]
    pub l2_redis_tls_ca_file: Option<OsString>,
    /// PEM client certificate chain for mutual TLS with Redis (with --l2-redis-tls-key-file).
    #[arg(long, env = "AURELIS_L2_REDIS_TLS_CERT_FILE", value_name = "PEM_FILE")]
    pub l2_redis_tls_cert_file: Option<OsString>,
    /// PEM private key of --l2-redis-tls-cert-file; its contents are never printed.
    #[arg(long, env = "AURELIS_L2_REDIS_TLS_KEY_FILE", value_name = "PEM_FILE")]
    pub l2_redis_tls_key_file: Option<OsString>,
    /// File holding the admin bearer token (at least 32 bytes; one trailing newline is
    /// ignored). Or set `AURELIS_ADMIN_TOKEN`. There is no flag taking the token itself: a
    /// command line is visible to every user in `ps`. Without a token, every `/v1` route is
    /// refused, and an admin listener off loopback refuses to start.
    #[arg(long, env = "AURELIS_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Where fleet telemetry history (the report's windows) is kept: a file path for the
    /// embedded database (default: next to where the control plane runs), or
    /// `postgres://user:password@host:port/db` for PostgreSQL (replicas, fleets). The password
    /// is never printed.
    #[arg(long, env = "AURELIS_HISTORY", default_value = DEFAULT_HISTORY, value_name = "PATH|URL", hide_env_values = true)]
    pub history: String,
    /// Anomaly events (raised and cleared) are POSTed here as JSON, with bounded retries.
    /// Optional; the URL is never printed whole (chat webhooks carry a credential in it).
    #[arg(long, env = "AURELIS_ANOMALY_WEBHOOK_URL", value_name = "URL")]
    pub anomaly_webhook_url: Option<String>,
    /// File holding a secret the webhook receives as `authorization: Bearer <secret>`. Or set
    /// `AURELIS_ANOMALY_WEBHOOK_SECRET`.
    #[arg(long, env = "AURELIS_ANOMALY_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub anomaly_webhook_secret_file: Option<PathBuf>,
}

/// The embedded history database's default file, relative to the working directory.
pub const DEFAULT_HISTORY: &str = "aurelis-history.db";

/// Validated settings. Deliberately not `Debug`: the token must only leave via `redacted()`.
pub struct Settings {
    pub admin_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub xds_listen: SocketAddr,
    /// xDS over TLS with client certificates; `None`: plaintext on loopback (checked).
    pub xds_tls: Option<XdsTls>,
    pub xds_limits: StreamLimits,
    pub model: Model,
    pub model_path: Option<PathBuf>,
    /// Header values for providers, from the environment the model names.
    pub secrets: Secrets,
    pub filter_config: FilterConfig,
    pub filter_config_path: Option<PathBuf>,
    pub wasm_path: String,
    /// Where purges go; `None`: not configured.
    pub l2_redis: Option<RedisConnection>,
    pub admin_token: Option<String>,
    /// Telemetry history: the embedded file database or PostgreSQL.
    pub history: aurelis_store::StoreSettings,
    /// Where anomaly events are POSTed; `None`: nowhere (they are still in `/v1/events`).
    pub anomaly_webhook: Option<crate::anomaly::webhook::WebhookTarget>,
    /// Where the token came from, for the start-up line.
    admin_token_source: String,
}

impl ServeArgs {
    /// Validates against the process environment.
    pub fn validate(self) -> Result<Settings> {
        self.validate_with(&|name| std::env::var(name).ok())
    }

    /// Validates with `env` as the environment (the admin token, provider secrets), so tests
    /// need not change the process's.
    pub fn validate_with(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings> {
        let admin_listen = parse_addr(&self.admin_listen, "--admin-listen / AURELIS_ADMIN_LISTEN")?;
        let metrics_listen = parse_addr(&self.metrics_listen, "--metrics-listen / AURELIS_METRICS_LISTEN")?;
        let xds_listen = parse_addr(&self.xds_listen, "--xds-listen / AURELIS_XDS_LISTEN")?;
        let ports = [admin_listen, metrics_listen, xds_listen];
        for (i, a) in ports.iter().enumerate() {
            if a.port() != 0 && ports.iter().skip(i + 1).any(|b| b == a) {
                bail!("--admin-listen, --metrics-listen and --xds-listen need different addresses ({a} is used twice)");
            }
        }
        let model = match &self.model {
            Some(path) => Model::load(path).with_context(|| format!("--model {}", path.display()))?,
            None => Model::embedded_default(),
        };
        let secrets = model.resolve_secrets(env)?;
        let filter_config = match &self.filter_config {
            Some(path) => {
                let filter = load_filter_config(path)?;
                model
                    .check_filter(&filter)
                    .with_context(|| format!("--filter-config {} does not fit the model", path.display()))?;
                filter
            }
            None => model.filter_config()?,
        };
        if self.wasm_path.trim().is_empty() {
            bail!("--wasm-path / AURELIS_WASM_PATH is empty");
        }
        let (admin_token, admin_token_source) = admin_token(self.admin_token_file.as_deref(), env)?;
        if admin_token.is_none() && !admin_listen.ip().is_loopback() {
            bail!(
                "--admin-listen / AURELIS_ADMIN_LISTEN is {admin_listen}, off loopback, without an admin token: \
                 set {ADMIN_TOKEN_ENV} or {ADMIN_TOKEN_FILE_FLAG} (or listen on 127.0.0.1)"
            );
        }
        let xds_tls = xds_tls(&self, xds_listen)?;
        let anomaly_webhook = webhook::anomaly_webhook(
            self.anomaly_webhook_url.as_deref(),
            self.anomaly_webhook_secret_file.as_deref(),
            env,
        )?;
        // Zero would refuse every request (or, for the rate, every request past the burst).
        let xds_limits = StreamLimits {
            max_request_bytes: parse_positive(
                &self.xds_max_request_bytes,
                "--xds-max-request-bytes / AURELIS_XDS_MAX_REQUEST_BYTES",
            )?,
            burst: parse_positive(&self.xds_request_burst, "--xds-request-burst / AURELIS_XDS_REQUEST_BURST")?,
            per_second: parse_positive(
                &self.xds_requests_per_second,
                "--xds-requests-per-second / AURELIS_XDS_REQUESTS_PER_SECOND",
            )?,
        };
        // The cache service's own checks, under our flag names.
        let l2_redis = RedisInput {
            url: self.l2_redis_url,
            cluster: self.l2_redis_cluster,
            password: self.l2_redis_password,
            tls_ca_file: self.l2_redis_tls_ca_file,
            tls_cert_file: self.l2_redis_tls_cert_file,
            tls_key_file: self.l2_redis_tls_key_file,
        }
        .validate(&L2_REDIS_FLAGS)?;
        let history = aurelis_store::StoreSettings::parse(&self.history)
            .map_err(|e| anyhow::anyhow!("--history / AURELIS_HISTORY: {e}"))?;
        Ok(Settings {
            history,
            l2_redis,
            admin_listen,
            metrics_listen,
            xds_listen,
            xds_tls,
            xds_limits,
            model,
            model_path: self.model,
            secrets,
            filter_config,
            filter_config_path: self.filter_config,
            wasm_path: self.wasm_path,
            admin_token,
            admin_token_source,
            anomaly_webhook,
        })
    }
}

fn parse_positive<T: std::str::FromStr + Default + PartialEq>(value: &str, name: &str) -> Result<T> {
    match value.parse::<T>() {
        Ok(n) if n != T::default() => Ok(n),
        _ => bail!("{name}: `{value}` is not a whole number of at least 1"),
    }
}

const L2_REDIS_FLAGS: RedisFlags = RedisFlags {
    url: "--l2-redis-url / AURELIS_L2_REDIS_URL",
    cluster: "--l2-redis-cluster / AURELIS_L2_REDIS_CLUSTER",
    ca: "--l2-redis-tls-ca-file / AURELIS_L2_REDIS_TLS_CA_FILE",
    cert: "--l2-redis-tls-cert-file / AURELIS_L2_REDIS_TLS_CERT_FILE",
    key: "--l2-redis-tls-key-file / AURELIS_L2_REDIS_TLS_KEY_FILE",
};

fn parse_addr(value: &str, name: &str) -> Result<SocketAddr> {
    value.parse().with_context(|| format!("{name}: `{value}` is not an IP:port address (e.g. 127.0.0.1:18000)"))
}

impl Settings {
    /// One line for the start-up log; the token never appears.
    pub fn redacted(&self) -> String {
        let injected: usize = self.model.providers.iter().map(|p| p.headers.len()).sum();
        format!(
            "admin_listen={} metrics_listen={} xds_listen={} xds_tls={} xds_limits={{max_request_bytes={} burst={} per_second={}}} model={} ({} providers, {} models, {} injected headers <redacted>) filter_config={} wasm_path={} l2_redis={} history={} admin_token={} anomaly_webhook={}",
            self.admin_listen,
            self.metrics_listen,
            self.xds_listen,
            self.xds_tls.as_ref().map_or("off (plaintext, loopback only)".to_string(), |t| {
                let f = t.files();
                format!("{{cert={} key={} client_ca={}}}", f.cert.display(), f.key.display(), f.client_ca.display())
            }),
            self.xds_limits.max_request_bytes,
            self.xds_limits.burst,
            self.xds_limits.per_second,
            self.model_path.as_ref().map_or("<embedded default>".to_string(), |p| p.display().to_string()),
            self.model.providers.len(),
            self.model.models.len(),
            injected,
            self.filter_config_path.as_ref().map_or("<from the model>".to_string(), |p| p.display().to_string()),
            self.wasm_path,
            self.l2_redis.as_ref().map_or("<unset> (purges refused)".to_string(), |r| format!("{{{}}}", r.redacted())),
            self.history,
            if self.admin_token.is_some() {
                format!("<redacted> (from {})", self.admin_token_source)
            } else {
                "<unset> (admin API refused)".to_string()
            },
            self.anomaly_webhook.as_ref().map_or("<unset>".to_string(), |w| format!(
                "{} (secret {})",
                w.redacted(),
                if w.secret.is_some() { "<redacted>" } else { "<unset>" }
            ))
        )
    }
}

/// Reads and validates with `FilterConfig::from_json`, the very function the filter's
/// `on_configure` uses, so "ok" here means the filter accepts it.
pub fn load_filter_config(path: &Path) -> Result<FilterConfig> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    FilterConfig::from_json(&bytes).with_context(|| format!("{}", path.display()))
}

/// A model file has `providers`/`models`; anything else is taken as a filter configuration.
fn is_model_file(text: &str) -> bool {
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text)
        .ok()
        .and_then(|v| v.as_mapping().map(|m| ["providers", "models", "listener"].iter().any(|k| m.contains_key(*k))))
        .unwrap_or(false)
}

fn check_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(embedded) = manifests::embedded_filter_configs(&text)? {
        manifests::check(&embedded).with_context(|| format!("{}", path.display()))?;
        return Ok(format!("Kubernetes manifests, {} filter configuration(s)", embedded.len()));
    }
    if is_model_file(&text) {
        Model::from_yaml(&text).with_context(|| format!("{}", path.display()))?;
        Ok("model".into())
    } else {
        load_filter_config(path)?;
        Ok("filter configuration".into())
    }
}

/// `check-config`: prints `ok` or the error naming the field and value; returns the exit code.
pub fn check_config(path: &Path) -> i32 {
    match check_file(path) {
        Ok(kind) => {
            println!("ok: {} ({kind})", path.display());
            0
        }
        Err(e) => {
            eprintln!("invalid: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aurelis-cp-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn check_config_names_the_unknown_field() {
        let dir = temp_dir("check");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"cache":{"ttl":5}}"#).unwrap();
        let err = load_filter_config(&bad).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field `ttl`"), "{err:#}");
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"cache":{"ttl_seconds":5}}"#).unwrap();
        assert_eq!(check_config(&good), 0);
        assert_eq!(check_config(&bad), 1);
        assert_eq!(check_config(&dir.join("missing.json")), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn check_config_names_the_invalid_value() {
        let dir = temp_dir("value");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"cache":{"ttl_seconds":0}}"#).unwrap();
        let err = format!("{:#}", load_filter_config(&bad).unwrap_err());
        assert!(err.contains("`cache.ttl_seconds`: 0"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    const TOKEN: &str = "s3cret-s3cret-s3cret-s3cret-s3cret";

    /// An environment holding only the admin token.
    fn token_env(token: &'static str) -> impl Fn(&str) -> Option<String> {
        move |name| (name == ADMIN_TOKEN_ENV).then(|| token.to_string())
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn refusal(args: &[&str], env: &dyn Fn(&str) -> Option<String>) -> String {
        match ServeArgs::parse_exact(args).validate_with(env) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn the_token_is_never_printed() {
        let settings = ServeArgs::parse(&[]).validate_with(&token_env(TOKEN)).unwrap();
        assert!(!settings.redacted().contains(TOKEN));
        assert!(settings.redacted().contains("admin_token=<redacted> (from AURELIS_ADMIN_TOKEN)"));
        let settings = ServeArgs::parse(&[]).validate_with(&token_env("")).unwrap();
        assert!(settings.admin_token.is_none(), "empty means unset");
        assert!(settings.redacted().contains("admin_token=<unset>"));
    }

    #[test]
    fn the_admin_token_comes_from_the_environment_or_a_file_never_a_flag() {
        assert!(Cli::try_parse_from(["cp", "--admin-token", TOKEN]).is_err(), "a flag would show in `ps`");
        let dir = temp_dir("token");
        let file = dir.join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let path = file.to_str().unwrap();
        let settings = ServeArgs::parse(&["--admin-token-file", path]).validate_with(&no_env).unwrap();
        assert_eq!(settings.admin_token.as_deref(), Some(TOKEN), "one trailing newline is no part of it");
        assert!(settings.redacted().contains(&format!("<redacted> (from file {path})")), "{}", settings.redacted());

        let err = refusal(&["--xds-plaintext-loopback", "--admin-token-file", path], &token_env(TOKEN));
        assert!(err.contains("not both"), "{err}");
        let short = "abcdefghijklmnopqrstuvwxyz01234"; // 31 bytes
        let err = refusal(&["--xds-plaintext-loopback"], &token_env(short));
        assert!(
            err.contains("AURELIS_ADMIN_TOKEN") && err.contains("31 bytes") && err.contains("at least 32"),
            "{err}"
        );
        assert!(!err.contains(short), "the token is not echoed: {err}");
        std::fs::write(&file, "two words and some more padding to pass 32").unwrap();
        let err = refusal(&["--xds-plaintext-loopback", "--admin-token-file", path], &no_env);
        assert!(err.contains("--admin-token-file") && err.contains("printable ASCII"), "{err}");
        assert!(!err.contains("padding"), "the token is not echoed: {err}");
        let missing = dir.join("missing");
        let err = refusal(&["--xds-plaintext-loopback", "--admin-token-file", missing.to_str().unwrap()], &no_env);
        assert!(err.contains("--admin-token-file") && err.contains("cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_admin_listener_off_loopback_needs_a_token() {
        let exposed = ["--xds-plaintext-loopback", "--admin-listen", "0.0.0.0:18000"];
        let err = refusal(&exposed, &no_env);
        assert!(
            err.contains("--admin-listen") && err.contains("0.0.0.0:18000") && err.contains("AURELIS_ADMIN_TOKEN"),
            "{err}"
        );
        assert!(ServeArgs::parse_exact(&exposed).validate_with(&token_env(TOKEN)).is_ok());
        let ipv6 = ["--xds-plaintext-loopback", "--admin-listen", "[::1]:18000"];
        assert!(ServeArgs::parse_exact(&ipv6).validate_with(&no_env).is_ok(), "::1 is loopback");
    }

    #[test]
    fn xds_is_tls_or_explicitly_plaintext_on_loopback() {
        let err = refusal(&[], &no_env);
        for name in
            ["--xds-tls-cert-file", "--xds-tls-key-file", "--xds-tls-client-ca-file", "--xds-plaintext-loopback"]
        {
            assert!(err.contains(name), "{name} missing from {err}");
        }
        let err = refusal(&["--xds-plaintext-loopback", "--xds-listen", "0.0.0.0:18002"], &no_env);
        assert!(
            err.contains("--xds-plaintext-loopback")
                && err.contains("AURELIS_XDS_LISTEN")
                && err.contains("0.0.0.0:18002"),
            "{err}"
        );
        let err = refusal(&["--xds-tls-cert-file", "/c.pem"], &no_env);
        assert!(err.contains("missing: --xds-tls-key-file") && err.contains("--xds-tls-client-ca-file"), "{err}");
        assert!(!err.contains("missing: --xds-tls-cert-file"), "{err}");

        let dir = temp_dir("xds-tls");
        let ca = crate::xds::tls::test_pki::Ca::new();
        let server = ca.leaf(&[crate::xds::tls::CONTROL_PLANE_URI], &[]);
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let (cert, key, client_ca) =
            (write("cert.pem", &server.cert_pem), write("key.pem", &server.key_pem), write("ca.pem", &ca.pem));
        let tls = ["--xds-listen", "0.0.0.0:18002", "--xds-tls-cert-file", &cert, "--xds-tls-key-file", &key];
        let tls: Vec<&str> = tls.into_iter().chain(["--xds-tls-client-ca-file", client_ca.as_str()]).collect();
        let settings = ServeArgs::parse_exact(&tls).validate_with(&no_env).unwrap();
        let line = settings.redacted();
        assert!(line.contains(&format!("xds_tls={{cert={cert} key={key} client_ca={client_ca}}}")), "{line}");
        assert!(!line.contains("PRIVATE KEY"), "{line}");
        let both: Vec<&str> = tls.iter().copied().chain(["--xds-plaintext-loopback"]).collect();
        assert!(refusal(&both, &no_env).contains("choose one"));
        let bad_ca: Vec<&str> = tls.iter().map(|a| if *a == client_ca { key.as_str() } else { a }).collect();
        let err = refusal(&bad_ca, &no_env);
        assert!(err.contains("--xds-tls-client-ca-file") && err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stream_limits_are_settings() {
        let settings = ServeArgs::parse(&[]).validate_with(&no_env).unwrap();
        assert_eq!(settings.xds_limits, StreamLimits::default());
        assert!(settings.redacted().contains("xds_limits={max_request_bytes=1048576 burst=100 per_second=20}"));
        let settings = ServeArgs::parse(&["--xds-requests-per-second", "5"]).validate_with(&no_env).unwrap();
        assert_eq!(settings.xds_limits.per_second, 5);
        let err = refusal(&["--xds-plaintext-loopback", "--xds-request-burst", "many"], &no_env);
        assert!(err.contains("--xds-request-burst") && err.contains("`many`"), "{err}");
        let err = refusal(&["--xds-plaintext-loopback", "--xds-requests-per-second", "0"], &no_env);
        assert!(err.contains("--xds-requests-per-second") && err.contains("at least 1"), "{err}");
    }

    #[test]
    fn start_up_refuses_bad_settings() {
        let same = ["--admin-listen", "127.0.0.1:9", "--metrics-listen", "127.0.0.1:9"];
        assert!(ServeArgs::parse(&same).validate().is_err());
        let err = ServeArgs::parse(&["--admin-listen", "localhost"]).validate().err().unwrap();
        assert!(err.to_string().contains("--admin-listen"), "{err}");
    }

    #[test]
    fn serve_is_the_default_command_and_takes_top_level_flags() {
        let cli = Cli::try_parse_from(["cp", "--admin-listen", "127.0.0.1:1"]).unwrap();
        let Command::Serve(args) = cli.into_command() else { panic!("expected serve") };
        assert_eq!(args.admin_listen, "127.0.0.1:1");
        let cli = Cli::try_parse_from(["cp", "serve", "--metrics-listen", "127.0.0.1:2"]).unwrap();
        let Command::Serve(args) = cli.into_command() else { panic!("expected serve") };
        assert_eq!(args.metrics_listen, "127.0.0.1:2");
        let cli = Cli::try_parse_from(["cp", "check-config", "x.json"]).unwrap();
        assert!(matches!(cli.into_command(), Command::CheckConfig { .. }));
        assert!(Cli::try_parse_from(["cp", "--admin-listen", "127.0.0.1:1", "check-config", "x"]).is_err());
    }

    #[test]
    fn provider_secrets_never_appear_in_the_redacted_settings() {
        let var = format!("AURELIS_TEST_SECRET_{}", std::process::id());
        let secret = "sk-test-9f8e7d6c5b4a";
        // A name only this test uses, so setting it cannot disturb other tests.
        std::env::set_var(&var, secret);
        let dir = temp_dir("secret");
        let model = dir.join("model.yaml");
        let yaml = format!(
            "providers:\n  - name: mock\n    base_url: http://127.0.0.1:8000/v1\n    headers:\n      \
             - {{ name: authorization, value_from_env: {var}, prefix: 'Bearer ' }}\n\
             models:\n  - {{ name: gpt-4o-mini, providers: [{{ provider: mock, weight: 1 }}] }}\n\
             filter: {{ auth: {{ consumers: [{{ name: a, key_sha256: ['{}'] }}] }} }}\n",
            aurelis_core::auth::key_sha256("client key")
        );
        std::fs::write(&model, yaml).unwrap();
        let path = model.to_str().unwrap();
        let settings = ServeArgs::parse(&["--model", path]).validate().unwrap();
        assert_eq!(settings.secrets.get("mock", "authorization"), Some(format!("Bearer {secret}").as_str()));
        let line = settings.redacted();
        assert!(!line.contains(secret), "{line}");
        assert!(line.contains("1 injected headers <redacted>"), "{line}");
        assert!(line.contains(path), "{line}");

        // Without the variable, start-up fails naming it (and still shows no value).
        std::env::remove_var(&var);
        let err = format!("{:#}", ServeArgs::parse(&["--model", path]).validate().err().unwrap());
        assert!(err.contains(&var) && err.contains("value_from_env"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_xds_and_admin_listeners_need_different_addresses() {
        let same = ["--admin-listen", "127.0.0.1:18002", "--xds-listen", "127.0.0.1:18002"];
        let err = ServeArgs::parse(&same).validate().err().unwrap().to_string();
        for fragment in ["--admin-listen", "--xds-listen", "127.0.0.1:18002"] {
            assert!(err.contains(fragment), "{fragment} missing from {err}");
        }
        // Port 0 (the kernel picks) may repeat: tests bind everything that way.
        let ephemeral =
            ["--admin-listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
        assert!(ServeArgs::parse(&ephemeral).validate().is_ok());
    }

    #[test]
    fn history_is_a_file_by_default_or_postgresql_without_its_password_in_the_log() {
        let settings = ServeArgs::parse(&[]).validate().unwrap();
        assert!(settings.redacted().contains("history=sqlite:aurelis-history.db"), "{}", settings.redacted());
        let pg = ["--history", "postgres://aurelis:hunter2@127.0.0.1:5432/telemetry"];
        let line = ServeArgs::parse(&pg).validate().unwrap().redacted();
        assert!(
            !line.contains("hunter2")
                && line.contains("history=postgres://aurelis:<redacted>@127.0.0.1:5432/telemetry"),
            "{line}"
        );
        let err = ServeArgs::parse(&["--history", "postgres://127.0.0.1/x"]).validate().err().unwrap().to_string();
        assert!(err.starts_with("--history / AURELIS_HISTORY") && err.contains("user"), "{err}");
    }

    #[test]
    fn the_redis_password_is_never_printed() {
        let args = ["--l2-redis-url", "redis://u:inurl@127.0.0.1:6379", "--l2-redis-password", "hunter2"];
        let settings = ServeArgs::parse(&args).validate().unwrap();
        let line = settings.redacted();
        assert!(!line.contains("hunter2") && !line.contains("inurl"), "{line}");
        assert!(line.contains("redis=redis://u:<redacted>@127.0.0.1:6379 redis_password=<redacted>"), "{line}");
        let err = ServeArgs::parse(&["--l2-redis-url", "http://x"]).validate().err().unwrap();
        assert!(err.to_string().contains("--l2-redis-url"), "{err}");
    }

    #[test]
    fn l2_redis_can_be_a_cluster_and_tls_settings_use_our_flag_names() {
        let cluster = ["--l2-redis-cluster", "redis://a:1,redis://b:2"];
        let line = ServeArgs::parse(&cluster).validate().unwrap().redacted();
        assert!(line.contains("redis_mode=cluster redis=redis://a:1,redis://b:2"), "{line}");
        let plain_with_ca = ["--l2-redis-url", "redis://r:6379", "--l2-redis-tls-ca-file", "/nonexistent/ca.pem"];
        let err = ServeArgs::parse(&plain_with_ca).validate().err().unwrap().to_string();
        assert!(err.starts_with("--l2-redis-tls-ca-file / AURELIS_L2_REDIS_TLS_CA_FILE"), "{err}");
        assert!(err.contains("--l2-redis-url / AURELIS_L2_REDIS_URL must use rediss://"), "{err}");
        let unreadable = ["--l2-redis-url", "rediss://r:6380", "--l2-redis-tls-ca-file", "/nonexistent/ca.pem"];
        let err = ServeArgs::parse(&unreadable).validate().err().unwrap().to_string();
        assert!(err.contains("cannot read /nonexistent/ca.pem"), "{err}");
    }

    impl ServeArgs {
        /// Parses serve flags alone (environment variables still apply, as in production), on
        /// plaintext loopback xDS like `make run`.
        fn parse(args: &[&str]) -> ServeArgs {
            let mut all = vec!["--xds-plaintext-loopback"];
            all.extend_from_slice(args);
            ServeArgs::parse_exact(&all)
        }

        /// Exactly these flags.
        fn parse_exact(args: &[&str]) -> ServeArgs {
            let cli = Cli::try_parse_from(std::iter::once("cp").chain(args.iter().copied())).unwrap();
            cli.serve
        }
    }
}
