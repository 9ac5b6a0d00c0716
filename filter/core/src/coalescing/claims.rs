//! Cross-worker flight claims: which keys some Envoy worker is already filling. One small
//! record per L1 set (at most `MAX_FLIGHTS_PER_SET` claims), so the shared-data key space
//! stays bounded; when a set's record is full the caller leads without a claim (a duplicate
//! upstream call, never a lost request).
use crate::cache::l1::{KeyNames, Layout};
use crate::cache::{SharedStore, StoreError};
use crate::key::CacheKey;

const MAX_FLIGHTS_PER_SET: usize = 16;
const CAS_ATTEMPTS: usize = 4;

pub struct Claims<'a, S: SharedStore> {
    store: &'a S,
    layout: &'a Layout,
    names: &'a KeyNames,
}

impl<'a, S: SharedStore> Claims<'a, S> {
    pub fn new(store: &'a S, layout: &'a Layout, names: &'a KeyNames) -> Self {
        Claims { store, layout, names }
    }

    fn record(&self, key: &CacheKey) -> String {
        self.names.flights(self.layout.set_of(key.hash))
    }

    /// Claims the fill of `key` across every worker: `true` if the caller leads (goes upstream),
    /// `false` if another worker's unexpired claim is already filling it.
    pub fn claim(&self, key: &CacheKey, now_ms: u64, deadline_ms: u64) -> bool {
        let record = self.record(key);
        for _ in 0..CAS_ATTEMPTS {
            let Ok((bytes, cas)) = self.store.get(&record) else { return true };
            let mut flights: Vec<(u64, u64)> =
                decode(bytes.as_deref()).into_iter().filter(|(_, deadline)| *deadline > now_ms).collect();
            if flights.iter().any(|(h, _)| *h == key.hash) {
                return false;
            }
            if flights.len() >= MAX_FLIGHTS_PER_SET {
                return true;
            }
            flights.push((key.hash, deadline_ms));
            match self.store.set(&record, &encode(&flights), cas) {
                Ok(()) => return true,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => return true,
            }
        }
        true
    }

    /// Whether some worker still claims the fill of `key`.
    pub fn pending(&self, key: &CacheKey, now_ms: u64) -> bool {
        let Ok((bytes, _)) = self.store.get(&self.record(key)) else { return false };
        decode(bytes.as_deref()).iter().any(|(h, deadline)| *h == key.hash && *deadline > now_ms)
    }

    /// Drops the claim on `key` (its leader finished, stored or not).
    pub fn release(&self, key: &CacheKey) {
        let record = self.record(key);
        for _ in 0..CAS_ATTEMPTS {
            let Ok((bytes, cas)) = self.store.get(&record) else { return };
            let flights = decode(bytes.as_deref());
            if !flights.iter().any(|(h, _)| *h == key.hash) {
                return;
            }
            let rest: Vec<(u64, u64)> = flights.into_iter().filter(|(h, _)| *h != key.hash).collect();
            match self.store.set(&record, &encode(&rest), cas) {
                Err(StoreError::CasMismatch) => continue,
                _ => return,
            }
        }
    }
}

fn decode(bytes: Option<&[u8]>) -> Vec<(u64, u64)> {
    let word = |c: &[u8], at: usize| c.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
    bytes.map_or_else(Vec::new, |b| b.chunks_exact(16).map(|c| (word(c, 0), word(c, 8))).collect())
}

fn encode(flights: &[(u64, u64)]) -> Vec<u8> {
    flights.iter().flat_map(|(h, d)| h.to_le_bytes().into_iter().chain(d.to_le_bytes())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryStore;
    use crate::config::CacheConfig;

    #[test]
    fn one_claim_per_key_until_released_or_expired() {
        let store = MemoryStore::default();
        let layout = Layout::from_config(&CacheConfig { max_entries: 8, ..CacheConfig::default() });
        let names = KeyNames::new(&layout);
        let claims = Claims::new(&store, &layout, &names);
        let (k, other) = (CacheKey::new("k".into()), CacheKey::new("other".into()));
        assert!(claims.claim(&k, 0, 1_000), "first caller leads");
        assert!(!claims.claim(&k, 10, 1_010), "second caller waits");
        assert!(claims.pending(&k, 10));
        assert!(claims.claim(&other, 10, 1_010), "other keys are independent");
        claims.release(&k);
        assert!(!claims.pending(&k, 20));
        assert!(claims.claim(&k, 20, 1_020));
        assert!(claims.claim(&k, 2_000, 3_000), "an expired claim does not block");
    }
}
