//! Signed L2 values. Whoever can write to Redis, or holds the cache service's token, could
//! otherwise plant an answer that every Envoy of the fleet serves. So each value this filter
//! stores in L2 is sealed with HMAC-SHA256 under a key only the Envoys hold (their own
//! environment, `AURELIS_L2_SIGNING_KEY`; never the JSON configuration, which travels over xDS
//! and shows in `/config_dump`), and a value whose MAC does not check is never served.
//!
//! Layout: `AUS1` | MAC (32 bytes) | the entry's encoding (`Entry::encode`: `AUE1`, stored_at,
//! status, format, usage, key, content type, body). The MAC covers a domain label, the cache
//! key the value is stored under, and the whole entry encoding: an entry altered anywhere,
//! truncated, or moved under another key fails. The cache service reads (and clamps) stored_at
//! at `STORED_AT` without knowing the signing key.
use super::entry::ENTRY_MAGIC;
use super::Entry;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::ops::Range;

type HmacSha256 = Hmac<Sha256>;

/// The Envoy environment variable holding the signing key (listed in the Wasm `vm_config`'s
/// `environment_variables.host_env_keys`, like the API token's).
pub const SIGNING_KEY_ENV: &str = "AURELIS_L2_SIGNING_KEY";
/// A shorter key is refused: HMAC-SHA256's security rests on a key of at least its output size.
pub const MIN_SIGNING_KEY_BYTES: usize = 32;
/// Bumped with the layout (or the MAC's input), so old values read as unsigned.
pub const MAGIC: [u8; 4] = *b"AUS1";
const MAC_LEN: usize = 32;
pub const HEADER_LEN: usize = MAGIC.len() + MAC_LEN;
/// Where the entry encoding's own magic sits in a sealed value.
pub const ENTRY_MAGIC_AT: Range<usize> = HEADER_LEN..HEADER_LEN + 4;
/// Where the entry's stored_at (Unix ms, little-endian u64) sits in a sealed value.
pub const STORED_AT: Range<usize> = HEADER_LEN + 4..HEADER_LEN + 12;
/// Separates this use of the key from any other the key might be put to.
const DOMAIN: &[u8] = b"aurelis-l2-entry-v1\0";

/// The key entries are signed with, already keyed into HMAC (cloning it skips the key
/// schedule on every entry). Deliberately opaque: `Debug` says nothing about the key.
#[derive(Clone)]
pub struct SigningKey {
    keyed: HmacSha256,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why a signing key was refused. Holds nothing of the value, so it can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSigningKey {
    #[error("is shorter than {MIN_SIGNING_KEY_BYTES} bytes")]
    TooShort,
    #[error("is not valid UTF-8")]
    NotUnicode,
}

impl SigningKey {
    /// From the environment variable's raw value: its bytes are the key (e.g. the 64 hex
    /// characters of `openssl rand -hex 32`). `None` when unset or empty.
    pub fn from_env_value(value: Option<&str>) -> Result<Option<SigningKey>, InvalidSigningKey> {
        match value {
            None | Some("") => Ok(None),
            Some(v) if v.len() < MIN_SIGNING_KEY_BYTES => Err(InvalidSigningKey::TooShort),
            // HMAC takes keys of any length: this never fails, but an error is not a panic.
            Some(v) => HmacSha256::new_from_slice(v.as_bytes())
                .map(|keyed| Some(SigningKey { keyed }))
                .map_err(|_| InvalidSigningKey::TooShort),
        }
    }

    /// The key, keyed into HMAC, for another use under its own domain label (refresh records).
    pub(crate) fn keyed(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    fn mac(&self, cache_key: &str, entry: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(DOMAIN);
        // Length-prefixed, so no key/entry split of the same bytes gives the same input.
        mac.update(&(cache_key.len() as u64).to_le_bytes());
        mac.update(cache_key.as_bytes());
        mac.update(entry);
        mac
    }
}

/// The sealed value of `entry` (an `Entry::encode` output) stored under `cache_key`.
pub fn seal(key: &SigningKey, cache_key: &str, entry: &[u8]) -> Vec<u8> {
    let tag = key.mac(cache_key, entry).finalize().into_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + entry.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&tag);
    out.extend_from_slice(entry);
    out
}

/// Why a value read from L2 is not served. All of them count as `forged`: the filter cannot
/// tell an attacker from corruption, and neither may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// No seal: too short, or another format (an older module's, or written by hand).
    Unsigned,
    /// The MAC does not match the value and the key asked for.
    BadMac,
    /// Signed by a holder of the key, yet not an entry of this version for this key.
    Malformed,
}

/// The entry sealed in `value`, if its MAC checks for `cache_key`. The comparison is
/// constant-time (`verify_slice`), so timing tells a forger nothing about the right MAC.
pub fn open(key: &SigningKey, cache_key: &str, value: &[u8]) -> Result<Entry, Unsealed> {
    let (Some(magic), Some(tag), Some(entry)) = (value.get(..4), value.get(4..HEADER_LEN), value.get(HEADER_LEN..))
    else {
        return Err(Unsealed::Unsigned);
    };
    if magic != MAGIC {
        return Err(Unsealed::Unsigned);
    }
    key.mac(cache_key, entry).verify_slice(tag).map_err(|_| Unsealed::BadMac)?;
    match Entry::decode(entry) {
        Some(decoded) if decoded.key == cache_key => Ok(decoded),
        _ => Err(Unsealed::Malformed),
    }
}

/// What the cache service did to a PUT value's stored_at (`clamp_stored_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    /// Not a sealed entry: nothing to read (the service stores opaque values too).
    NotAnEntry,
    /// Dated no later than `now` (plus the skew a reader tolerates): left as is.
    Kept,
    /// Dated further in the future: set to `now`.
    Clamped,
}

/// The cache service's side of "a future stored_at never extends freshness": a sealed value
/// dated more than `max_skew_ms` after `now_ms` gets `now_ms`. The service has no signing key,
/// so the rewritten value no longer verifies and every filter refuses it: an entry from the
/// future is either forged or from an Envoy whose clock is badly off, and neither should be
/// served. Rewriting (rather than refusing) means what sits in Redis never claims a future date,
/// whoever reads it.
pub fn clamp_stored_at(value: &mut [u8], now_ms: u64, max_skew_ms: u64) -> Clamp {
    let Some(stored_at) = stored_at(value) else { return Clamp::NotAnEntry };
    if stored_at <= now_ms.saturating_add(max_skew_ms) {
        return Clamp::Kept;
    }
    let Some(field) = value.get_mut(STORED_AT) else { return Clamp::NotAnEntry };
    field.copy_from_slice(&now_ms.to_le_bytes());
    Clamp::Clamped
}

/// The stored_at of a sealed entry value, unverified (the service's view); `None` for any
/// other value.
pub fn stored_at(value: &[u8]) -> Option<u64> {
    if value.get(..4) != Some(&MAGIC[..]) || value.get(ENTRY_MAGIC_AT) != Some(&ENTRY_MAGIC[..]) {
        return None;
    }
    Some(u64::from_le_bytes(value.get(STORED_AT)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::BodyFormat;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn key(text: &str) -> SigningKey {
        SigningKey::from_env_value(Some(text)).unwrap().unwrap()
    }

    fn entry(cache_key: &str, body: &[u8]) -> Entry {
        Entry {
            key: cache_key.into(),
            stored_at_ms: 1_700_000_000_000,
            status: 200,
            content_type: "application/json".into(),
            format: BodyFormat::Json,
            prompt_tokens: 3,
            completion_tokens: 4,
            body: body.to_vec(),
        }
    }

    fn sealed(cache_key: &str) -> Vec<u8> {
        seal(&key(KEY), cache_key, &entry(cache_key, b"{\"ok\":true}").encode())
    }

    #[test]
    fn a_sealed_entry_opens_with_its_key_under_its_cache_key() {
        let value = sealed("k1");
        assert_eq!(open(&key(KEY), "k1", &value), Ok(entry("k1", b"{\"ok\":true}")));
        // The service's view of the layout.
        assert_eq!(value.get(..4), Some(&MAGIC[..]));
        assert_eq!(value.get(ENTRY_MAGIC_AT), Some(&b"AUE1"[..]));
        assert_eq!(value.get(STORED_AT), Some(&1_700_000_000_000u64.to_le_bytes()[..]));
    }

    #[test]
    fn any_changed_byte_is_forged() {
        let value = sealed("k1");
        for at in 0..value.len() {
            let mut forged = value.clone();
            forged[at] ^= 0x01;
            assert!(open(&key(KEY), "k1", &forged).is_err(), "byte {at} flipped");
        }
        // In particular stored_at, status, content type, usage and body are all covered.
        let mut later = value.clone();
        later[STORED_AT][7] ^= 0x40;
        assert_eq!(open(&key(KEY), "k1", &later), Err(Unsealed::BadMac));
    }

    #[test]
    fn unsigned_and_truncated_values_are_refused() {
        let value = sealed("k1");
        for cut in 0..value.len() {
            assert!(open(&key(KEY), "k1", &value[..cut]).is_err(), "cut at {cut}");
        }
        let plain = entry("k1", b"{}").encode();
        assert_eq!(open(&key(KEY), "k1", &plain), Err(Unsealed::Unsigned), "an unsigned entry");
        let mut zero_mac = MAGIC.to_vec();
        zero_mac.extend_from_slice(&[0; MAC_LEN]);
        zero_mac.extend_from_slice(&plain);
        assert_eq!(open(&key(KEY), "k1", &zero_mac), Err(Unsealed::BadMac), "a well-formed seal, wrong MAC");
        assert_eq!(open(&key(KEY), "k1", b""), Err(Unsealed::Unsigned));
    }

    #[test]
    fn another_key_or_another_cache_key_is_refused() {
        let value = sealed("k1");
        let other = key("fedcba9876543210fedcba9876543210");
        assert_eq!(open(&other, "k1", &value), Err(Unsealed::BadMac), "signed with another key");
        // A valid value moved under another cache key: the MAC binds the key it was stored under.
        assert_eq!(open(&key(KEY), "k2", &value), Err(Unsealed::BadMac));
        // Even when the entry inside is rewritten to claim the new key, without re-signing.
        let moved = seal(&key(KEY), "k1", &entry("k2", b"{\"ok\":true}").encode());
        assert_eq!(open(&key(KEY), "k2", &moved), Err(Unsealed::BadMac));
        // Signed for the key, but the entry inside names another: refused too.
        assert_eq!(open(&key(KEY), "k1", &moved), Err(Unsealed::Malformed));
    }

    #[test]
    fn the_service_clamps_a_future_stored_at() {
        let now = 1_700_000_000_000;
        let mut value = sealed("k1");
        assert_eq!(clamp_stored_at(&mut value, now, 1_000), Clamp::Kept, "stored_at == now");
        assert_eq!(open(&key(KEY), "k1", &value).map(|e| e.stored_at_ms), Ok(now), "untouched");
        let future = Entry { stored_at_ms: now + 3_600_000, ..entry("k1", b"{}") };
        let mut value = seal(&key(KEY), "k1", &future.encode());
        assert_eq!(clamp_stored_at(&mut value, now, 1_000), Clamp::Clamped);
        assert_eq!(value.get(STORED_AT), Some(&now.to_le_bytes()[..]));
        assert_eq!(open(&key(KEY), "k1", &value), Err(Unsealed::BadMac), "no longer verifies: never served");
        let mut small_skew = seal(&key(KEY), "k1", &Entry { stored_at_ms: now + 500, ..future }.encode());
        assert_eq!(clamp_stored_at(&mut small_skew, now, 1_000), Clamp::Kept);
        for mut other in [b"opaque bytes".to_vec(), Vec::new(), MAGIC.to_vec(), entry("k1", b"{}").encode()] {
            let before = other.clone();
            assert_eq!(clamp_stored_at(&mut other, now, 1_000), Clamp::NotAnEntry);
            assert_eq!(other, before);
        }
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        assert!(matches!(SigningKey::from_env_value(None), Ok(None)));
        assert!(matches!(SigningKey::from_env_value(Some("")), Ok(None)));
        let short = "k".repeat(MIN_SIGNING_KEY_BYTES - 1);
        assert_eq!(SigningKey::from_env_value(Some(&short)).err(), Some(InvalidSigningKey::TooShort));
        assert_eq!(format!("{:?}", key(KEY)), "SigningKey(<redacted>)");
        assert_eq!(SIGNING_KEY_ENV, "AURELIS_L2_SIGNING_KEY", "Envoy deployments name this variable");
    }
}
