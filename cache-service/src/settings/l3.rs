//! L3 settings: where the persistent level lives and the keys that seal its values. The keys
//! come from the environment (`AURELIS_L3_KEYS`) or a file, never from a flag (`ps` shows
//! flags) nor from anything the control plane pushes.
use super::{bad, SettingsError};
use crate::l3::seal::Sealer;
use aurelis_store::StoreSettings;
use std::ffi::OsString;
use std::time::Duration;

pub const KEYS_ENV: &str = "AURELIS_L3_KEYS";
const STORE_FLAG: &str = "--l3-store / AURELIS_L3_STORE";
const KEYS_FLAG: &str = "AURELIS_L3_KEYS or --l3-keys-file / AURELIS_L3_KEYS_FILE";

pub struct L3Settings {
    pub store: StoreSettings,
    pub sealer: Sealer,
    pub timeout: Duration,
    pub ttl: Duration,
    pub max_bytes: u64,
}

pub struct L3Input {
    pub store: Option<String>,
    pub keys: Option<OsString>,
    pub keys_file: Option<OsString>,
    pub timeout_ms: u64,
    pub ttl_seconds: u64,
    pub max_bytes: u64,
    pub max_value_bytes: usize,
}

impl L3Input {
    /// `None` when no L3 store is configured (L3 off).
    pub fn validate(self) -> Result<Option<L3Settings>, SettingsError> {
        let Some(location) = self.store.filter(|s| !s.trim().is_empty()) else { return Ok(None) };
        let store = StoreSettings::parse(&location).map_err(|e| bad(STORE_FLAG, e.to_string()))?;
        let keys = match (self.keys, self.keys_file) {
            (Some(_), Some(_)) => return Err(bad(KEYS_FLAG, "both are set: use one")),
            (Some(keys), None) => keys.into_string().map_err(|_| bad(KEYS_FLAG, "is not UTF-8"))?,
            (None, Some(file)) => std::fs::read_to_string(&file)
                .map_err(|e| bad(KEYS_FLAG, format!("reading {}: {e}", std::path::Path::new(&file).display())))?,
            (None, None) => return Err(bad(KEYS_FLAG, "an L3 store is configured but no key to seal its values")),
        };
        let sealer = Sealer::parse(&keys, self.max_value_bytes).map_err(|e| bad(KEYS_FLAG, e.to_string()))?;
        if !(1..=10_000).contains(&self.timeout_ms) {
            return Err(bad(
                "--l3-timeout-ms / AURELIS_L3_TIMEOUT_MS",
                format!("{} is outside 1..=10000", self.timeout_ms),
            ));
        }
        if !(1..=crate::store::layout::MAX_TTL_SECONDS).contains(&self.ttl_seconds) {
            return Err(bad(
                "--l3-ttl-seconds / AURELIS_L3_TTL_SECONDS",
                format!("{} is outside 1..=2592000", self.ttl_seconds),
            ));
        }
        if self.max_bytes == 0 {
            return Err(bad("--l3-max-bytes / AURELIS_L3_MAX_BYTES", "must be above 0"));
        }
        Ok(Some(L3Settings {
            store,
            sealer,
            timeout: Duration::from_millis(self.timeout_ms),
            ttl: Duration::from_secs(self.ttl_seconds),
            max_bytes: self.max_bytes,
        }))
    }
}

/// For the start-up line: the store (password redacted) and the sealing key's id only.
pub fn describe(l3: &Option<L3Settings>) -> String {
    match l3 {
        None => "l3=off".to_string(),
        Some(l3) => format!(
            "l3={} l3_key_id={} l3_timeout_ms={} l3_ttl_seconds={} l3_max_bytes={}",
            l3.store,
            l3.sealer.current_key_id(),
            l3.timeout.as_millis(),
            l3.ttl.as_secs(),
            l3.max_bytes
        ),
    }
}
