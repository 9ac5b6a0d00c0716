//! Facts about the Envoy process all its workers share through the store: how many workers
//! serve requests (a lone worker needs no cross-worker coalescing claims), and which L1 shape
//! was configured last (to free a replaced shape's memory).
use crate::cache::{Layout, SharedStore};

const WORKERS_KEY: &str = "aurelis.workers";
const LAYOUT_KEY: &str = "aurelis.l1.layout";
const CAS_ATTEMPTS: usize = 16;

/// Counts one more worker serving requests. A host calls it once per worker, when the worker
/// sees its first request (Envoy also runs filter VMs on its main thread, which serve none).
/// Returns the new count, `None` if the store kept refusing.
pub fn register(store: &impl SharedStore) -> Option<u64> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = store.get(WORKERS_KEY).ok()?;
        let next = read_u64(value.as_deref()).wrapping_add(1);
        if store.set(WORKERS_KEY, &next.to_le_bytes(), cas).is_ok() {
            return Some(next);
        }
    }
    None
}

/// Workers registered so far (0 if none or unreadable: treated as "maybe many").
pub fn count(store: &impl SharedStore) -> u64 {
    store.get(WORKERS_KEY).ok().map_or(0, |(value, _)| read_u64(value.as_deref()))
}

fn read_u64(bytes: Option<&[u8]>) -> u64 {
    bytes.and_then(|v| v.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// Records `namespace` as the current L1 shape; returns the shape it replaces, if any, for the
/// caller to clear. Only the worker whose write lands gets it, so a shape is cleared once.
pub fn swap_layout(store: &impl SharedStore, namespace: &str) -> Option<Layout> {
    let (previous, cas) = store.get(LAYOUT_KEY).ok()?;
    let previous = previous.and_then(|b| String::from_utf8(b).ok());
    if previous.as_deref() == Some(namespace) {
        return None;
    }
    store.set(LAYOUT_KEY, namespace.as_bytes(), cas).ok()?;
    previous.and_then(|ns| Layout::from_namespace(&ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryStore;

    #[test]
    fn workers_are_counted() {
        let store = MemoryStore::default();
        assert_eq!(count(&store), 0);
        assert_eq!(register(&store), Some(1));
        assert_eq!(register(&store), Some(2));
        assert_eq!(count(&store), 2);
    }

    #[test]
    fn a_replaced_layout_is_handed_back_once() {
        let store = MemoryStore::default();
        assert_eq!(swap_layout(&store, "aurelis.l1v4.4x4.100"), None, "nothing before");
        assert_eq!(swap_layout(&store, "aurelis.l1v4.4x4.100"), None, "same shape");
        let old = swap_layout(&store, "aurelis.l1v4.8x4.50");
        assert_eq!(old.map(|l| (l.sets, l.ways)), Some((4, 4)));
        assert_eq!(swap_layout(&store, "aurelis.l1v4.8x4.50"), None);
    }
}
