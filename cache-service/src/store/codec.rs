//! Stored value format: one tag byte, then the payload. `0` = raw, `1` = zstd (level 3).
//! Compression is used only at or above the caller's threshold and only when it shrinks the
//! value: small or already-compressed values are cheaper to move than to decompress. The tag's
//! high bit (`FROM_L3`) marks a value the service put into Redis from L3 (an L3 hit promoted,
//! or the refill after a flush): its lookups say so, and the filter judges its age by L3's
//! lifetime (its stored_at is the first store's, not the promotion's).
pub const TAG_RAW: u8 = 0;
pub const TAG_ZSTD: u8 = 1;
pub const FROM_L3: u8 = 0x80;
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

/// `encode`, with the tag marked `FROM_L3` when `from_l3`.
pub fn encode_marked(value: &[u8], compress_min_bytes: usize, from_l3: bool) -> (Vec<u8>, bool) {
    let (mut out, compressed) = encode(value, compress_min_bytes);
    if let (true, Some(tag)) = (from_l3, out.first_mut()) {
        *tag |= FROM_L3;
    }
    (out, compressed)
}

/// Decodes a stored value, and whether it is marked `FROM_L3`. `limit` caps the decompressed
/// size, so a corrupt or hostile frame cannot make the service allocate more than the largest
/// value it accepts.
pub fn decode_marked(stored: &[u8], limit: usize) -> Result<(Vec<u8>, bool), CodecError> {
    let Some((&tag, payload)) = stored.split_first() else { return Err(CodecError::Empty) };
    let from_l3 = tag & FROM_L3 != 0;
    let value = match tag & !FROM_L3 {
        TAG_RAW => payload.to_vec(),
        TAG_ZSTD => zstd::bulk::decompress(payload, limit)
            .map_err(|e| CodecError::Decompress { limit, reason: e.to_string() })?,
        _ => return Err(CodecError::UnknownTag(tag)),
    };
    Ok((value, from_l3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(stored: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
        decode_marked(stored, limit).map(|(value, _)| value)
    }

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
    fn values_from_l3_keep_their_mark() {
        for min in [1, 1 << 20] {
            let value = "{\"choices\":[]}".repeat(50).into_bytes();
            let (stored, _) = encode_marked(&value, min, true);
            assert_eq!(decode_marked(&stored, 1 << 20).unwrap(), (value.clone(), true));
            let (plain, _) = encode_marked(&value, min, false);
            assert_eq!(decode_marked(&plain, 1 << 20).unwrap(), (value, false));
        }
        assert_eq!(decode(b"\x80abc", 10).unwrap(), b"abc");
        assert_eq!(decode(b"\x87abc", 10), Err(CodecError::UnknownTag(0x87)));
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
