//! History: closed windows as `Rollup` rows in the store, coarser rollups (1 min, 1 h) made
//! from the finer ones once their period has closed, retention per tier, and reading a time
//! range back at the coarsest resolution that covers it. Rolling up reads back what is stored,
//! so a restart in the middle of an hour loses nothing; writes replace rows with the same key,
//! so rolling the same period up twice is harmless.
use super::stats::{PayloadError, WindowStats};
use super::windows::{ClosedWindow, RowKey, WINDOW_SECS};
use aurelis_store::{Rollup, RollupStore, StoreError};
use std::collections::BTreeMap;

/// Each tier: window width and how long its rows are kept. The report reads raw rows (the
/// telemetry's windows, 10 s by default) for the last hour, 1 min rows for a day, 1 h rows
/// beyond: 35 days of hourly rows is 840 rows per series, cheap in any store.
pub const TIERS: [Tier; 3] = tiers(WINDOW_SECS);

/// The tiers when the raw windows are `raw_secs` wide (a divisor of 60, `telemetry.window_secs`).
pub const fn tiers(raw_secs: u32) -> [Tier; 3] {
    [
        Tier { secs: raw_secs, keep_ms: 3 * 3600 * 1000 },
        Tier { secs: 60, keep_ms: 2 * 24 * 3600 * 1000 },
        Tier { secs: 3600, keep_ms: 35 * 24 * 3600 * 1000 },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub secs: u32,
    pub keep_ms: i64,
}

impl Tier {
    pub fn ms(self) -> i64 {
        i64::from(self.secs) * 1000
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored rollup ({start_ms}, {secs} s) is unreadable: {source}")]
    Payload { start_ms: i64, secs: u32, source: PayloadError },
}

pub fn to_rollups(window: &ClosedWindow) -> Vec<Rollup> {
    window
        .rows
        .iter()
        .map(|(key, stats)| Rollup {
            window_start_ms: window.start_ms,
            window_secs: window.window_secs,
            model: key.model.clone(),
            provider: key.provider.clone(),
            cache_status: key.cache_status.clone(),
            tenant: key.tenant.clone(),
            payload: stats.encode(),
        })
        .collect()
}

/// Rows back into windows (one per start), in start order.
pub fn to_windows(rows: &[Rollup]) -> Result<Vec<ClosedWindow>, HistoryError> {
    let mut windows: BTreeMap<i64, ClosedWindow> = BTreeMap::new();
    for row in rows {
        let stats = WindowStats::decode(&row.payload).map_err(|source| HistoryError::Payload {
            start_ms: row.window_start_ms,
            secs: row.window_secs,
            source,
        })?;
        let key = RowKey {
            model: row.model.clone(),
            provider: row.provider.clone(),
            cache_status: row.cache_status.clone(),
            tenant: row.tenant.clone(),
        };
        let window = windows.entry(row.window_start_ms).or_insert_with(|| ClosedWindow {
            start_ms: row.window_start_ms,
            window_secs: row.window_secs,
            rows: BTreeMap::new(),
        });
        window.rows.entry(key).or_default().merge(&stats);
    }
    Ok(windows.into_values().collect())
}

/// Finer windows merged into windows of `secs` (aligned on multiples of it).
pub fn coarsen(windows: &[ClosedWindow], secs: u32) -> Vec<ClosedWindow> {
    let width = i64::from(secs) * 1000;
    let mut out: BTreeMap<i64, ClosedWindow> = BTreeMap::new();
    for window in windows {
        let start = window.start_ms.div_euclid(width) * width;
        let target = out.entry(start).or_insert_with(|| ClosedWindow {
            start_ms: start,
            window_secs: secs,
            rows: BTreeMap::new(),
        });
        for (key, stats) in &window.rows {
            target.rows.entry(key.clone()).or_default().merge(stats);
        }
    }
    out.into_values().collect()
}

pub async fn persist(store: &dyn RollupStore, windows: &[ClosedWindow]) -> Result<(), StoreError> {
    let rows: Vec<Rollup> = windows.iter().flat_map(to_rollups).collect();
    if rows.is_empty() {
        return Ok(());
    }
    store.put_rollups(&rows).await
}

/// Rebuilds tier `TIERS[coarser]` from the tier below for every period of it in
/// `[from_ms, closed_until_ms)` that has fully closed. Returns where the next pass starts (the
/// first period not closed yet).
pub async fn roll_up_tier(
    store: &dyn RollupStore,
    raw_secs: u32,
    coarser: usize,
    from_ms: i64,
    closed_until_ms: i64,
) -> Result<i64, HistoryError> {
    let tiers = tiers(raw_secs);
    let (Some(finer), Some(tier)) = (coarser.checked_sub(1).and_then(|i| tiers.get(i)), tiers.get(coarser)) else {
        return Ok(from_ms);
    };
    let start = from_ms.div_euclid(tier.ms()) * tier.ms();
    let end = closed_until_ms.div_euclid(tier.ms()) * tier.ms();
    if end <= start {
        return Ok(start);
    }
    let rows = store.rollups(finer.secs, start, end).await?;
    let out: Vec<Rollup> = coarsen(&to_windows(&rows)?, tier.secs).iter().flat_map(to_rollups).collect();
    if !out.is_empty() {
        store.put_rollups(&out).await?;
    }
    Ok(end)
}

/// Every coarser tier over `[from_ms, closed_until_ms)`, finest first.
pub async fn roll_up(
    store: &dyn RollupStore,
    raw_secs: u32,
    from_ms: i64,
    closed_until_ms: i64,
) -> Result<(), HistoryError> {
    for coarser in 1..TIERS.len() {
        roll_up_tier(store, raw_secs, coarser, from_ms, closed_until_ms).await?;
    }
    Ok(())
}

/// Deletes each tier's rows past its retention; returns how many.
pub async fn prune(store: &dyn RollupStore, raw_secs: u32, now_ms: i64) -> Result<u64, StoreError> {
    let mut pruned = 0;
    for tier in tiers(raw_secs) {
        pruned += store.prune_before(tier.secs, now_ms - tier.keep_ms).await?;
    }
    Ok(pruned)
}

/// Which tier covers which part of `[from_ms, to_ms)`: the coarsest tier for the periods it
/// has (closed before `closed_until_ms`), finer ones for the rest. The 10 s tier alone serves
/// ranges up to `max_raw_ms`.
pub fn plan(raw_secs: u32, from_ms: i64, to_ms: i64, closed_until_ms: i64) -> Vec<(Tier, i64, i64)> {
    // The coarsest tier read is the finest one that keeps the whole range; finer ones fill
    // the periods it has not rolled up yet.
    let tiers = tiers(raw_secs);
    let span = to_ms - from_ms;
    let coarsest = tiers.iter().position(|t| t.keep_ms >= span).unwrap_or(tiers.len() - 1);
    let mut plan = Vec::new();
    let mut cursor = from_ms;
    for (i, tier) in tiers.iter().take(coarsest + 1).enumerate().rev() {
        let finest = i == 0;
        let end = if finest { to_ms } else { (closed_until_ms.div_euclid(tier.ms()) * tier.ms()).min(to_ms) };
        // Coarse periods must lie inside the range: align the cursor up.
        let start = if finest { cursor } else { (cursor + tier.ms() - 1).div_euclid(tier.ms()) * tier.ms() };
        if end > start {
            plan.push((*tier, start, end));
            cursor = end;
        }
    }
    plan
}

/// Windows of `[from_ms, to_ms)` from the store, each part at its tier (see `plan`).
pub async fn load(
    store: &dyn RollupStore,
    raw_secs: u32,
    from_ms: i64,
    to_ms: i64,
    closed_until_ms: i64,
) -> Result<Vec<ClosedWindow>, HistoryError> {
    let mut windows = Vec::new();
    for (tier, start, end) in plan(raw_secs, from_ms, to_ms, closed_until_ms) {
        let rows = store.rollups(tier.secs, start, end).await?;
        windows.extend(to_windows(&rows)?);
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::record::Record;
    use crate::telemetry::windows::WindowKeeper;
    use aurelis_store::memory::MemoryStore;

    const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;

    fn windows(count: i64, per_window: usize) -> Vec<ClosedWindow> {
        let mut keeper = WindowKeeper::new(0, 0, T0);
        for w in 0..count {
            for i in 0..per_window {
                let record = Record {
                    start_ms: T0 + w * 10_000,
                    model: "m".into(),
                    provider: "p".into(),
                    cache_status: "MISS".into(),
                    latency_ms: 10.0 + i as f64,
                    tokens_in: 3,
                    ..Record::default()
                };
                keeper.add(&record, T0 + w * 10_000);
            }
        }
        keeper.close(T0 + count * 10_000 + 10_000)
    }

    #[tokio::test]
    async fn minutes_and_hours_are_rolled_up_from_what_is_stored() {
        let store = MemoryStore::default();
        let raw = windows(360 + 6, 2); // one hour and one minute of 10 s windows
        persist(&store, &raw).await.unwrap();
        let closed_until = T0 + 366 * 10_000;
        roll_up(&store, WINDOW_SECS, T0, closed_until).await.unwrap();
        let minutes = store.rollups(60, T0, closed_until).await.unwrap();
        assert_eq!(minutes.len(), 61);
        let hours = to_windows(&store.rollups(3600, T0, closed_until).await.unwrap()).unwrap();
        assert_eq!(hours.len(), 1, "the second hour has not closed");
        let stats = hours[0].rows.values().next().unwrap();
        assert_eq!((stats.requests, stats.tokens_in), (720, 2160));
        // Again: replaced, not doubled.
        roll_up(&store, WINDOW_SECS, T0, closed_until).await.unwrap();
        let hours = to_windows(&store.rollups(3600, T0, closed_until).await.unwrap()).unwrap();
        assert_eq!(hours[0].rows.values().next().unwrap().requests, 720);
    }

    #[tokio::test]
    async fn a_long_range_reads_hours_then_minutes_then_raw_windows() {
        let store = MemoryStore::default();
        let raw = windows(366, 1);
        persist(&store, &raw).await.unwrap();
        let closed_until = T0 + 366 * 10_000;
        roll_up(&store, WINDOW_SECS, T0, closed_until).await.unwrap();
        let got = load(&store, WINDOW_SECS, T0 - 30 * 86_400_000, closed_until, closed_until).await.unwrap();
        let total: u64 = got.iter().flat_map(|w| w.rows.values()).map(|s| s.requests).sum();
        assert_eq!(total, 366, "every request once: no period read at two tiers");
        let now = closed_until + 5000; // the current window is still open
        let day = plan(WINDOW_SECS, now - 86_400_000, now, closed_until);
        assert_eq!(day.iter().map(|(t, _, _)| t.secs).collect::<Vec<_>>(), vec![60, 10]);
        let month = plan(WINDOW_SECS, now - 30 * 86_400_000, now, closed_until);
        assert_eq!(month.iter().map(|(t, _, _)| t.secs).collect::<Vec<_>>(), vec![3600, 60, 10]);
        let hour = plan(WINDOW_SECS, now - 3_600_000, now, closed_until);
        assert_eq!(hour.iter().map(|(t, _, _)| t.secs).collect::<Vec<_>>(), vec![10]);
    }

    #[tokio::test]
    async fn each_tier_keeps_its_own_retention() {
        let store = MemoryStore::default();
        persist(&store, &windows(1, 1)).await.unwrap();
        roll_up(&store, WINDOW_SECS, T0, T0 + 3_600_000).await.unwrap();
        let pruned = prune(&store, WINDOW_SECS, T0 + 4 * 3_600_000).await.unwrap();
        assert_eq!(pruned, 1, "the raw row is past 3 h; the minute and the hour stay");
        assert_eq!(store.rollups(3600, T0, T0 + 1).await.unwrap().len(), 1);
    }
}
