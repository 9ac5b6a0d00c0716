//! Refresh-ahead: hot entries of opted-in tenants are refreshed shortly before they expire by
//! replaying the request that filled them. The cache service's refresher decides *when*; this
//! module decides *whether a replay may act for a tenant*, which is the security boundary.
//!
//! The boundary (see docs/security.md, "Refresh-ahead"):
//! - A replay carries a **grant** (`GRANT_HEADER`): an HMAC under `AURELIS_REFRESH_SECRET` (held
//!   by the cache service and the Envoys, from their environment only) over the namespace, the
//!   identity to act as (kind, consumer label, tenant), the cache key, an expiry (at most
//!   `MAX_GRANT_LIFETIME_MS` ahead) and a nonce.
//! - The identity comes from a **record** the filter itself wrote when it stored the entry, sealed
//!   with the fleet's L2 signing key (`record`): the cache service cannot invent an identity, it
//!   can only hand back one a filter recorded for that very key.
//! - The filter recomputes the key from the replayed body under the granted tenant's scope; both
//!   MACs are checked against *that* key, so a grant refreshes one entry of one tenant and
//!   nothing else. The grant's nonce is spent once per Envoy (`ledger`).
//! - A request that carries a grant never falls back to the client's own credentials: it is the
//!   grant's identity or a refusal. The grant header is removed before anything goes upstream.
pub mod config;
pub mod grant;
pub mod ledger;
pub mod record;

pub use config::{RefreshConfig, RefreshTenant};
pub use grant::{Grant, GrantError};
pub use record::Record;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The request header a replay carries its grant in. Deliberately outside the `x-aurelis-*`
/// family, which the listener strips before any filter runs: a client may send this header, and
/// gains nothing by it without the secret (the MAC decides). The filter removes it from every
/// request, and the routes remove it again before the upstream (`request_headers_to_remove`).
pub const GRANT_HEADER: &str = "aurelis-refresh-grant";

/// The environment variable holding the refresh secret (Envoy and the cache service).
pub const SECRET_ENV: &str = "AURELIS_REFRESH_SECRET";
/// As for the L2 signing key: HMAC-SHA256 wants a key at least as long as its output.
pub const MIN_SECRET_BYTES: usize = 32;
/// A grant further in the future than this is refused: grants are for one replay, now.
pub const MAX_GRANT_LIFETIME_MS: u64 = 60_000;

/// The refresh secret, keyed into HMAC once. `Debug` never shows it.
#[derive(Clone)]
pub struct RefreshSecret {
    keyed: HmacSha256,
}

impl fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshSecret(<redacted>)")
    }
}

/// Why a refresh secret was refused. Holds nothing of the value, so it can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    #[error("is shorter than {MIN_SECRET_BYTES} bytes")]
    TooShort,
}

impl RefreshSecret {
    /// From the variable's raw value; `None` when unset or empty.
    pub fn from_env_value(value: Option<&str>) -> Result<Option<RefreshSecret>, InvalidSecret> {
        match value {
            None | Some("") => Ok(None),
            Some(v) if v.len() < MIN_SECRET_BYTES => Err(InvalidSecret::TooShort),
            Some(v) => HmacSha256::new_from_slice(v.as_bytes())
                .map(|keyed| Some(RefreshSecret { keyed }))
                .map_err(|_| InvalidSecret::TooShort),
        }
    }

    /// Reads `SECRET_ENV`; an unusable value is left out and `warn` is told why (never the value).
    pub fn from_env(warn: &mut impl FnMut(&str)) -> Option<RefreshSecret> {
        let raw = std::env::var(SECRET_ENV).ok();
        RefreshSecret::from_env_value(raw.as_deref()).unwrap_or_else(|err| {
            warn(&format!("aurelis: {SECRET_ENV} {err}: refresh-ahead is off"));
            None
        })
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

/// Feeds length-prefixed parts into a MAC, so no two splits of the same bytes collide.
pub(crate) fn update_parts(mac: &mut HmacSha256, domain: &[u8], parts: &[&[u8]]) {
    mac.update(domain);
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len() / 2).map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert!(matches!(RefreshSecret::from_env_value(None), Ok(None)));
        assert!(matches!(RefreshSecret::from_env_value(Some("")), Ok(None)));
        assert_eq!(RefreshSecret::from_env_value(Some("short")).err(), Some(InvalidSecret::TooShort));
        let secret = RefreshSecret::from_env_value(Some(&"s".repeat(32))).unwrap().unwrap();
        assert_eq!(format!("{secret:?}"), "RefreshSecret(<redacted>)");
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(from_hex(&to_hex(b"\x00\xffab")), Some(b"\x00\xffab".to_vec()));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("+1"), None, "from_str_radix would take a sign");
    }
}
