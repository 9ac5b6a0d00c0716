//! The L2 secrets of one fleet: an API token for the cache service and a signing key for the
//! filters, fresh for every run (`make run`, each test) unless a test fixes them. They reach the
//! processes through their environments only: never a flag (`ps` shows flags), a file or a log.
use anyhow::{anyhow, Result};
use aurelis_core::cache::{l2::TOKEN_ENV, sealed::SIGNING_KEY_ENV};
use std::fmt;

/// The cache service's variable for its token (the filter's is `TOKEN_ENV`).
pub const CACHE_TOKEN_ENV: &str = "AURELIS_CACHE_API_TOKEN";

#[derive(Clone, PartialEq, Eq)]
pub struct L2Credentials {
    /// Shared by the cache service and every Envoy.
    pub token: String,
    /// Held by the Envoys only: the cache service never needs it.
    pub signing_key: String,
}

impl fmt::Debug for L2Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("L2Credentials(<redacted>)")
    }
}

impl L2Credentials {
    /// 32 random bytes each (64 hex characters: above both sides' 32-byte minimum).
    pub fn generate() -> Result<L2Credentials> {
        Ok(L2Credentials { token: random_hex()?, signing_key: random_hex()? })
    }

    /// What every Envoy gets: `AURELIS_L2_TOKEN` and `AURELIS_L2_SIGNING_KEY`.
    pub fn envoy_env(&self) -> Vec<(String, String)> {
        vec![(TOKEN_ENV.into(), self.token.clone()), (SIGNING_KEY_ENV.into(), self.signing_key.clone())]
    }

    /// What the cache service gets: `AURELIS_CACHE_API_TOKEN`.
    pub fn cache_service_env(&self) -> Vec<(String, String)> {
        vec![(CACHE_TOKEN_ENV.into(), self.token.clone())]
    }
}

/// The cache service's variable for its L3 keys (`<key id>:<64 hex>`, the first seals).
pub const L3_KEYS_ENV: &str = "AURELIS_L3_KEYS";

/// A fresh L3 key for one run, as the cache service reads it (`run:<64 hex>`): like the L2
/// secrets, it reaches the service through its environment only.
pub fn generate_l3_keys() -> Result<String> {
    Ok(format!("run:{}", random_hex()?))
}

pub(crate) fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow!("reading the system's randomness for a secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_long_and_never_shown() {
        let (a, b) = (L2Credentials::generate().unwrap(), L2Credentials::generate().unwrap());
        assert_ne!(a, b);
        assert_ne!(a.token, a.signing_key);
        assert_eq!((a.token.len(), a.signing_key.len()), (64, 64));
        assert_eq!(format!("{a:?}"), "L2Credentials(<redacted>)");
        let names: Vec<String> = a.envoy_env().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["AURELIS_L2_TOKEN", "AURELIS_L2_SIGNING_KEY"]);
    }
}
