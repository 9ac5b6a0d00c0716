//! L3 values at rest: zstd-compressed, then AES-256-GCM-encrypted with a fresh random nonce and
//! the entry's namespace and key as associated data, so a row copied under another key fails to
//! decrypt. Several keys can be loaded (rotation): the first seals, every one opens the rows it
//! sealed (looked up by the key id stored next to each row).
//!
//! Stored value: nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes).
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::collections::HashMap;
use std::fmt;

const NONCE_BYTES: usize = 12;
const KEY_BYTES: usize = 32;
/// Fast and still a good ratio on JSON; decompression speed barely depends on the level.
const ZSTD_LEVEL: i32 = 3;

/// Why a stored value was not usable. Each is a miss for the caller (counted), never a crash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with key id `{0}`, which is not loaded")]
    UnknownKey(String),
    #[error("does not decrypt (wrong key, another entry's row, or altered)")]
    Decrypt,
    #[error("does not decompress")]
    Decompress,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    #[error("no L3 key given")]
    Empty,
    #[error("L3 key entry {0}: expected `<key id>:<64 hex characters>`")]
    Format(usize),
    #[error("L3 key id `{0}` appears twice")]
    Duplicate(String),
    #[error("could not read randomness for a nonce")]
    Random,
    #[error("could not compress the value")]
    Compress,
}

pub struct Sealer {
    current: String,
    keys: HashMap<String, Aes256Gcm>,
    /// Decompressed values larger than this are refused (a bomb, or not ours).
    max_value_bytes: usize,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        write!(f, "Sealer(current key id `{}`, loaded {ids:?})", self.current)
    }
}

impl Sealer {
    /// `id:hex64[,id:hex64...]` (commas or newlines between entries); the first one seals.
    /// Error messages name the entry's position, never key material.
    pub fn parse(keys: &str, max_value_bytes: usize) -> Result<Sealer, KeysError> {
        let mut current = None;
        let mut loaded = HashMap::new();
        let entries = keys.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty());
        for (position, entry) in entries.enumerate() {
            let (id, hex) = entry.split_once(':').ok_or(KeysError::Format(position + 1))?;
            let key = decode_hex(hex.trim()).filter(|k| k.len() == KEY_BYTES).ok_or(KeysError::Format(position + 1))?;
            let id = id.trim();
            if id.is_empty() {
                return Err(KeysError::Format(position + 1));
            }
            let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| KeysError::Format(position + 1))?;
            if loaded.insert(id.to_string(), cipher).is_some() {
                return Err(KeysError::Duplicate(id.to_string()));
            }
            current.get_or_insert_with(|| id.to_string());
        }
        let current = current.ok_or(KeysError::Empty)?;
        Ok(Sealer { current, keys: loaded, max_value_bytes })
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Returns the key id and the stored bytes.
    pub fn seal(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(String, Vec<u8>), KeysError> {
        let compressed = zstd::bulk::compress(value, ZSTD_LEVEL).map_err(|_| KeysError::Compress)?;
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::getrandom(&mut nonce).map_err(|_| KeysError::Random)?;
        let cipher = self.keys.get(&self.current).ok_or(KeysError::Empty)?;
        let aad = associated_data(namespace, key);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &compressed, aad: &aad })
            .map_err(|_| KeysError::Compress)?;
        let mut stored = Vec::with_capacity(NONCE_BYTES + sealed.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        Ok((self.current.clone(), stored))
    }

    pub fn open(&self, key_id: &str, namespace: &str, key: &str, stored: &[u8]) -> Result<Vec<u8>, OpenError> {
        let cipher = self.keys.get(key_id).ok_or_else(|| OpenError::UnknownKey(key_id.to_string()))?;
        if stored.len() < NONCE_BYTES {
            return Err(OpenError::Decrypt);
        }
        let (nonce, sealed) = stored.split_at(NONCE_BYTES);
        let aad = associated_data(namespace, key);
        let compressed = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| OpenError::Decrypt)?;
        zstd::bulk::decompress(&compressed, self.max_value_bytes).map_err(|_| OpenError::Decompress)
    }
}

/// Length-prefixed, so ("a:b", "c") and ("a", "b:c") differ.
fn associated_data(namespace: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + namespace.len() + key.len());
    aad.extend_from_slice(&(namespace.len() as u64).to_be_bytes());
    aad.extend_from_slice(namespace.as_bytes());
    aad.extend_from_slice(key.as_bytes());
    aad
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn sealer(keys: &str) -> Sealer {
        Sealer::parse(keys, 1 << 20).unwrap()
    }

    #[test]
    fn round_trip_and_nothing_readable_at_rest() {
        let s = sealer(&format!("k1:{K1}"));
        let value = b"{\"content\":\"the answer is forty-two\"}".repeat(20);
        let (id, stored) = s.seal("ns", "key", &value).unwrap();
        assert_eq!(id, "k1");
        assert!(!stored.windows(6).any(|w| w == b"answer"));
        assert_eq!(s.open("k1", "ns", "key", &stored).unwrap(), value);
        // A fresh nonce each time.
        assert_ne!(s.seal("ns", "key", &value).unwrap().1, stored);
    }

    #[test]
    fn a_row_under_another_key_or_altered_does_not_open() {
        let s = sealer(&format!("k1:{K1}"));
        let (_, stored) = s.seal("ns", "key", b"value").unwrap();
        assert_eq!(s.open("k1", "ns", "other-key", &stored), Err(OpenError::Decrypt));
        assert_eq!(s.open("k1", "other-ns", "key", &stored), Err(OpenError::Decrypt));
        let mut altered = stored.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(s.open("k1", "ns", "key", &altered), Err(OpenError::Decrypt));
        assert_eq!(s.open("k1", "ns", "key", &stored[..5]), Err(OpenError::Decrypt));
    }

    #[test]
    fn rotation_keeps_old_rows_readable_and_unknown_ids_are_misses() {
        let old = sealer(&format!("k1:{K1}"));
        let (_, by_old) = old.seal("ns", "key", b"old").unwrap();
        let rotated = sealer(&format!("k2:{K2},k1:{K1}"));
        assert_eq!(rotated.current_key_id(), "k2");
        assert_eq!(rotated.open("k1", "ns", "key", &by_old).unwrap(), b"old");
        let (id, by_new) = rotated.seal("ns", "key", b"new").unwrap();
        assert_eq!(id, "k2");
        assert_eq!(old.open("k2", "ns", "key", &by_new), Err(OpenError::UnknownKey("k2".into())));
        // Same id, other key material: a wrong key.
        let wrong = sealer(&format!("k1:{K2}"));
        assert_eq!(wrong.open("k1", "ns", "key", &by_old), Err(OpenError::Decrypt));
    }

    #[test]
    fn key_lists_are_checked_without_echoing_them() {
        assert_eq!(Sealer::parse("", 1).err(), Some(KeysError::Empty));
        assert_eq!(Sealer::parse("k1:abcd", 1).err(), Some(KeysError::Format(1)));
        assert_eq!(Sealer::parse(&format!("k1:{K1}\nnocolon"), 1).err(), Some(KeysError::Format(2)));
        assert_eq!(Sealer::parse(&format!("k1:{K1},k1:{K2}"), 1).err(), Some(KeysError::Duplicate("k1".into())));
        let shown = format!("{:?}", sealer(&format!("k1:{K1}")));
        assert!(!shown.contains(K1), "{shown}");
    }
}
