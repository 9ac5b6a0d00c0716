//! Settings: every flag also reads an environment variable; validated once at start-up and
//! printed with secrets redacted.
use crate::model::{Model, Secrets};
use anyhow::{bail, Context, Result};
use aurelis_cache_service::settings::{RedisConnection, RedisFlags, RedisInput};
use aurelis_core::config::FilterConfig;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Validate a model file (YAML) or a filter configuration (JSON) offline, with the same
    /// code the server and the filter use; exit code 0/1.
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
    /// Bearer token required by admin writes; without it (or empty), writes are refused.
    #[arg(long, env = "AURELIS_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub admin_token: Option<String>,
}

/// Validated settings. Deliberately not `Debug`: the token must only leave via `redacted()`.
pub struct Settings {
    pub admin_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub xds_listen: SocketAddr,
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
}

impl ServeArgs {
    pub fn validate(self) -> Result<Settings> {
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
        let secrets = model.resolve_secrets(|name| std::env::var(name).ok())?;
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
        // Empty means unset: docker-compose passes `AURELIS_ADMIN_TOKEN=""` when none is given.
        let admin_token = self.admin_token.filter(|t| !t.is_empty());
        if let Some(token) = &admin_token {
            // A token with spaces or a trailing newline (e.g. from `$(cat file)`) can never match
            // a header value, which HTTP trims: refuse it now rather than lock writes out silently.
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("--admin-token / AURELIS_ADMIN_TOKEN must be printable ASCII without spaces or newlines");
            }
        }
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
        Ok(Settings {
            l2_redis,
            admin_listen,
            metrics_listen,
            xds_listen,
            model,
            model_path: self.model,
            secrets,
            filter_config,
            filter_config_path: self.filter_config,
            wasm_path: self.wasm_path,
            admin_token,
        })
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
            "admin_listen={} metrics_listen={} xds_listen={} model={} ({} providers, {} models, {} injected headers <redacted>) filter_config={} wasm_path={} l2_redis={} admin_token={}",
            self.admin_listen,
            self.metrics_listen,
            self.xds_listen,
            self.model_path.as_ref().map_or("<embedded default>".to_string(), |p| p.display().to_string()),
            self.model.providers.len(),
            self.model.models.len(),
            injected,
            self.filter_config_path.as_ref().map_or("<from the model>".to_string(), |p| p.display().to_string()),
            self.wasm_path,
            self.l2_redis.as_ref().map_or("<unset> (purges refused)".to_string(), |r| format!("{{{}}}", r.redacted())),
            if self.admin_token.is_some() { "<redacted>" } else { "<unset> (admin writes refused)" }
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

fn check_file(path: &Path) -> Result<&'static str> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if is_model_file(&text) {
        Model::from_yaml(&text).with_context(|| format!("{}", path.display()))?;
        Ok("model")
    } else {
        load_filter_config(path)?;
        Ok("filter configuration")
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

    #[test]
    fn the_token_is_never_printed() {
        let settings = ServeArgs::parse(&["--admin-token", "s3cret"]).validate().unwrap();
        assert!(!settings.redacted().contains("s3cret"));
        assert!(settings.redacted().contains("admin_token=<redacted>"));
        let settings = ServeArgs::parse(&["--admin-token", ""]).validate().unwrap();
        assert!(settings.admin_token.is_none(), "empty means unset");
        assert!(settings.redacted().contains("admin_token=<unset>"));
    }

    #[test]
    fn start_up_refuses_bad_settings() {
        let err = ServeArgs::parse(&["--admin-token", "abc\n"]).validate().err().unwrap();
        assert!(err.to_string().contains("AURELIS_ADMIN_TOKEN"), "{err}");
        assert!(!err.to_string().contains("abc"), "the token is not echoed");
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
        /// Parses serve flags alone (environment variables still apply, as in production).
        fn parse(args: &[&str]) -> ServeArgs {
            let cli = Cli::try_parse_from(std::iter::once("cp").chain(args.iter().copied())).unwrap();
            cli.serve
        }
    }
}
