//! What refreshes share across an Envoy's workers, in the process-wide store: the nonces of
//! grants already used (until they expire) and each opted-in tenant's token budget for the
//! current clock hour. Both are read-modify-write under compare-and-swap; when the store cannot
//! be read or written the refresh is refused (fail closed: a refresh is never urgent, and an
//! unchecked nonce could be replayed).
use crate::cache::{SharedStore, StoreError};

const NONCES_KEY: &str = "aurelis.refresh.nonces";
const BUDGET_PREFIX: &str = "aurelis.refresh.budget.";
/// Nonces of unexpired grants kept at once. The refresher runs at most 5 replays at a time and
/// a grant lives at most a minute, so this is far above what genuine traffic needs; only
/// grants whose MACs checked get here, so clients cannot fill it.
const MAX_NONCES: usize = 4096;
const NONCE_RECORD: usize = super::grant::NONCE_BYTES + 8;
const CAS_TRIES: usize = 4;
const HOUR_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerError {
    /// The nonce was used before.
    Replayed,
    /// The store failed, or kept changing under us, or the nonce list is full.
    Unavailable,
}

/// Spends `nonce` (valid until `expires_at_ms`). Expired nonces are dropped as it goes.
pub fn spend_nonce<S: SharedStore>(
    store: &S,
    nonce: &[u8; super::grant::NONCE_BYTES],
    expires_at_ms: u64,
    now_ms: u64,
) -> Result<(), LedgerError> {
    for _ in 0..CAS_TRIES {
        let (value, cas) = store.get(NONCES_KEY).map_err(|_| LedgerError::Unavailable)?;
        let mut kept = Vec::with_capacity(value.as_ref().map_or(0, Vec::len) + NONCE_RECORD);
        for record in value.unwrap_or_default().chunks_exact(NONCE_RECORD) {
            let (seen, expiry) = record.split_at(super::grant::NONCE_BYTES);
            let expiry = u64::from_le_bytes(expiry.try_into().unwrap_or([0; 8]));
            if expiry <= now_ms {
                continue;
            }
            if seen == nonce {
                return Err(LedgerError::Replayed);
            }
            kept.extend_from_slice(record);
        }
        if kept.len() / NONCE_RECORD >= MAX_NONCES {
            return Err(LedgerError::Unavailable);
        }
        kept.extend_from_slice(nonce);
        kept.extend_from_slice(&expires_at_ms.to_le_bytes());
        // Without a CAS token (the key never written) two first writers could race and one
        // nonce be lost: only the very first grant of a process is exposed, for one minute.
        match store.set(NONCES_KEY, &kept, cas) {
            Ok(()) => return Ok(()),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host) => return Err(LedgerError::Unavailable),
        }
    }
    Err(LedgerError::Unavailable)
}

fn budget_key(tenant: &str) -> String {
    // Tenant names are plain names from the configuration: a bounded key space.
    format!("{BUDGET_PREFIX}{tenant}")
}

/// Adds `delta` (may be negative) to the tenant's spend of this hour, first checking — when
/// `limit` is given — that the hour still has budget left. `Ok(false)`: no budget left (nothing
/// written). A refresh reserves what it may spend up front and settles to what it spent, so
/// concurrent refreshes cannot all pass the check; one refresh may end the hour a little over.
pub fn add_spend<S: SharedStore>(
    store: &S,
    tenant: &str,
    delta: i64,
    limit: Option<u64>,
    now_ms: u64,
) -> Result<bool, LedgerError> {
    let key = budget_key(tenant);
    let hour = now_ms / HOUR_MS;
    for _ in 0..CAS_TRIES {
        let (value, cas) = store.get(&key).map_err(|_| LedgerError::Unavailable)?;
        let (stored_hour, spent) = match value.as_deref().map(<[u8; 16]>::try_from) {
            Some(Ok(v)) => {
                let (h, s) = v.split_at(8);
                (u64::from_le_bytes(h.try_into().unwrap_or([0; 8])), u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
            }
            _ => (hour, 0),
        };
        let spent = if stored_hour == hour { spent } else { 0 };
        if limit.is_some_and(|limit| spent >= limit) {
            return Ok(false);
        }
        let next = spent.saturating_add_signed(delta);
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&hour.to_le_bytes());
        out.extend_from_slice(&next.to_le_bytes());
        match store.set(&key, &out, cas) {
            Ok(()) => return Ok(true),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Host) => return Err(LedgerError::Unavailable),
        }
    }
    Err(LedgerError::Unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryStore;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_nonce_is_spent_once_until_it_expires() {
        let store = MemoryStore::default();
        assert_eq!(spend_nonce(&store, &[1; 16], NOW + 30_000, NOW), Ok(()));
        assert_eq!(spend_nonce(&store, &[2; 16], NOW + 30_000, NOW), Ok(()));
        assert_eq!(spend_nonce(&store, &[1; 16], NOW + 30_000, NOW + 1), Err(LedgerError::Replayed));
        // Once expired it is forgotten (its grant is refused as expired anyway).
        assert_eq!(spend_nonce(&store, &[1; 16], NOW + 90_000, NOW + 30_000), Ok(()));
        store.fail_reads(true);
        assert_eq!(spend_nonce(&store, &[3; 16], NOW + 30_000, NOW), Err(LedgerError::Unavailable), "fail closed");
    }

    #[test]
    fn the_budget_is_per_tenant_and_per_hour() {
        let store = MemoryStore::default();
        assert_eq!(add_spend(&store, "a", 80, Some(100), NOW), Ok(true));
        assert_eq!(add_spend(&store, "a", -60, None, NOW), Ok(true), "settled to 20");
        assert_eq!(add_spend(&store, "a", 90, Some(100), NOW), Ok(true), "20 < 100: admitted");
        assert_eq!(add_spend(&store, "a", 10, Some(100), NOW), Ok(false), "110 spent");
        assert_eq!(add_spend(&store, "b", 10, Some(100), NOW), Ok(true), "another tenant");
        let next_hour = (NOW / HOUR_MS + 1) * HOUR_MS;
        assert_eq!(add_spend(&store, "a", 10, Some(100), next_hour), Ok(true), "a new hour");
    }
}
