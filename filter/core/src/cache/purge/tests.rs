use super::table::{merge, Applied, MAX_APPLIED};
use super::*;
use crate::cache::MemoryStore;

const PREFIX: &str = "model_request:";

fn tenant(id: u64, t: &str) -> PurgeRule {
    PurgeRule { id, tenant: Some(t.into()), model: None, schema: None, all: false }
}

fn model(id: u64, m: &str) -> PurgeRule {
    PurgeRule { id, tenant: None, model: Some(m.into()), schema: None, all: false }
}

fn key(scope: &str) -> String {
    format!("{PREFIX}v3:{scope}:x=0123456789abcdef:00112233445566778899aabbccddeeff")
}

#[test]
fn an_entry_stored_before_the_rule_is_purged_and_one_stored_after_is_not() {
    let store = MemoryStore::default();
    let purges = apply(&store, &[tenant(7, "t=aaaaaaaaaaaaaaaa")], 1_000);
    let x = key("t=aaaaaaaaaaaaaaaa");
    assert!(purges.covers(999, &x, PREFIX, Some("m")), "stored before");
    assert!(purges.covers(1_000, &x, PREFIX, Some("m")), "stored in the same millisecond: purged");
    assert!(!purges.covers(1_001, &x, PREFIX, Some("m")), "stored after");
    assert!(!purges.covers(999, &key("t=bbbbbbbbbbbbbbbb"), PREFIX, Some("m")), "another tenant");
    assert!(!purges.covers(999, &key("anon"), PREFIX, Some("m")));
}

#[test]
fn model_schema_and_all_rules_cover_what_they_name() {
    let store = MemoryStore::default();
    let x = key("t=aaaaaaaaaaaaaaaa");
    let purges = apply(&store, &[model(1, "gpt-4o")], 10);
    assert!(purges.covers(5, &x, PREFIX, Some("gpt-4o")));
    assert!(!purges.covers(5, &x, PREFIX, Some("gpt-4o-mini")));
    assert!(purges.covers(5, &x, PREFIX, None), "an unknown model is a miss, never a purged answer");
    let schema = |s: &str| PurgeRule { id: 2, tenant: None, model: None, schema: Some(s.into()), all: false };
    assert!(apply(&MemoryStore::default(), &[schema("v1")], 10).covers(5, &x, PREFIX, Some("m")));
    assert!(!apply(&MemoryStore::default(), &[schema("v0")], 10).covers(5, &x, PREFIX, Some("m")));
    let all = PurgeRule { id: 3, tenant: None, model: None, schema: None, all: true };
    assert!(apply(&MemoryStore::default(), &[all], 10).covers(5, &x, PREFIX, Some("m")));
}

#[test]
fn every_worker_and_every_later_configuration_keeps_the_first_moment() {
    let store = MemoryStore::default();
    let rule = tenant(7, "t=aaaaaaaaaaaaaaaa");
    apply(&store, std::slice::from_ref(&rule), 1_000);
    let later = apply(&store, std::slice::from_ref(&rule), 5_000);
    let x = key("t=aaaaaaaaaaaaaaaa");
    assert!(!later.covers(2_000, &x, PREFIX, Some("m")), "stored after the first worker applied it");
    // A control plane that restarted without the rule: the Envoy still remembers it.
    let forgotten = apply(&store, &[], 9_000);
    assert!(forgotten.covers(900, &x, PREFIX, Some("m")), "purged entries stay purged");
    assert!(!forgotten.covers(1_001, &x, PREFIX, Some("m")));
}

#[test]
fn a_failing_store_still_applies_the_rules_with_the_workers_own_moment() {
    let store = MemoryStore::default();
    store.fail_reads(true);
    let purges = apply(&store, &[tenant(1, "t=aaaaaaaaaaaaaaaa")], 50);
    assert!(purges.covers(50, &key("t=aaaaaaaaaaaaaaaa"), PREFIX, Some("m")));
}

#[test]
fn the_table_stays_bounded_and_folding_never_forgets_a_purge() {
    let mut table = Vec::new();
    let mut oldest_purged = Vec::new();
    for i in 1..=200u64 {
        let rules = [tenant(i, &format!("t={i:016x}"))];
        table = merge(&table, &rules, i * 10);
        assert!(table.len() <= MAX_APPLIED, "{} rules", table.len());
        oldest_purged.push(format!("t={i:016x}"));
    }
    let purges = apply_table(&table);
    for (i, scope) in oldest_purged.iter().enumerate() {
        let stored_just_before = (i as u64 + 1) * 10;
        assert!(purges.covers(stored_just_before, &key(scope), PREFIX, Some("m")), "rule {i}");
    }
    assert!(!purges.covers(2_001, &key("t=0000000000000001"), PREFIX, Some("m")));
}

#[test]
fn rules_expire_after_the_longest_ttl() {
    let table = merge(&[], &[tenant(1, "t=aaaaaaaaaaaaaaaa")], 0);
    let later = merge(&table, &[], crate::config::MAX_TTL_SECONDS * 1000);
    assert!(later.is_empty());
}

fn apply_table(table: &[Applied]) -> Purges {
    let store = MemoryStore::default();
    let _ = crate::cache::SharedStore::set(&store, "aurelis.l1.purges", &serde_json::to_vec(table).unwrap(), None);
    apply(&store, &[], table.iter().map(|a| a.applied_ms).max().unwrap_or(0))
}

#[test]
fn validation_names_the_field_and_the_value() {
    assert_eq!(validate(&[tenant(1, "t=aaaaaaaaaaaaaaaa"), model(2, "gpt-4o")]), Ok(()));
    let two = PurgeRule { id: 1, tenant: Some("t=a".into()), model: Some("m".into()), schema: None, all: false };
    let err = validate(&[two]).unwrap_err().to_string();
    assert!(err.contains("cache.purges") && err.contains("exactly one"), "{err}");
    let none = PurgeRule { id: 1, tenant: None, model: None, schema: None, all: false };
    assert!(validate(&[none]).is_err());
    assert!(validate(&[tenant(0, "t=a")]).unwrap_err().to_string().contains("id 0"));
    assert!(validate(&[tenant(3, "t=a"), model(3, "m")]).unwrap_err().to_string().contains("unique"));
    assert!(validate(&[model(1, "has space")]).unwrap_err().to_string().contains("has space"));
    assert!(validate(&[model(1, &"m".repeat(129))]).is_err());
    let many: Vec<PurgeRule> = (1..=33).map(|i| model(i, "m")).collect();
    assert!(validate(&many).unwrap_err().to_string().contains("at most 32"));
}

#[test]
fn the_config_carries_rules_and_refuses_bad_ones_by_name() {
    use crate::config::FilterConfig;
    let config = FilterConfig::from_json(br#"{"cache":{"purges":[{"id":5,"tenant":"t=0123456789abcdef"}]}}"#).unwrap();
    assert_eq!(config.cache.purges, vec![tenant(5, "t=0123456789abcdef")]);
    let err = FilterConfig::from_json(br#"{"cache":{"purges":[{"id":5}]}}"#).unwrap_err().to_string();
    assert!(err.contains("cache.purges"), "{err}");
    let err = FilterConfig::from_json(br#"{"cache":{"purges":[{"id":5,"prompt":"x"}]}}"#).unwrap_err().to_string();
    assert!(err.contains("unknown field `prompt`"), "{err}");
    let default = serde_json::to_string(&FilterConfig::default()).unwrap();
    assert!(!default.contains("purges"), "nothing pushed without rules: {default}");
}
