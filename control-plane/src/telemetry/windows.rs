//! The window keeper: records in, closed 10 s windows out. Pure: the caller passes `now`.
//!
//! A record belongs to the window of its request's start. Envoys flush their access log buffers
//! about once a second, so a window stays open `grace_ms` past its end before it closes; a
//! record arriving later still counts (counts stay exact), in the oldest window still open, and
//! is reported as late.
use super::record::Record;
use super::stats::WindowStats;
use super::summary::{SeriesKey, WindowSummary};
use std::collections::{BTreeMap, HashMap};

/// Width of the raw windows by default (`telemetry.window_secs`).
pub const WINDOW_SECS: u32 = 10;
/// Distinct tenants followed per window before further ones count only in the totals: the
/// top N is chosen among these (bounds memory under a flood of fresh scopes).
const MAX_TRACKED_TENANTS: usize = 10_000;

/// One row of a window: model × provider × cache status, and the tenant for top-N rows
/// (`None`: all traffic, tenants included).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    pub model: String,
    pub provider: String,
    pub cache_status: String,
    pub tenant: Option<String>,
}

impl RowKey {
    pub fn series(&self) -> SeriesKey {
        SeriesKey { model: self.model.clone(), provider: self.provider.clone() }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClosedWindow {
    pub start_ms: i64,
    pub window_secs: u32,
    pub rows: BTreeMap<RowKey, WindowStats>,
}

impl ClosedWindow {
    /// One summary per model × provider: cache statuses merged, tenant rows left out (they are
    /// already in the totals).
    pub fn summaries(&self) -> Vec<WindowSummary> {
        let mut series: BTreeMap<SeriesKey, WindowStats> = BTreeMap::new();
        for (key, stats) in self.rows.iter().filter(|(k, _)| k.tenant.is_none()) {
            series.entry(key.series()).or_default().merge(stats);
        }
        series.into_iter().map(|(key, stats)| summary(key, self.start_ms, self.window_secs, &stats)).collect()
    }
}

pub fn summary(series: SeriesKey, start_ms: i64, window_secs: u32, stats: &WindowStats) -> WindowSummary {
    WindowSummary {
        series,
        start_ms,
        window_secs,
        requests: stats.requests,
        errors: stats.failures(),
        hits: stats.hits(),
        p50_ms: stats.latency_quantile(0.5),
        p95_ms: stats.latency_quantile(0.95),
        p99_ms: stats.latency_quantile(0.99),
        tokens_in: stats.tokens_in,
        tokens_out: stats.tokens_out,
        tokens_saved: stats.tokens_saved(),
    }
}

#[derive(Default)]
struct OpenWindow {
    rows: BTreeMap<RowKey, WindowStats>,
    tenants: HashMap<String, BTreeMap<RowKey, WindowStats>>,
}

pub struct WindowKeeper {
    window_secs: u32,
    window_ms: i64,
    grace_ms: i64,
    top_tenants: usize,
    open: BTreeMap<i64, OpenWindow>,
    /// Windows starting before this are closed.
    closed_until_ms: i64,
}

/// What `add` did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    OnTime,
    /// Its window had closed: counted in the oldest open one.
    Late,
}

fn window_start(ms: i64, window_ms: i64) -> i64 {
    ms.div_euclid(window_ms) * window_ms
}

/// The first window start that is not closed at `now_ms`: a window [s, s + w) closes once
/// `now_ms >= s + w + grace`.
fn closed_until(now_ms: i64, grace_ms: i64, window_ms: i64) -> i64 {
    window_start(now_ms.saturating_sub(grace_ms).saturating_sub(window_ms), window_ms) + window_ms
}

impl WindowKeeper {
    /// With the default window width (`WINDOW_SECS`).
    pub fn new(grace_ms: u64, top_tenants: u32, now_ms: i64) -> WindowKeeper {
        WindowKeeper::with_window(WINDOW_SECS, grace_ms, top_tenants, now_ms)
    }

    /// Windows `window_secs` wide (at least 1 s).
    pub fn with_window(window_secs: u32, grace_ms: u64, top_tenants: u32, now_ms: i64) -> WindowKeeper {
        let window_secs = window_secs.max(1);
        let window_ms = i64::from(window_secs) * 1000;
        let grace_ms = i64::try_from(grace_ms).unwrap_or(i64::MAX / 2);
        WindowKeeper {
            window_secs,
            window_ms,
            grace_ms,
            top_tenants: top_tenants as usize,
            open: BTreeMap::new(),
            closed_until_ms: closed_until(now_ms, grace_ms, window_ms),
        }
    }

    /// Takes back windows an earlier run wrote while they were still open (on its way out):
    /// those not yet closed here become open again, merged with whatever arrived meanwhile, so
    /// the row written when they close holds both runs' records. Returns how many it took.
    pub fn reopen(&mut self, windows: Vec<ClosedWindow>) -> usize {
        let mut taken = 0;
        let width = self.window_secs;
        for window in windows.into_iter().filter(|w| w.window_secs == width && w.start_ms >= self.closed_until_ms) {
            let open = self.open.entry(window.start_ms).or_default();
            for (key, stats) in window.rows {
                match &key.tenant {
                    Some(tenant) => {
                        open.tenants.entry(tenant.clone()).or_default().entry(key).or_default().merge(&stats)
                    }
                    None => open.rows.entry(key).or_default().merge(&stats),
                }
            }
            taken += 1;
        }
        taken
    }

    /// Windows before this have been handed out by `close`.
    pub fn closed_until_ms(&self) -> i64 {
        self.closed_until_ms
    }

    pub fn add(&mut self, record: &Record, now_ms: i64) -> Placement {
        // A clock far ahead on an Envoy must not open windows in the future.
        let start = window_start(record.start_ms.min(now_ms), self.window_ms);
        let (start, placement) = if start < self.closed_until_ms {
            (self.closed_until_ms, Placement::Late)
        } else {
            (start, Placement::OnTime)
        };
        let window = self.open.entry(start).or_default();
        let key = RowKey {
            model: record.model.clone(),
            provider: record.provider.clone(),
            cache_status: record.cache_status.clone(),
            tenant: None,
        };
        if let Some(tenant) = &record.tenant {
            if window.tenants.len() < MAX_TRACKED_TENANTS || window.tenants.contains_key(tenant) {
                let rows = window.tenants.entry(tenant.clone()).or_default();
                rows.entry(RowKey { tenant: Some(tenant.clone()), ..key.clone() }).or_default().add(record);
            }
        }
        window.rows.entry(key).or_default().add(record);
        placement
    }

    /// Closes every window that ended at least `grace_ms` before `now_ms`, oldest first, each
    /// with its totals and the rows of its busiest `top_tenants` tenants.
    pub fn close(&mut self, now_ms: i64) -> Vec<ClosedWindow> {
        let until = closed_until(now_ms, self.grace_ms, self.window_ms).max(self.closed_until_ms);
        let still_open = self.open.split_off(&until);
        let closing = std::mem::replace(&mut self.open, still_open);
        self.closed_until_ms = until;
        closing.into_iter().map(|(start_ms, window)| self.finish(start_ms, window)).collect()
    }

    fn finish(&self, start_ms: i64, window: OpenWindow) -> ClosedWindow {
        let mut rows = window.rows;
        let mut tenants: Vec<(u64, String, BTreeMap<RowKey, WindowStats>)> = window
            .tenants
            .into_iter()
            .map(|(tenant, rows)| (rows.values().map(|s| s.requests).sum(), tenant, rows))
            .collect();
        // Busiest first; ties by name so every replica picks the same tenants.
        tenants.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, _, tenant_rows) in tenants.into_iter().take(self.top_tenants) {
            rows.extend(tenant_rows);
        }
        ClosedWindow { start_ms, window_secs: self.window_secs, rows }
    }

    /// The windows still open, as they are now (the report's freshest data).
    pub fn open_windows(&self) -> Vec<ClosedWindow> {
        self.open
            .iter()
            .map(|(start, w)| {
                let copy = OpenWindow { rows: w.rows.clone(), tenants: w.tenants.clone() };
                self.finish(*start, copy)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn record(start_ms: i64, model: &str, tenant: Option<&str>) -> Record {
        Record {
            start_ms,
            model: model.into(),
            provider: "mock".into(),
            cache_status: "MISS".into(),
            tenant: tenant.map(String::from),
            latency_ms: 100.0,
            ..Record::default()
        }
    }

    #[test]
    fn a_shorter_window_closes_sooner_and_says_its_width() {
        let mut keeper = WindowKeeper::with_window(2, 1000, 0, T0);
        keeper.add(&record(T0 + 500, "a", None), T0 + 500);
        keeper.add(&record(T0 + 2500, "a", None), T0 + 2500);
        assert!(keeper.close(T0 + 2900).is_empty(), "still in its grace");
        let closed = keeper.close(T0 + 3000);
        assert_eq!((closed.len(), closed[0].start_ms, closed[0].window_secs), (1, T0, 2));
        assert_eq!(closed[0].summaries()[0].requests, 1, "the second record is in the next window");
    }

    #[test]
    fn a_window_closes_after_its_grace_and_late_records_still_count() {
        let mut keeper = WindowKeeper::new(2000, 0, T0);
        assert_eq!(keeper.add(&record(T0 + 1000, "a", None), T0 + 1000), Placement::OnTime);
        assert!(keeper.close(T0 + 11_000).is_empty(), "still in its grace");
        let closed = keeper.close(T0 + 12_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].start_ms, T0);
        assert_eq!(closed[0].summaries()[0].requests, 1);
        assert_eq!(keeper.add(&record(T0 + 2000, "a", None), T0 + 12_500), Placement::Late);
        let closed = keeper.close(T0 + 22_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].start_ms, T0 + 10_000, "counted in the oldest open window");
    }

    #[test]
    fn summaries_merge_cache_statuses_per_series() {
        let mut keeper = WindowKeeper::new(0, 0, T0);
        let mut hit = record(T0, "a", None);
        hit.cache_status = "HIT".into();
        keeper.add(&hit, T0);
        keeper.add(&record(T0, "a", None), T0);
        keeper.add(&record(T0, "b", None), T0);
        let closed = keeper.close(T0 + 10_000);
        let summaries = closed[0].summaries();
        assert_eq!(summaries.len(), 2);
        assert_eq!((summaries[0].series.model.as_str(), summaries[0].requests, summaries[0].hits), ("a", 2, 1));
        assert_eq!(summaries[0].window_secs, 10);
    }

    #[test]
    fn only_the_busiest_tenants_get_rows_and_totals_include_everyone() {
        let mut keeper = WindowKeeper::new(0, 1, T0);
        for tenant in ["small", "big", "big"] {
            keeper.add(&record(T0, "a", Some(tenant)), T0);
        }
        let closed = keeper.close(T0 + 10_000);
        let tenants: Vec<_> = closed[0].rows.keys().filter_map(|k| k.tenant.clone()).collect();
        assert_eq!(tenants, vec!["big".to_string()]);
        assert_eq!(closed[0].summaries()[0].requests, 3);
    }

    #[test]
    fn a_record_from_the_future_lands_in_the_current_window() {
        let mut keeper = WindowKeeper::new(0, 0, T0);
        keeper.add(&record(T0 + 3_600_000, "a", None), T0 + 5000);
        assert_eq!(keeper.open_windows()[0].start_ms, T0);
    }
}
