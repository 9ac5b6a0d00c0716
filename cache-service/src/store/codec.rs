//! Stored value format: one tag byte, then the payload. `0` = raw, `1` = zstd (level 3).
//! Compression is used only at or above the caller's threshold and only when it shrinks the
//! value: small or already-compressed values are cheaper to move than to decompress.
pub const TAG_RAW: u8 = 0;
pub const TAG_ZSTD: u8 = 1;
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("stored value is empty (no format tag)")]
    Empty,
    #[error("stored value has unknown format tag {0}")]
    UnknownTag(u8),
    #[error("stored value does not decompress within {limit} bytes: {reason}")]
    Decompress { limit: usize, reason: String },
}

/// Encodes `value` for Redis; the bool says whether it was compressed.
pub fn encode(value: &[u8], compress_min_bytes: usize) -> (Vec<u8>, bool) {
    if value.len() >= compress_min_bytes {
        if let Ok(compressed) = zstd::bulk::compress(value, ZSTD_LEVEL) {
            if compressed.len() < value.len() {
                let mut out = Vec::with_capacity(compressed.len() + 1);
                out.push(TAG_ZSTD);
                out.extend_from_slice(&compressed);
                return (out, true);
            }
        }
    }
    let mut out = Vec::with_capacity(value.len() + 1);
    out.push(TAG_RAW);
    out.extend_from_slice(value);
    (out, false)
}

/// Decodes a stored value. `limit` caps the decompressed size, so a corrupt or hostile frame
/// cannot make the service allocate more than the largest value it accepts.
pub fn decode(stored: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    match stored.split_first() {
        None => Err(CodecError::Empty),
        Some((&TAG_RAW, payload)) => Ok(payload.to_vec()),
        Some((&TAG_ZSTD, payload)) => {
            zstd::bulk::decompress(payload, limit).map_err(|e| CodecError::Decompress { limit, reason: e.to_string() })
        }
        Some((&tag, _)) => Err(CodecError::UnknownTag(tag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_raw() {
        let (stored, compressed) = encode(b"hello", 1024);
        assert!(!compressed);
        assert_eq!(stored, b"\0hello");
        assert_eq!(decode(&stored, 10).unwrap(), b"hello");
    }

    #[test]
    fn large_compressible_values_are_compressed() {
        let value = "{\"choices\":[{\"text\":\"abc\"}]}".repeat(100).into_bytes();
        let (stored, compressed) = encode(&value, 1024);
        assert!(compressed);
        assert_eq!(stored[0], TAG_ZSTD);
        assert!(stored.len() < value.len() / 4);
        assert_eq!(decode(&stored, value.len()).unwrap(), value);
    }

    #[test]
    fn incompressible_values_stay_raw_above_the_threshold() {
        // A xorshift sequence: deterministic, and zstd cannot shrink it.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let value: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let (stored, compressed) = encode(&value, 16);
        assert!(!compressed);
        assert_eq!(stored[0], TAG_RAW);
        assert_eq!(decode(&stored, 1).unwrap(), value, "raw values are not limited by decode");
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        assert_eq!(decode(b"", 10), Err(CodecError::Empty));
        assert_eq!(decode(b"\x07abc", 10), Err(CodecError::UnknownTag(7)));
        assert!(matches!(decode(b"\x01garbage", 10), Err(CodecError::Decompress { .. })));
        let (stored, _) = encode(&[b'a'; 5000], 1);
        assert!(matches!(decode(&stored, 100), Err(CodecError::Decompress { limit: 100, .. })));
    }
}
