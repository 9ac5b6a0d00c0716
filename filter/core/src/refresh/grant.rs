//! The refresh grant: what the cache service's refresher attaches to a replay, and what the
//! filter accepts in place of a client's credentials. Wire form (one header value, ASCII):
//!
//! `v1.<kind>.<expires_at_ms>.<nonce hex 32>.<label hex>.<tenant hex>.<record seal hex 64>.<mac hex 64>`
//!
//! The MAC (HMAC-SHA256 under the refresh secret) covers a domain label, the namespace, the
//! cache key (never sent: the filter recomputes it from the replayed body), and every field
//! before it. Label and tenant are hex so that no separator can hide in them.
use super::{from_hex, to_hex, update_parts, RefreshSecret, MAX_GRANT_LIFETIME_MS};
use crate::auth::IdentityKind;
use hmac::Mac;

const VERSION: &str = "v1";
const DOMAIN: &[u8] = b"aurelis-refresh-grant-v1\0";
pub const NONCE_BYTES: usize = 16;
const MAC_BYTES: usize = 32;
/// Generous for a 64-character label and tenant, small enough to refuse junk early.
const MAX_HEADER_BYTES: usize = 1024;

/// Why a grant is refused. Each is the `code` of the error answer and a stat label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Not a grant of this version (wrong shape, bad hex, unknown kind).
    Malformed,
    /// Past its expiry, or dated further ahead than a grant may live.
    Expired,
    /// A MAC does not check: not issued with the secret, altered, for another key, namespace
    /// or identity, or the record seal is not the fleet's.
    Forged,
    /// Its nonce was already spent on this Envoy.
    Replayed,
    /// Refresh-ahead is off here (no secret, or the tenant did not opt in).
    NotEnabled,
    /// The replay is not a cacheable model call, so it cannot refresh anything.
    Unusable,
}

impl GrantError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "refresh_grant_malformed",
            Self::Expired => "refresh_grant_expired",
            Self::Forged => "refresh_grant_forged",
            Self::Replayed => "refresh_grant_replayed",
            Self::NotEnabled => "refresh_not_enabled",
            Self::Unusable => "refresh_grant_unusable",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::NotEnabled => 403,
            Self::Unusable => 400,
            _ => 401,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Malformed => "The refresh grant is malformed.",
            Self::Expired => "The refresh grant has expired.",
            Self::Forged => "The refresh grant is not valid for this request.",
            Self::Replayed => "The refresh grant was already used.",
            Self::NotEnabled => "Refresh-ahead is not enabled for this tenant.",
            Self::Unusable => "A refresh grant is only accepted on a cacheable model call.",
        }
    }

    pub const ALL: [GrantError; 6] =
        [Self::Malformed, Self::Expired, Self::Forged, Self::Replayed, Self::NotEnabled, Self::Unusable];
}

/// A parsed grant: who the replay acts as, until when, and its proofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub kind: IdentityKind,
    pub label: String,
    pub tenant: String,
    pub expires_at_ms: u64,
    pub nonce: [u8; NONCE_BYTES],
    /// The record's seal (`record::seal`), checked against the recomputed key.
    pub record_seal: [u8; 32],
    mac: [u8; MAC_BYTES],
}

fn kind_name(kind: IdentityKind) -> &'static str {
    kind.as_str()
}

pub(crate) fn kind_from(name: &str) -> Option<IdentityKind> {
    match name {
        "api_key" => Some(IdentityKind::ApiKey),
        "jwt" => Some(IdentityKind::Jwt),
        // Anonymous identities are never recorded: their scope is a client address.
        _ => None,
    }
}

/// What a grant is about, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantFor<'a> {
    pub namespace: &'a str,
    pub key: &'a str,
    pub kind: IdentityKind,
    pub label: &'a str,
    pub tenant: &'a str,
    pub expires_at_ms: u64,
    pub nonce: [u8; NONCE_BYTES],
    pub record_seal: [u8; 32],
}

fn mac_of(secret: &RefreshSecret, g: &GrantFor<'_>) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = secret.mac();
    let expires = g.expires_at_ms.to_le_bytes();
    update_parts(
        &mut mac,
        DOMAIN,
        &[
            g.namespace.as_bytes(),
            g.key.as_bytes(),
            kind_name(g.kind).as_bytes(),
            g.label.as_bytes(),
            g.tenant.as_bytes(),
            &expires,
            &g.nonce,
            &g.record_seal,
        ],
    );
    mac
}

/// The header value of a grant (the cache service's side).
pub fn issue(secret: &RefreshSecret, g: &GrantFor<'_>) -> String {
    let tag = mac_of(secret, g).finalize().into_bytes();
    format!(
        "{VERSION}.{}.{}.{}.{}.{}.{}.{}",
        kind_name(g.kind),
        g.expires_at_ms,
        to_hex(&g.nonce),
        to_hex(g.label.as_bytes()),
        to_hex(g.tenant.as_bytes()),
        to_hex(&g.record_seal),
        to_hex(&tag),
    )
}

fn fixed<const N: usize>(hex: &str) -> Option<[u8; N]> {
    from_hex(hex)?.try_into().ok()
}

fn text(hex: &str) -> Option<String> {
    let bytes = from_hex(hex)?;
    let text = String::from_utf8(bytes).ok()?;
    crate::auth::plain_name(&text).then_some(text)
}

impl Grant {
    /// Syntax only: nothing about a parsed grant is trusted before `verify`.
    pub fn parse(value: &str) -> Result<Grant, GrantError> {
        if value.len() > MAX_HEADER_BYTES {
            return Err(GrantError::Malformed);
        }
        let parts: Vec<&str> = value.trim().split('.').collect();
        let [version, kind, expires, nonce, label, tenant, seal, mac] = parts.as_slice() else {
            return Err(GrantError::Malformed);
        };
        if *version != VERSION {
            return Err(GrantError::Malformed);
        }
        let parsed = (|| {
            Some(Grant {
                kind: kind_from(kind)?,
                label: text(label)?,
                tenant: text(tenant)?,
                expires_at_ms: expires.parse().ok().filter(|_| expires.bytes().all(|b| b.is_ascii_digit()))?,
                nonce: fixed(nonce)?,
                record_seal: fixed(seal)?,
                mac: fixed(mac)?,
            })
        })();
        parsed.ok_or(GrantError::Malformed)
    }

    /// Expired, or dated further ahead than a grant may live (a long-lived grant would be a
    /// credential; the refresher issues them for one replay).
    pub fn check_time(&self, now_ms: u64) -> Result<(), GrantError> {
        let too_far = self.expires_at_ms > now_ms.saturating_add(MAX_GRANT_LIFETIME_MS);
        if self.expires_at_ms <= now_ms || too_far {
            return Err(GrantError::Expired);
        }
        Ok(())
    }

    /// Checks the MAC for the key the filter computed (constant-time comparison).
    pub fn verify(&self, secret: &RefreshSecret, namespace: &str, key: &str) -> Result<(), GrantError> {
        let about = GrantFor {
            namespace,
            key,
            kind: self.kind,
            label: &self.label,
            tenant: &self.tenant,
            expires_at_ms: self.expires_at_ms,
            nonce: self.nonce,
            record_seal: self.record_seal,
        };
        mac_of(secret, &about).verify_slice(&self.mac).map_err(|_| GrantError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn secret(text: &str) -> RefreshSecret {
        RefreshSecret::from_env_value(Some(text)).unwrap().unwrap()
    }

    fn ours() -> RefreshSecret {
        secret("refresh-secret-of-at-least-32-bytes!")
    }

    fn about(key: &str) -> GrantFor<'_> {
        GrantFor {
            namespace: "aurelis",
            key,
            kind: IdentityKind::ApiKey,
            label: "alice",
            tenant: "team-a",
            expires_at_ms: NOW + 30_000,
            nonce: [7; NONCE_BYTES],
            record_seal: [9; 32],
        }
    }

    #[test]
    fn an_issued_grant_verifies_for_its_key_only() {
        let header = issue(&ours(), &about("k1"));
        let grant = Grant::parse(&header).unwrap();
        assert_eq!((grant.label.as_str(), grant.tenant.as_str()), ("alice", "team-a"));
        assert_eq!(grant.verify(&ours(), "aurelis", "k1"), Ok(()));
        assert_eq!(grant.verify(&ours(), "aurelis", "k2"), Err(GrantError::Forged), "another key");
        assert_eq!(grant.verify(&ours(), "other", "k1"), Err(GrantError::Forged), "another namespace");
        let theirs = secret("another-secret-of-at-least-32-bytes!");
        assert_eq!(grant.verify(&theirs, "aurelis", "k1"), Err(GrantError::Forged), "another secret");
    }

    #[test]
    fn every_field_is_covered() {
        let header = issue(&ours(), &about("k1"));
        let fields: Vec<&str> = header.split('.').collect();
        let swaps = [
            (1, "jwt".to_string()),
            (2, (NOW + 40_000).to_string()),
            (3, to_hex(&[8; NONCE_BYTES])),
            (4, to_hex(b"mallory")),
            (5, to_hex(b"team-b")),
            (6, to_hex(&[1; 32])),
        ];
        for (at, value) in swaps {
            let mut changed = fields.clone();
            changed[at] = &value;
            let grant = Grant::parse(&changed.join(".")).unwrap();
            assert_eq!(grant.verify(&ours(), "aurelis", "k1"), Err(GrantError::Forged), "field {at} changed");
        }
    }

    #[test]
    fn junk_is_malformed() {
        let header = issue(&ours(), &about("k1"));
        for bad in [
            "",
            "v1",
            "v2.api_key.1.00.00.00.00.00",
            &header.replacen("v1.api_key", "v1.anonymous", 1),
            &header.replacen(&to_hex(b"alice"), &to_hex(b"al ice"), 1),
            &format!("{header}.extra"),
            &"a".repeat(2000),
        ] {
            assert_eq!(Grant::parse(bad), Err(GrantError::Malformed), "{bad:?}");
        }
        let plus = header.replacen(&(NOW + 30_000).to_string(), &format!("+{}", NOW + 30_000), 1);
        assert_eq!(Grant::parse(&plus), Err(GrantError::Malformed), "a signed number");
    }

    #[test]
    fn grants_live_briefly() {
        let grant = Grant::parse(&issue(&ours(), &about("k1"))).unwrap();
        assert_eq!(grant.check_time(NOW), Ok(()));
        assert_eq!(grant.check_time(NOW + 30_000), Err(GrantError::Expired), "at its expiry");
        let long = GrantFor { expires_at_ms: NOW + MAX_GRANT_LIFETIME_MS + 1, ..about("k1") };
        let long = Grant::parse(&issue(&ours(), &long)).unwrap();
        assert_eq!(long.check_time(NOW), Err(GrantError::Expired), "too far ahead");
    }
}
