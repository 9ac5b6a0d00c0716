//! The L1 purge rules the control plane pushes to every Envoy in the filter configuration
//! (`cache.purges`, applied by the filter: `aurelis_core::cache::purge`). Pure: time is an
//! argument, so the compile step stays deterministic.
//!
//! Bounds: a rule is kept for one L1 TTL after it was made (plus a minute): an Envoy that
//! received it applied it by then, and it remembers the rule itself, while every entry the
//! rule covers has expired from L1. At most `MAX_RULES` are pushed: past that the oldest ones
//! are folded into one `all` rule (every L1 empties once: more than 32 purges within one TTL
//! is rare, and a miss is the safe side).
use aurelis_core::cache::purge::{PurgeRule, Scope, MAX_RULES};

/// How long after its L1 TTL a rule is still pushed (Envoys slow to ack, clock skew).
const MARGIN_MS: u64 = 60_000;

/// The rules after adding one for `scope` at `now_ms` (Unix ms), given the fleet's L1 TTL.
/// Ids are the control plane's Unix ms, kept strictly increasing (two purges in one
/// millisecond, or a clock that stepped back, still get distinct, newer ids).
pub fn with_purge(current: &[PurgeRule], scope: Scope, now_ms: u64, l1_ttl_seconds: u64) -> Vec<PurgeRule> {
    let keep_for_ms = l1_ttl_seconds.saturating_mul(1000).saturating_add(MARGIN_MS);
    let newest = current.iter().map(|r| r.id).max().unwrap_or(0);
    let id = now_ms.max(newest.saturating_add(1));
    let mut rules: Vec<PurgeRule> =
        current.iter().filter(|r| now_ms.saturating_sub(r.id) < keep_for_ms).cloned().collect();
    rules.push(rule(id, scope));
    if rules.len() > MAX_RULES {
        rules.sort_by_key(|r| r.id);
        // The oldest fold into an `all` rule that takes the newest folded id (unique: that
        // rule is gone), leaving room for it.
        let fold = rules.len() + 1 - MAX_RULES;
        let folded_id = rules.get(fold - 1).map_or(1, |r| r.id);
        rules.drain(..fold);
        rules.insert(0, rule(folded_id, Scope::All));
    }
    rules
}

fn rule(id: u64, scope: Scope) -> PurgeRule {
    let mut rule = PurgeRule { id, tenant: None, model: None, schema: None, all: false };
    match scope {
        Scope::Tenant(t) => rule.tenant = Some(t),
        Scope::Model(m) => rule.model = Some(m),
        Scope::Schema(s) => rule.schema = Some(s),
        Scope::All => rule.all = true,
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurelis_core::cache::purge::validate;

    #[test]
    fn ids_increase_even_within_one_millisecond() {
        let one = with_purge(&[], Scope::Model("m".into()), 1_000, 300);
        let two = with_purge(&one, Scope::Tenant("t=0123456789abcdef".into()), 1_000, 300);
        let ids: Vec<u64> = two.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1_000, 1_001]);
        assert_eq!(two[1].tenant.as_deref(), Some("t=0123456789abcdef"));
        let back = with_purge(&two, Scope::Model("m".into()), 500, 300);
        assert_eq!(back.last().map(|r| r.id), Some(1_002), "a clock that stepped back");
        assert_eq!(validate(&back), Ok(()));
    }

    #[test]
    fn rules_older_than_the_l1_ttl_are_no_longer_pushed() {
        let old = with_purge(&[], Scope::Model("m".into()), 1_000, 300);
        let soon = with_purge(&old, Scope::Model("n".into()), 1_000 + 300_000, 300);
        assert_eq!(soon.len(), 2, "kept one TTL and a margin");
        let later = with_purge(&soon, Scope::Model("o".into()), 1_000 + 360_000, 300);
        assert_eq!(later.iter().map(|r| r.model.as_deref().unwrap_or("")).collect::<Vec<_>>(), vec!["n", "o"]);
    }

    #[test]
    fn past_the_bound_the_oldest_fold_into_one_all_rule() {
        let mut rules = Vec::new();
        for i in 0..100u64 {
            rules = with_purge(&rules, Scope::Tenant(format!("t={i:016x}")), 10_000 + i, 300);
            assert!(rules.len() <= MAX_RULES);
            assert_eq!(validate(&rules), Ok(()), "always pushable");
        }
        let all: Vec<&PurgeRule> = rules.iter().filter(|r| r.all).collect();
        assert_eq!(all.len(), 1, "one folded rule");
        assert_eq!(rules.last().and_then(|r| r.tenant.as_deref()), Some("t=0000000000000063"), "the newest kept");
    }
}
