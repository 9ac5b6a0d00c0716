//! Where the store lives, parsed and checked once. A PostgreSQL password is kept only inside the
//! connection settings: `Display` and `Debug` never show it, and errors never quote the URL.
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;
use tokio_postgres::config::{Host, SslMode};

/// Connections per PostgreSQL pool unless told otherwise.
pub const DEFAULT_POOL_SIZE: usize = 4;
pub const MAX_POOL_SIZE: usize = 64;
/// Applied when the URL sets no `connect_timeout`: a store that cannot be reached must not hold
/// a caller (a control-plane flush, an L3 lookup) for the operating system's TCP timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    #[error("store location is empty")]
    Empty,
    #[error("postgres URL is invalid: {0}")]
    InvalidUrl(String),
    #[error("postgres URL names no {0}")]
    Missing(&'static str),
    #[error("postgres URL asks for TLS (sslmode=require), which this build does not support; use a loopback or private-network server")]
    TlsUnsupported,
    #[error("pool_size = {0}: must be between 1 and {MAX_POOL_SIZE}")]
    PoolSize(usize),
}

/// Which backend, and how to reach it.
#[derive(Clone)]
pub enum StoreSettings {
    /// The embedded file database (SQLite) at this path; created when missing.
    File(PathBuf),
    Postgres(Box<PostgresSettings>),
}

#[derive(Clone)]
pub struct PostgresSettings {
    config: tokio_postgres::Config,
    pool_size: usize,
}

impl StoreSettings {
    /// `postgres://user:password@host:port/db[?connect_timeout=5]` (or `postgresql://`) selects
    /// PostgreSQL; `sqlite:PATH`, `file:PATH` or a bare path the embedded file database.
    pub fn parse(location: &str) -> Result<StoreSettings, SettingsError> {
        let location = location.trim();
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            return PostgresSettings::parse(location).map(|pg| StoreSettings::Postgres(Box::new(pg)));
        }
        let path = location.strip_prefix("sqlite:").or_else(|| location.strip_prefix("file:")).unwrap_or(location);
        if path.is_empty() {
            return Err(SettingsError::Empty);
        }
        Ok(StoreSettings::File(PathBuf::from(path)))
    }
}

impl FromStr for StoreSettings {
    type Err = SettingsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreSettings::parse(s)
    }
}

impl PostgresSettings {
    pub fn parse(url: &str) -> Result<PostgresSettings, SettingsError> {
        // tokio-postgres' messages name the option at fault, never the password.
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| SettingsError::InvalidUrl(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(SettingsError::Missing("host"));
        }
        if config.get_user().is_none_or(str::is_empty) {
            return Err(SettingsError::Missing("user"));
        }
        if config.get_dbname().is_none_or(str::is_empty) {
            return Err(SettingsError::Missing("database"));
        }
        if config.get_ssl_mode() == SslMode::Require {
            return Err(SettingsError::TlsUnsupported);
        }
        // `prefer` (the default) would try TLS first; without a TLS connector that is one wasted
        // round trip per connection.
        config.ssl_mode(SslMode::Disable);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        Ok(PostgresSettings { config, pool_size: DEFAULT_POOL_SIZE })
    }

    pub fn with_pool_size(mut self, pool_size: usize) -> Result<PostgresSettings, SettingsError> {
        if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
            return Err(SettingsError::PoolSize(pool_size));
        }
        self.pool_size = pool_size;
        Ok(self)
    }

    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    pub fn connect_timeout(&self) -> Duration {
        self.config.get_connect_timeout().copied().unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl fmt::Display for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.config.get_user().unwrap_or_default();
        let secret = if self.config.get_password().is_some() { ":<redacted>" } else { "" };
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let name = match host {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                match self.config.get_ports().get(i).or(self.config.get_ports().first()) {
                    Some(port) => format!("{name}:{port}"),
                    None => name,
                }
            })
            .collect();
        let db = self.config.get_dbname().unwrap_or_default();
        write!(f, "postgres://{user}{secret}@{}/{db} (pool {})", hosts.join(","), self.pool_size)
    }
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresSettings({self})")
    }
}

impl fmt::Display for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSettings::File(path) => write!(f, "sqlite:{}", path.display()),
            StoreSettings::Postgres(pg) => fmt::Display::fmt(pg, f),
        }
    }
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreSettings({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_select_the_file_database() {
        for (given, path) in [("sqlite:/var/lib/a.db", "/var/lib/a.db"), ("file:b.db", "b.db"), ("./c.db", "./c.db")] {
            match StoreSettings::parse(given) {
                Ok(StoreSettings::File(p)) => assert_eq!(p, PathBuf::from(path)),
                other => panic!("{given}: {other:?}"),
            }
        }
        assert_eq!(StoreSettings::parse("sqlite:").err(), Some(SettingsError::Empty));
        assert_eq!(StoreSettings::parse("  ").err(), Some(SettingsError::Empty));
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        let settings = StoreSettings::parse("postgres://aurelis:hunter2-secret@db.internal:5433/history").unwrap();
        let shown = format!("{settings} {settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(settings.to_string(), "postgres://aurelis:<redacted>@db.internal:5433/history (pool 4)");
        let StoreSettings::Postgres(pg) = settings else { panic!("not postgres") };
        assert_eq!(pg.connect_timeout(), DEFAULT_CONNECT_TIMEOUT);
    }

    #[test]
    fn postgres_urls_are_checked() {
        let err = |url: &str| StoreSettings::parse(url).err();
        assert_eq!(err("postgres://u@h:5432"), Some(SettingsError::Missing("database")));
        assert_eq!(err("postgres://h:5432/db"), Some(SettingsError::Missing("user")));
        assert_eq!(err("postgres://u@h/db?sslmode=require"), Some(SettingsError::TlsUnsupported));
        assert!(
            matches!(err("postgres://u:pw@h:notaport/db"), Some(SettingsError::InvalidUrl(m)) if !m.contains("pw"))
        );
        let pg = PostgresSettings::parse("postgresql://u@h/db?connect_timeout=2").unwrap();
        assert_eq!(pg.connect_timeout(), Duration::from_secs(2));
        assert_eq!(pg.clone().with_pool_size(0).err(), Some(SettingsError::PoolSize(0)));
        assert_eq!(pg.with_pool_size(8).map(|p| p.pool_size()).ok(), Some(8));
    }
}
