//! The fast path for byte-identical repeats: the same request body, sent again, skips the
//! JSON parse and canonicalization (the dominant cost of a hit) and reuses its content hash
//! and facts. Clients that retry or fan out send exactly the same bytes, which is when hits
//! happen. The memo is checked by comparing the whole body, so a hash collision is a memo miss,
//! never a wrong key.
use crate::key::Canonical;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// Bodies larger than this are not memoized (they are rarely byte-identical, and the memo's
/// memory stays under `MAX_ENTRIES × MAX_BODY_BYTES` per worker).
const MAX_BODY_BYTES: usize = 8 * 1024;
const MAX_ENTRIES: usize = 128;

/// What the key needs from a canonicalized body. `canonical.bytes` is emptied: only the
/// hash, the facts and the field lists (for the debug header) are kept.
#[derive(Debug)]
pub struct Parsed {
    pub content_hash: String,
    pub canonical: Canonical,
}

#[derive(Default)]
pub struct Memo {
    entries: HashMap<u64, (Vec<u8>, Rc<Parsed>)>,
}

fn hash_of(body: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

impl Memo {
    pub fn get(&self, body: &[u8]) -> Option<Rc<Parsed>> {
        if body.len() > MAX_BODY_BYTES {
            return None;
        }
        let (stored, parsed) = self.entries.get(&hash_of(body))?;
        (stored.as_slice() == body).then(|| Rc::clone(parsed))
    }

    pub fn put(&mut self, body: &[u8], parsed: Rc<Parsed>) {
        if body.len() > MAX_BODY_BYTES {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            // Crude but bounded: the hot bodies come back within a few requests.
            self.entries.clear();
        }
        self.entries.insert(hash_of(body), (body.to_vec(), parsed));
    }
}
