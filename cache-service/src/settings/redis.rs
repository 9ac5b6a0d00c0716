//! How to reach Redis, as settings: one URL or a Cluster seed list, a password, and TLS files.
//! Shared by the cache service and the control plane (which purges L2 itself), each with its
//! own flag names, so both check and print these settings the same way.
use super::{bad, SettingsError};
use crate::store::{Target, TlsOptions, TlsPart};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The flag (and environment variable) names to put in messages.
pub struct RedisFlags {
    pub url: &'static str,
    pub cluster: &'static str,
    pub ca: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
}

/// Raw values, as the flags gave them. Empty means unset, as for the password (compose files
/// pass `VAR=""`); hence `OsString` paths, since clap refuses an empty path.
#[derive(Default)]
pub struct RedisInput {
    pub url: Option<String>,
    /// Comma-separated seed node URLs; when set, cluster mode (the URL is ignored).
    pub cluster: Option<String>,
    pub password: Option<String>,
    pub tls_ca_file: Option<OsString>,
    pub tls_cert_file: Option<OsString>,
    pub tls_key_file: Option<OsString>,
}

/// Checked settings, ready for `Store::connect_with_tls`. Deliberately not `Debug`: it holds
/// the password and maybe a private key; `redacted()` is the way to print it.
pub struct RedisConnection {
    pub target: Target,
    pub tls: TlsOptions,
    /// Where `tls` came from, for the start-up line.
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
}

impl RedisInput {
    /// `None` when neither a URL nor a cluster is set.
    pub fn validate(self, flags: &RedisFlags) -> Result<Option<RedisConnection>, SettingsError> {
        let password = self.password.filter(|p| !p.is_empty());
        let cluster = self.cluster.as_deref().map(str::trim).filter(|c| !c.is_empty());
        let target = match (cluster, self.url.filter(|u| !u.is_empty())) {
            (Some(list), _) => {
                let nodes: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
                for node in &nodes {
                    check_url(node, flags.cluster)?;
                }
                Target::Cluster { nodes, password }
            }
            (None, Some(url)) => {
                check_url(&url, flags.url)?;
                Target::Single { url, password }
            }
            (None, None) => return Ok(None),
        };
        let files = TlsFiles {
            ca: non_empty(self.tls_ca_file),
            cert: non_empty(self.tls_cert_file),
            key: non_empty(self.tls_key_file),
        };
        let tls = files.load(&target, flags)?;
        Ok(Some(RedisConnection { target, tls, tls_ca_file: files.ca, tls_cert_file: files.cert }))
    }
}

impl RedisConnection {
    /// `redis_mode=… redis=… redis_password=… redis_tls=…` for a start-up line: passwords
    /// (also inside URLs) redacted, TLS files by path only.
    pub fn redacted(&self) -> String {
        let (mode, urls, password) = match &self.target {
            Target::Single { url, password } => ("single", redact_url(url), password.is_some()),
            Target::Cluster { nodes, password } => {
                ("cluster", nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(","), password.is_some())
            }
        };
        let tls = if !self.target.uses_tls() {
            "off".to_string()
        } else {
            let roots = match &self.tls_ca_file {
                Some(path) => format!("ca-file:{}", path.display()),
                None => "system".to_string(),
            };
            let client_cert = match &self.tls_cert_file {
                Some(path) => path.display().to_string(),
                None => "<unset>".to_string(),
            };
            format!("on redis_tls_roots={roots} redis_tls_client_cert={client_cert}")
        };
        let password = if password { "<redacted>" } else { "<unset>" };
        format!("redis_mode={mode} redis={urls} redis_password={password} redis_tls={tls}")
    }
}

struct TlsFiles {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn non_empty(path: Option<OsString>) -> Option<PathBuf> {
    path.filter(|p| !p.is_empty()).map(PathBuf::from)
}

impl TlsFiles {
    /// Cross-checks the files with the URLs, then reads and checks each file.
    fn load(&self, target: &Target, flags: &RedisFlags) -> Result<TlsOptions, SettingsError> {
        let first_set = [(flags.ca, &self.ca), (flags.cert, &self.cert), (flags.key, &self.key)]
            .into_iter()
            .find_map(|(flag, path)| path.as_ref().map(|_| flag));
        let Some(flag) = first_set else { return Ok(TlsOptions::default()) };
        if !target.all_tls() {
            let (setting, urls) = match target {
                Target::Single { url, .. } => (flags.url, redact_url(url)),
                Target::Cluster { nodes, .. } => {
                    (flags.cluster, nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(","))
                }
            };
            return Err(bad(flag, format!("is set, so {setting} must use rediss:// (TLS), but it is `{urls}`")));
        }
        let mut tls = TlsOptions::default();
        if let Some(path) = &self.ca {
            tls = tls
                .with_ca(read_file(path, flags.ca)?)
                .map_err(|e| bad(flags.ca, format!("{}: {e}", path.display())))?;
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let (cert_pem, key_pem) = (read_file(cert, flags.cert)?, read_file(key, flags.key)?);
                tls = tls.with_client_identity(cert_pem, key_pem).map_err(|e| {
                    let (flag, path) = match e.part {
                        TlsPart::ClientKey => (flags.key, key),
                        TlsPart::ClientCert | TlsPart::Ca => (flags.cert, cert),
                    };
                    bad(flag, format!("{}: {e}", path.display()))
                })?;
            }
            (Some(_), None) => {
                return Err(bad(flags.cert, format!("is set without {} (mutual TLS needs both)", flags.key)))
            }
            (None, Some(_)) => {
                return Err(bad(flags.key, format!("is set without {} (mutual TLS needs both)", flags.cert)))
            }
            (None, None) => {}
        }
        Ok(tls)
    }
}

fn read_file(path: &Path, flag: &'static str) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path).map_err(|e| bad(flag, format!("cannot read {}: {e}", path.display())))
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
