//! Settings: every flag also reads an environment variable; validated once at start-up and
//! printed with secrets redacted.
use anyhow::{Context, Result};
use aurelis_core::config::FilterConfig;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "aurelis-control-plane", about = "Aurelis control plane")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the admin API and metrics (the default).
    Serve(ServeArgs),
    /// Validate a filter configuration file offline, with the filter's own code.
    CheckConfig { file: PathBuf },
}

impl Default for Command {
    fn default() -> Self {
        Command::Serve(ServeArgs::parse_from(["serve"]))
    }
}

#[derive(Parser, Clone)]
pub struct ServeArgs {
    #[arg(long, env = "AURELIS_ADMIN_LISTEN", default_value = "127.0.0.1:18000")]
    pub admin_listen: SocketAddr,
    #[arg(long, env = "AURELIS_METRICS_LISTEN", default_value = "127.0.0.1:18001")]
    pub metrics_listen: SocketAddr,
    /// JSON filter configuration served to Envoys; defaults when absent.
    #[arg(long, env = "AURELIS_FILTER_CONFIG")]
    pub filter_config: Option<PathBuf>,
    /// Bearer token required by admin writes; without it, writes are refused.
    #[arg(long, env = "AURELIS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

pub struct Settings {
    pub admin_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub filter_config: FilterConfig,
    pub filter_config_path: Option<PathBuf>,
    pub admin_token: Option<String>,
}

impl ServeArgs {
    pub fn validate(self) -> Result<Settings> {
        let filter_config = match &self.filter_config {
            Some(path) => load_filter_config(path)?,
            None => FilterConfig::default(),
        };
        let admin_token = self.admin_token.filter(|t| !t.trim().is_empty());
        Ok(Settings {
            admin_listen: self.admin_listen,
            metrics_listen: self.metrics_listen,
            filter_config,
            filter_config_path: self.filter_config,
            admin_token,
        })
    }
}

impl Settings {
    /// One line for the start-up log; the token never appears.
    pub fn redacted(&self) -> String {
        format!(
            "admin_listen={} metrics_listen={} filter_config={} admin_token={}",
            self.admin_listen,
            self.metrics_listen,
            self.filter_config_path.as_ref().map_or("<defaults>".to_string(), |p| p.display().to_string()),
            if self.admin_token.is_some() { "<redacted>" } else { "<unset: admin writes refused>" }
        )
    }
}

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

    #[test]
    fn check_config_names_the_unknown_field() {
        let dir = std::env::temp_dir().join(format!("aurelis-cp-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"cache":{"ttl":5}}"#).unwrap();
        let err = load_filter_config(&bad).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field `ttl`"), "{err:#}");
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"cache":{"ttl_seconds":5}}"#).unwrap();
        assert_eq!(check_config(&good), 0);
        assert_eq!(check_config(&bad), 1);
    }

    #[test]
    fn the_token_is_never_printed() {
        let args = ServeArgs::parse_from(["serve", "--admin-token", "s3cret"]);
        let settings = args.validate().unwrap();
        assert!(!settings.redacted().contains("s3cret"));
        assert!(settings.redacted().contains("<redacted>"));
    }
}
