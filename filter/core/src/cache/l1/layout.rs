//! The shape of L1 derived from configuration, and the shared-data key names it implies.
use crate::config::{CacheConfig, EvictionPolicy};

const MAX_WAYS: u32 = 4;
/// Bumped whenever the slot or metadata format changes: a new shape namespace means a module
/// with another format never reads these keys. 3: hit counts in the metadata (LFU). 4: the
/// insert moment in the slot (purges).
const FORMAT: &str = "l1v4";

/// Entries survive a configuration change that keeps the same shape (TTL and eviction policy
/// changes included: every policy keeps the same metadata); a new shape starts empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub sets: u32,
    pub ways: u32,
    /// Bytes all ways of one set may hold together (`max_bytes / sets`).
    pub set_budget_bytes: u64,
    /// Largest storable entry: `min(max_entry_bytes, set budget)`.
    pub max_entry_bytes: u64,
    pub ttl_ms: u64,
    pub eviction: EvictionPolicy,
}

impl Layout {
    pub fn from_config(config: &CacheConfig) -> Layout {
        let max_entries = config.max_entries.max(1);
        let ways = max_entries.min(MAX_WAYS);
        let sets = (max_entries / ways).max(1);
        let set_budget_bytes = config.max_bytes / u64::from(sets);
        Layout {
            sets,
            ways,
            set_budget_bytes,
            max_entry_bytes: config.max_entry_bytes.min(set_budget_bytes),
            ttl_ms: config.ttl_seconds.saturating_mul(1000),
            eviction: config.eviction,
        }
    }

    /// Names the shared-data keys of this shape; a different shape never reads stale metadata.
    pub fn namespace(&self) -> String {
        format!("aurelis.{FORMAT}.{}x{}.{}", self.sets, self.ways, self.set_budget_bytes)
    }

    /// The layout a namespace names (to free a replaced shape's memory); `None` for another
    /// format's namespace.
    pub fn from_namespace(namespace: &str) -> Option<Layout> {
        let rest = namespace.strip_prefix("aurelis.")?.strip_prefix(FORMAT)?.strip_prefix('.')?;
        let (shape, budget) = rest.split_once('.')?;
        let (sets, ways) = shape.split_once('x')?;
        Some(Layout {
            sets: sets.parse().ok()?,
            ways: ways.parse().ok()?,
            set_budget_bytes: budget.parse().ok()?,
            max_entry_bytes: 0,
            ttl_ms: 0,
            eviction: EvictionPolicy::default(),
        })
    }

    pub fn capacity(&self) -> u64 {
        u64::from(self.sets) * u64::from(self.ways)
    }

    pub fn set_of(&self, hash: u64) -> u64 {
        hash % u64::from(self.sets.max(1))
    }
}

/// Shared-data key names of one layout, built once per configuration.
#[derive(Debug, Clone)]
pub struct KeyNames {
    namespace: String,
}

impl KeyNames {
    pub fn new(layout: &Layout) -> KeyNames {
        KeyNames { namespace: layout.namespace() }
    }

    pub fn meta(&self, set: u64) -> String {
        format!("{}.m{set}", self.namespace)
    }

    pub fn slot(&self, set: u64, way: usize) -> String {
        format!("{}.s{set}.{way}", self.namespace)
    }

    pub fn flights(&self, set: u64) -> String {
        format!("{}.f{set}", self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_names_its_layout() {
        let layout = Layout::from_config(&CacheConfig { max_entries: 64, max_bytes: 6400, ..CacheConfig::default() });
        let back = Layout::from_namespace(&layout.namespace());
        assert_eq!(back.map(|l| (l.sets, l.ways, l.set_budget_bytes)), Some((16, 4, 400)));
        assert_eq!(Layout::from_namespace("aurelis.l1.16x4.400"), None, "the old format is not ours");
    }
}
