//! When this Envoy first saw each purge rule: one value in the process-wide store (shared data
//! never frees a key, so it is one key, rewritten with compare-and-swap), read and merged by
//! every worker when it is configured, and the worker's own view of it (`Purges`) for lookups.
use super::{key_scope, PurgeRule, Scope};
use crate::cache::store::{SharedStore, StoreError};
use crate::config::MAX_TTL_SECONDS;
use serde::{Deserialize, Serialize};

const TABLE_KEY: &str = "aurelis.l1.purges";
const CAS_ATTEMPTS: usize = 8;
/// Rules the table keeps: the current configuration's (at most `MAX_RULES`) and older ones the
/// control plane no longer sends (it may have restarted without them), oldest folded first.
pub const MAX_APPLIED: usize = 64;
/// How long a rule is kept: an entry it covers was stored before it was applied, and no L1
/// entry lives longer than the longest TTL a configuration may set.
const RETENTION_MS: u64 = MAX_TTL_SECONDS * 1000;

/// A rule and the moment (this Envoy's clock, ms) it was first applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub rule: PurgeRule,
    pub applied_ms: u64,
}

/// A worker's view of the rules in force: checked on every L1 hit, so the common case (an
/// entry stored after the newest rule) is one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purges {
    rules: Vec<(Scope, u64)>,
    newest_ms: u64,
}

impl Purges {
    fn of(table: &[Applied]) -> Purges {
        let rules: Vec<(Scope, u64)> =
            table.iter().filter_map(|a| a.rule.scope().map(|scope| (scope, a.applied_ms))).collect();
        let newest_ms = rules.iter().map(|(_, at)| *at).max().unwrap_or(0);
        Purges { rules, newest_ms }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the entry under `key` (for `model`), put into L1 at `inserted_ms`, was purged:
    /// a rule covering it was applied at or after that moment.
    pub fn covers(&self, inserted_ms: u64, key: &str, key_prefix: &str, model: Option<&str>) -> bool {
        if self.rules.is_empty() || inserted_ms > self.newest_ms {
            return false;
        }
        let scope = key_scope(key, key_prefix);
        self.rules.iter().any(|(rule, applied_ms)| inserted_ms <= *applied_ms && rule.covers(scope, model))
    }
}

/// Applies `rules` (the configuration's) at `now_ms`: rules already in the table keep their
/// moment, new ones get `now_ms`. When the store refuses, the worker still applies them
/// itself (with its own moment), so a failure only costs misses.
pub fn apply(store: &impl SharedStore, rules: &[PurgeRule], now_ms: u64) -> Purges {
    let mut last_read = Vec::new();
    for _ in 0..CAS_ATTEMPTS {
        let Ok((bytes, cas)) = store.get(TABLE_KEY) else { break };
        let table = decode(bytes.as_deref());
        let merged = merge(&table, rules, now_ms);
        if merged == table {
            return Purges::of(&merged);
        }
        match store.set(TABLE_KEY, &encode(&merged), cas) {
            Ok(()) => return Purges::of(&merged),
            Err(StoreError::CasMismatch) => last_read = table,
            Err(StoreError::Host) => {
                last_read = table;
                break;
            }
        }
    }
    Purges::of(&merge(&last_read, rules, now_ms))
}

/// The table after applying `rules` at `now_ms`: expired rules dropped, new ones added, and
/// past `MAX_APPLIED` the oldest rules no longer configured folded into one `all` rule at the
/// newest of their moments (it covers everything they did, and a little more).
pub fn merge(table: &[Applied], rules: &[PurgeRule], now_ms: u64) -> Vec<Applied> {
    let mut merged: Vec<Applied> =
        table.iter().filter(|a| now_ms.saturating_sub(a.applied_ms) < RETENTION_MS).cloned().collect();
    for rule in rules {
        if !merged.iter().any(|a| &a.rule == rule) {
            merged.push(Applied { rule: rule.clone(), applied_ms: now_ms });
        }
    }
    if merged.len() <= MAX_APPLIED {
        return merged;
    }
    let configured = |a: &Applied| rules.contains(&a.rule);
    let (mut kept, mut old): (Vec<Applied>, Vec<Applied>) = merged.into_iter().partition(configured);
    old.sort_by_key(|a| a.applied_ms);
    // Room for the folded rule; the configuration alone never needs more than `MAX_RULES`.
    let keep_old = MAX_APPLIED.saturating_sub(kept.len() + 1);
    let fold_count = old.len().saturating_sub(keep_old);
    let folded_ms = old.iter().take(fold_count).map(|a| a.applied_ms).max().unwrap_or(0);
    kept.extend(old.into_iter().skip(fold_count));
    kept.push(Applied { rule: folded_rule(), applied_ms: folded_ms });
    kept
}

/// The rule older ones fold into (id 0: no configuration can name it).
fn folded_rule() -> PurgeRule {
    PurgeRule { id: 0, tenant: None, model: None, schema: None, all: true }
}

fn decode(bytes: Option<&[u8]>) -> Vec<Applied> {
    // Unreadable (another format, or never written): start over; it only forgets moments.
    bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

fn encode(table: &[Applied]) -> Vec<u8> {
    serde_json::to_vec(table).unwrap_or_default()
}
