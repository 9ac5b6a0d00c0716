//! The metadata record of one L1 set (hash, size, timestamps, hits per way) and the slot format.
//! Both are plain bytes in shared data; anything malformed decodes as empty (a miss).
use crate::cache::Entry;

const META_VERSION: u8 = 2;
const WAY_META_LEN: usize = 8 + 4 + 8 + 8 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WayMeta {
    pub hash: u64,
    /// Encoded slot size; 0 marks an empty way.
    pub size: u32,
    /// Where the TTL counts from (earlier than the store for L2 promotions).
    pub fresh_since_ms: u64,
    pub last_access_ms: u64,
    /// Uses recorded since the entry was stored (the store counts as one), for LFU. Written in
    /// batches with the LRU touches, so a hit costs no extra write.
    pub hits: u32,
}

impl WayMeta {
    pub fn is_live(&self) -> bool {
        self.size > 0
    }
}

pub fn decode_meta(bytes: Option<&[u8]>, ways: u32) -> Vec<WayMeta> {
    let mut metas = vec![WayMeta::default(); ways as usize];
    let Some(bytes) = bytes else { return metas };
    let Some((&version, rest)) = bytes.split_first() else { return metas };
    if version != META_VERSION {
        return metas;
    }
    for (meta, chunk) in metas.iter_mut().zip(rest.chunks_exact(WAY_META_LEN)) {
        let u64_at = |at: usize| chunk.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        let u32_at = |at: usize| chunk.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes);
        *meta = WayMeta {
            hash: u64_at(0),
            size: u32_at(8),
            fresh_since_ms: u64_at(12),
            last_access_ms: u64_at(20),
            hits: u32_at(28),
        };
    }
    metas
}

pub fn encode_meta(metas: &[WayMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + metas.len() * WAY_META_LEN);
    out.push(META_VERSION);
    for m in metas {
        out.extend_from_slice(&m.hash.to_le_bytes());
        out.extend_from_slice(&m.size.to_le_bytes());
        out.extend_from_slice(&m.fresh_since_ms.to_le_bytes());
        out.extend_from_slice(&m.last_access_ms.to_le_bytes());
        out.extend_from_slice(&m.hits.to_le_bytes());
    }
    out
}

/// A slot holds the moment its TTL counts from, the moment this Envoy put it into L1 (what a
/// purge rule is checked against: a promoted entry's TTL may count from before it arrived),
/// then the entry. Carrying both in the slot lets a hit whose way is known read the slot alone
/// (one shared-data read).
pub fn encode_slot(fresh_since_ms: u64, inserted_ms: u64, entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entry.encoded_len());
    out.extend_from_slice(&fresh_since_ms.to_le_bytes());
    out.extend_from_slice(&inserted_ms.to_le_bytes());
    entry.encode_into(&mut out);
    out
}

/// A slot's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub fresh_since_ms: u64,
    pub inserted_ms: u64,
    pub entry: Entry,
}

pub fn decode_slot(bytes: &[u8]) -> Option<Slot> {
    let fresh_since_ms = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let inserted_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(Slot { fresh_since_ms, inserted_ms, entry: Entry::decode(bytes.get(16..)?)? })
}
