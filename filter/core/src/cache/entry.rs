//! The stored form of one cached response: a small versioned binary header followed by the body
//! exactly as the upstream sent it (byte-identical replay).
use crate::gate::BodyFormat;

/// Bumped whenever the layout changes, so a new module reading an old entry sees a miss.
pub(crate) const ENTRY_MAGIC: [u8; 4] = *b"AUE1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full cache key, checked on read: a slot may hold another key after a race.
    pub key: String,
    pub stored_at_ms: u64,
    pub status: u16,
    pub content_type: String,
    pub format: BodyFormat,
    /// Tokens the original answer cost, so hits can count tokens saved.
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub body: Vec<u8>,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out` (L1 slots put their freshness in front of it).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ENTRY_MAGIC);
        out.extend_from_slice(&self.stored_at_ms.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        out.push(match self.format {
            BodyFormat::Json => 0,
            BodyFormat::Sse => 1,
        });
        out.extend_from_slice(&self.prompt_tokens.to_le_bytes());
        out.extend_from_slice(&self.completion_tokens.to_le_bytes());
        put_str(out, &self.key);
        put_str(out, &self.content_type);
        out.extend_from_slice(&self.body);
    }

    pub fn encoded_len(&self) -> usize {
        4 + 8 + 2 + 1 + 4 + 4 + 2 + self.key.len() + 2 + self.content_type.len() + self.body.len()
    }

    /// `None` for anything that is not a well-formed entry of this version.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut r = Reader(bytes);
        if r.take(4)? != ENTRY_MAGIC {
            return None;
        }
        let stored_at_ms = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
        let format = match r.take(1)?.first()? {
            0 => BodyFormat::Json,
            1 => BodyFormat::Sse,
            _ => return None,
        };
        let prompt_tokens = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let completion_tokens = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let key = r.string()?;
        let content_type = r.string()?;
        Some(Entry {
            key,
            stored_at_ms,
            status,
            content_type,
            format,
            prompt_tokens,
            completion_tokens,
            body: r.0.to_vec(),
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Keys and content types are short; longer ones are truncated at a char boundary rather
    // than corrupting the layout (the key check on read then turns it into a miss).
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = s.get(..end).unwrap_or("");
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn string(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            key: "model_request:v1:anon:abc".into(),
            stored_at_ms: 1_700_000_000_000,
            status: 200,
            content_type: "application/json".into(),
            format: BodyFormat::Sse,
            prompt_tokens: 12,
            completion_tokens: 34,
            body: b"{\"ok\":true}".to_vec(),
        }
    }

    #[test]
    fn round_trips() {
        let e = entry();
        let bytes = e.encode();
        assert_eq!(bytes.len(), e.encoded_len());
        assert_eq!(Entry::decode(&bytes), Some(e));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_not_entries() {
        let bytes = entry().encode();
        for cut in 0..30 {
            assert_eq!(Entry::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Entry::decode(b"AUE0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), None);
        assert_eq!(Entry::decode(b""), None);
    }
}
