//! Settings: every flag also reads an environment variable; validated once at start-up and
//! printed with secrets redacted.
use anyhow::{bail, Context, Result};
use aurelis_core::config::FilterConfig;
use clap::{Parser, Subcommand};
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
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the admin API and metrics (the default).
    Serve(ServeArgs),
    /// Validate a filter configuration file offline, with the filter's own code; exit code 0/1.
    CheckConfig { file: PathBuf },
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
    /// JSON filter configuration served to Envoys; the schema defaults when absent.
    #[arg(long, env = "AURELIS_FILTER_CONFIG", value_name = "FILE")]
    pub filter_config: Option<PathBuf>,
    /// Bearer token required by admin writes; without it (or empty), writes are refused.
    #[arg(long, env = "AURELIS_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub admin_token: Option<String>,
}

/// Validated settings. Deliberately not `Debug`: the token must only leave via `redacted()`.
pub struct Settings {
    pub admin_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub filter_config: FilterConfig,
    pub filter_config_path: Option<PathBuf>,
    pub admin_token: Option<String>,
}

impl ServeArgs {
    pub fn validate(self) -> Result<Settings> {
        let admin_listen = parse_addr(&self.admin_listen, "--admin-listen / AURELIS_ADMIN_LISTEN")?;
        let metrics_listen = parse_addr(&self.metrics_listen, "--metrics-listen / AURELIS_METRICS_LISTEN")?;
        if admin_listen == metrics_listen && admin_listen.port() != 0 {
            bail!("--admin-listen and --metrics-listen are both {admin_listen}: they need different ports");
        }
        let filter_config = match &self.filter_config {
            Some(path) => load_filter_config(path)?,
            None => FilterConfig::default(),
        };
        // Empty means unset: docker-compose passes `AURELIS_ADMIN_TOKEN=""` when none is given.
        let admin_token = self.admin_token.filter(|t| !t.is_empty());
        if let Some(token) = &admin_token {
            // A token with spaces or a trailing newline (e.g. from `$(cat file)`) can never match
            // a header value, which HTTP trims: refuse it now rather than lock writes out silently.
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("--admin-token / AURELIS_ADMIN_TOKEN must be printable ASCII without spaces or newlines");
            }
        }
        Ok(Settings {
            admin_listen,
            metrics_listen,
            filter_config,
            filter_config_path: self.filter_config,
            admin_token,
        })
    }
}

fn parse_addr(value: &str, name: &str) -> Result<SocketAddr> {
    value.parse().with_context(|| format!("{name}: `{value}` is not an IP:port address (e.g. 127.0.0.1:18000)"))
}

impl Settings {
    /// One line for the start-up log; the token never appears.
    pub fn redacted(&self) -> String {
        format!(
            "admin_listen={} metrics_listen={} filter_config={} admin_token={}",
            self.admin_listen,
            self.metrics_listen,
            self.filter_config_path.as_ref().map_or("<defaults>".to_string(), |p| p.display().to_string()),
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

/// `check-config`: prints `ok` or the error naming the field and value; returns the exit code.
pub fn check_config(path: &Path) -> i32 {
    match load_filter_config(path) {
        Ok(_) => {
            println!("ok: {}", path.display());
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

    impl ServeArgs {
        /// Parses serve flags alone (environment variables still apply, as in production).
        fn parse(args: &[&str]) -> ServeArgs {
            let cli = Cli::try_parse_from(std::iter::once("cp").chain(args.iter().copied())).unwrap();
            cli.serve
        }
    }
}
