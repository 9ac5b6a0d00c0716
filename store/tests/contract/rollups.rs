//! The `RollupStore` contract: telemetry history.
use crate::{cases, Case};
use aurelis_store::{Rollup, Stores};

pub fn cases() -> Vec<Case> {
    cases![
        rollups_read_back_a_range_oldest_first,
        a_rewritten_window_replaces_the_old_one,
        pruning_forgets_only_the_past_of_one_width
    ]
}

fn rollup(start_ms: i64, secs: u32, model: &str, status: &str, tenant: Option<&str>, payload: &[u8]) -> Rollup {
    Rollup {
        window_start_ms: start_ms,
        window_secs: secs,
        model: model.to_string(),
        provider: "openai".to_string(),
        cache_status: status.to_string(),
        tenant: tenant.map(str::to_string),
        payload: payload.to_vec(),
    }
}

async fn rollups_read_back_a_range_oldest_first(s: Stores) {
    let rows = vec![
        rollup(30_000, 10, "gpt-4o", "hit", None, b"c"),
        rollup(10_000, 10, "gpt-4o", "miss", None, b"a"),
        rollup(20_000, 10, "gpt-4o", "hit", Some("t1"), &[0, 255, 7]),
        rollup(20_000, 60, "gpt-4o", "hit", None, b"coarse"),
        rollup(40_000, 10, "gpt-4o", "hit", None, b"d"),
    ];
    s.rollups.put_rollups(&rows).await.unwrap();
    let got = s.rollups.rollups(10, 10_000, 40_000).await.unwrap();
    // [from, to): 40 000 is out; the 60 s row is another width.
    assert_eq!(got, vec![rows[1].clone(), rows[2].clone(), rows[0].clone()]);
    assert!(s.rollups.rollups(10, 50_000, 90_000).await.unwrap().is_empty());
    assert_eq!(s.rollups.rollups(60, 0, i64::MAX).await.unwrap(), vec![rows[3].clone()]);
}

async fn a_rewritten_window_replaces_the_old_one(s: Stores) {
    let first = rollup(10_000, 10, "m", "hit", None, b"first");
    let per_tenant = rollup(10_000, 10, "m", "hit", Some("t1"), b"tenant");
    s.rollups.put_rollups(&[first.clone(), per_tenant.clone()]).await.unwrap();
    // A retried flush of the same window: replaced, not added (and the per-tenant row is a
    // different row).
    let retried = rollup(10_000, 10, "m", "hit", None, b"second");
    s.rollups.put_rollups(std::slice::from_ref(&retried)).await.unwrap();
    let got = s.rollups.rollups(10, 0, 20_000).await.unwrap();
    assert_eq!(got, vec![retried.clone(), per_tenant]);
    // An empty tenant id is no tenant: it replaces the tenant-less row.
    s.rollups.put_rollups(&[rollup(10_000, 10, "m", "hit", Some(""), b"third")]).await.unwrap();
    let got = s.rollups.rollups(10, 0, 20_000).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], rollup(10_000, 10, "m", "hit", None, b"third"));
    // An empty batch is fine.
    s.rollups.put_rollups(&[]).await.unwrap();
}

async fn pruning_forgets_only_the_past_of_one_width(s: Stores) {
    let rows: Vec<Rollup> = (0..5).map(|i| rollup(i * 10_000, 10, "m", "hit", None, b"x")).collect();
    let coarse = rollup(0, 3600, "m", "hit", None, b"hour");
    s.rollups.put_rollups(&rows).await.unwrap();
    s.rollups.put_rollups(std::slice::from_ref(&coarse)).await.unwrap();
    assert_eq!(s.rollups.prune_before(10, 30_000).await.unwrap(), 3);
    assert_eq!(s.rollups.rollups(10, 0, i64::MAX).await.unwrap(), rows[3..].to_vec());
    assert_eq!(s.rollups.rollups(3600, 0, i64::MAX).await.unwrap(), vec![coarse]);
    assert_eq!(s.rollups.prune_before(10, 30_000).await.unwrap(), 0);
}

/// Restart tests: what `write_history` stores, `history_is_back` finds after a reopen.
pub async fn write_history(s: &Stores) {
    s.rollups.put_rollups(&history()).await.unwrap();
}

pub async fn history_is_back(s: &Stores) {
    assert_eq!(s.rollups.rollups(10, 0, i64::MAX).await.unwrap(), history());
}

fn history() -> Vec<Rollup> {
    vec![rollup(10_000, 10, "m", "hit", None, b"one"), rollup(20_000, 10, "m", "miss", Some("t"), b"two")]
}
