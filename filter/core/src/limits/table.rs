//! The identities' buckets in a `SharedStore`, shared by every Envoy worker: exact limits across
//! workers because each decision is a compare-and-swap on the identity's set.
//!
//! Like L1, the table is set-associative over a fixed key space (shared data never frees a
//! key): `max_identities` slots in sets of 4. A new identity takes a free or idle slot (idle =
//! buckets full again, so forgetting it changes nothing); if every way of its set is active it
//! takes the way closest to idle, which can only make that other identity's limit more lenient.
use super::bucket::{BucketState, Decision};
use super::config::Limits;
use crate::cache::{SharedStore, StoreError};

const WAYS: u32 = 4;
const VERSION: u8 = 1;
const WAY_LEN: usize = 8 + 8 + 8 + 8;
const CAS_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The set kept changing under us (extreme contention) or the host failed: fail open.
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Way {
    identity: u64,
    state: BucketState,
}

fn decode(bytes: Option<&[u8]>, ways: usize) -> Vec<Way> {
    let mut out = vec![Way::default(); ways];
    let Some(bytes) = bytes else { return out };
    let Some((&VERSION, rest)) = bytes.split_first() else { return out };
    for (way, chunk) in out.iter_mut().zip(rest.chunks_exact(WAY_LEN)) {
        let word = |at: usize| chunk.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
        *way = Way {
            identity: word(0),
            state: BucketState { requests_milli: word(8) as i64, tokens_milli: word(16) as i64, at_ms: word(24) },
        };
    }
    out
}

fn encode(ways: &[Way]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ways.len() * WAY_LEN);
    out.push(VERSION);
    for w in ways {
        out.extend_from_slice(&w.identity.to_le_bytes());
        out.extend_from_slice(&(w.state.requests_milli as u64).to_le_bytes());
        out.extend_from_slice(&(w.state.tokens_milli as u64).to_le_bytes());
        out.extend_from_slice(&w.state.at_ms.to_le_bytes());
    }
    out
}

pub struct LimitTable<'a, S: SharedStore> {
    store: &'a S,
    sets: u64,
    ways: usize,
}

impl<'a, S: SharedStore> LimitTable<'a, S> {
    pub fn new(store: &'a S, max_identities: u32) -> Self {
        let ways = max_identities.clamp(1, WAYS);
        let sets = u64::from((max_identities / ways).max(1));
        LimitTable { store, sets, ways: ways as usize }
    }

    fn key(&self, identity: u64) -> String {
        format!("aurelis.rl.{}x{}.{}", self.sets, self.ways, identity % self.sets)
    }

    /// Runs `update` on the identity's buckets atomically (CAS, retried).
    fn update<T>(
        &self,
        identity: u64,
        limits: &Limits,
        now_ms: u64,
        mut update: impl FnMut(&mut BucketState) -> (T, bool),
    ) -> Result<T, TableError> {
        let identity = identity.max(1);
        let key = self.key(identity);
        for _ in 0..CAS_ATTEMPTS {
            let (bytes, cas) = self.store.get(&key).map_err(|_| TableError::Unavailable)?;
            let mut ways = decode(bytes.as_deref(), self.ways);
            let index = ways
                .iter()
                .position(|w| w.identity == identity)
                .or_else(|| ways.iter().position(|w| w.identity == 0 || w.state.is_idle(limits, now_ms)))
                .or_else(|| {
                    // Every way active: take the one with the most budget left.
                    ways.iter()
                        .enumerate()
                        .max_by_key(|(_, w)| w.state.tokens_milli.saturating_add(w.state.requests_milli))
                        .map(|(i, _)| i)
                })
                .unwrap_or(0);
            let Some(way) = ways.get_mut(index) else { return Err(TableError::Unavailable) };
            if way.identity != identity {
                *way = Way { identity, state: BucketState::full(limits, now_ms) };
            }
            let (result, changed) = update(&mut way.state);
            if !changed {
                return Ok(result);
            }
            match self.store.set(&key, &encode(&ways), cas) {
                Ok(()) => return Ok(result),
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Host) => return Err(TableError::Unavailable),
            }
        }
        Err(TableError::Unavailable)
    }

    pub fn admit(
        &self,
        identity: u64,
        limits: &Limits,
        reserve_tokens: u64,
        now_ms: u64,
    ) -> Result<Decision, TableError> {
        self.update(identity, limits, now_ms, |state| {
            let decision = state.admit(limits, reserve_tokens, now_ms);
            (decision, decision.refused.is_none())
        })
    }

    pub fn settle(
        &self,
        identity: u64,
        limits: &Limits,
        reserved: u64,
        actual: u64,
        now_ms: u64,
    ) -> Result<(), TableError> {
        self.update(identity, limits, now_ms, |state| {
            state.settle(limits, reserved, actual, now_ms);
            ((), reserved != actual)
        })
    }

    /// Identities with live (non-idle) buckets: O(sets) reads, for a gauge on a timer.
    pub fn tracked(&self, limits: &Limits, now_ms: u64) -> u64 {
        (0..self.sets)
            .filter_map(|set| self.store.get(&format!("aurelis.rl.{}x{}.{set}", self.sets, self.ways)).ok())
            .map(|(bytes, _)| {
                decode(bytes.as_deref(), self.ways)
                    .iter()
                    .filter(|w| w.identity != 0 && !w.state.is_idle(limits, now_ms))
                    .count() as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryStore;
    use crate::limits::config::{Period, RequestLimit};

    fn per_minute(rate: u32) -> Limits {
        Limits { requests: Some(RequestLimit { rate, per: Period::Minute, burst: None }), tokens_per_minute: None }
    }

    #[test]
    fn exactly_the_limit_is_admitted() {
        let store = MemoryStore::default();
        let table = LimitTable::new(&store, 100);
        let l = per_minute(50);
        let admitted = (0..200).filter(|_| table.admit(7, &l, 0, 1_000).is_ok_and(|d| d.refused.is_none())).count();
        assert_eq!(admitted, 50);
        assert!(table.admit(8, &l, 0, 1_000).is_ok_and(|d| d.refused.is_none()), "other identities unaffected");
    }

    #[test]
    fn a_flood_of_identities_stays_in_a_bounded_key_space() {
        let store = MemoryStore::default();
        let table = LimitTable::new(&store, 64);
        let l = per_minute(10);
        for id in 1..100_000u64 {
            let _ = table.admit(id, &l, 0, id);
        }
        assert!(store.key_count() <= 16, "{} keys", store.key_count());
        assert!(store.bytes() < 16 * (40 + 1 + 4 * WAY_LEN));
    }

    #[test]
    fn settle_refunds_the_unused_reservation() {
        let store = MemoryStore::default();
        let table = LimitTable::new(&store, 100);
        let l = Limits { requests: None, tokens_per_minute: Some(1000) };
        assert!(table.admit(1, &l, 800, 0).is_ok_and(|d| d.refused.is_none()));
        assert!(table.admit(1, &l, 800, 0).is_ok_and(|d| d.refused.is_some()));
        table.settle(1, &l, 800, 50, 0).unwrap();
        assert!(table.admit(1, &l, 800, 0).is_ok_and(|d| d.refused.is_none()));
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use crate::cache::{SharedStore, StoreError};
    use crate::limits::config::{Period, RequestLimit};

    /// A store whose host calls fail, as Envoy's would if shared data were unavailable.
    struct BrokenStore;

    impl SharedStore for BrokenStore {
        fn get(&self, _: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Err(StoreError::Host)
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::Host)
        }
    }

    #[test]
    fn an_unavailable_table_is_an_error_the_filter_fails_open_on() {
        let table = LimitTable::new(&BrokenStore, 100);
        let l = Limits {
            requests: Some(RequestLimit { rate: 1, per: Period::Minute, burst: None }),
            tokens_per_minute: None,
        };
        assert_eq!(table.admit(1, &l, 0, 0), Err(TableError::Unavailable));
        assert_eq!(table.settle(1, &l, 10, 5, 0), Err(TableError::Unavailable));
    }
}
