//! Refresh-ahead settings: where replays go (the Envoy listener), how far ahead of expiry, how
//! hot, how often and how many at a time. The secret that signs grants comes from the
//! environment (`AURELIS_REFRESH_SECRET`) only, like the other secrets.
use super::{bad, SettingsError};
use aurelis_core::refresh::{RefreshSecret, SECRET_ENV};
use std::ffi::OsString;
use std::time::Duration;

/// The refresher never runs more replays at once (the design's "5 at a time").
pub const MAX_CONCURRENCY: usize = 5;

pub struct RefreshSettings {
    /// Base URL of the Envoy listener replays are sent to (`http://127.0.0.1:10000`).
    pub envoy_url: String,
    pub secret: RefreshSecret,
    pub ahead: Duration,
    pub min_hits: u64,
    pub every: Duration,
    pub concurrency: usize,
    /// An entry tried (refreshed or refused) is not tried again before this.
    pub retry_after: Duration,
}

pub struct RefreshInput {
    pub envoy_url: Option<String>,
    pub secret: Option<OsString>,
    pub ahead_seconds: u64,
    pub min_hits: u64,
    pub every_ms: u64,
    pub concurrency: usize,
    pub retry_seconds: u64,
    pub l3_configured: bool,
}

const URL_FLAG: &str = "--refresh-envoy-url / AURELIS_REFRESH_ENVOY_URL";

impl RefreshInput {
    /// `None` when refresh-ahead is off (no Envoy URL).
    pub fn validate(self) -> Result<Option<RefreshSettings>, SettingsError> {
        let Some(envoy_url) = self.envoy_url.filter(|u| !u.trim().is_empty()) else { return Ok(None) };
        let envoy_url = envoy_url.trim().trim_end_matches('/').to_string();
        if !envoy_url.starts_with("http://") && !envoy_url.starts_with("https://") {
            return Err(bad(URL_FLAG, format!("`{envoy_url}` is not an http:// or https:// URL")));
        }
        if !self.l3_configured {
            return Err(bad(URL_FLAG, "refresh-ahead needs L3 (--l3-store): the requests to replay are kept there"));
        }
        let raw = self.secret.map(|s| s.into_string().map_err(|_| bad(SECRET_ENV, "is not UTF-8"))).transpose()?;
        let secret = RefreshSecret::from_env_value(raw.as_deref())
            .map_err(|e| bad(SECRET_ENV, e.to_string()))?
            .ok_or_else(|| bad(SECRET_ENV, "is required with --refresh-envoy-url (the Envoys hold the same value)"))?;
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(bad("--refresh-concurrency", format!("{} is outside 1..={MAX_CONCURRENCY}", self.concurrency)));
        }
        if !(100..=3_600_000).contains(&self.every_ms) {
            return Err(bad("--refresh-every-ms", format!("{} is outside 100..=3600000", self.every_ms)));
        }
        if self.ahead_seconds == 0 {
            return Err(bad("--refresh-ahead-seconds", "must be above 0"));
        }
        Ok(Some(RefreshSettings {
            envoy_url,
            secret,
            ahead: Duration::from_secs(self.ahead_seconds),
            min_hits: self.min_hits,
            every: Duration::from_millis(self.every_ms),
            concurrency: self.concurrency,
            retry_after: Duration::from_secs(self.retry_seconds),
        }))
    }
}

/// For the start-up line (never the secret).
pub fn describe(refresh: &Option<RefreshSettings>) -> String {
    match refresh {
        None => "refresh=off".to_string(),
        Some(r) => format!(
            "refresh={} refresh_ahead_seconds={} refresh_min_hits={} refresh_every_ms={} refresh_concurrency={}",
            r.envoy_url,
            r.ahead.as_secs(),
            r.min_hits,
            r.every.as_millis(),
            r.concurrency
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: Option<&str>, secret: Option<&str>, l3: bool) -> RefreshInput {
        RefreshInput {
            envoy_url: url.map(str::to_string),
            secret: secret.map(OsString::from),
            ahead_seconds: 600,
            min_hits: 10,
            every_ms: 10_000,
            concurrency: 5,
            retry_seconds: 300,
            l3_configured: l3,
        }
    }

    const SECRET: &str = "refresh-secret-of-at-least-32-bytes!";

    #[test]
    fn off_without_a_url_and_checked_with_one() {
        assert!(input(None, None, false).validate().unwrap().is_none());
        let on = input(Some("http://127.0.0.1:10000/"), Some(SECRET), true).validate().unwrap().unwrap();
        assert_eq!(on.envoy_url, "http://127.0.0.1:10000");
        assert!(!describe(&Some(on)).contains(SECRET));
        let err = |i: RefreshInput| i.validate().err().unwrap().to_string();
        assert!(err(input(Some("http://e"), None, true)).starts_with("AURELIS_REFRESH_SECRET: is required"));
        assert!(err(input(Some("http://e"), Some("short"), true)).contains("shorter than 32"));
        assert!(err(input(Some("http://e"), Some(SECRET), false)).contains("needs L3"));
        assert!(err(input(Some("ftp://e"), Some(SECRET), true)).contains("not an http"));
        let six = RefreshInput { concurrency: 6, ..input(Some("http://e"), Some(SECRET), true) };
        assert!(err(six).starts_with("--refresh-concurrency: 6 is outside 1..=5"));
    }
}
