//! Settings of the L2 refill from L3 (`l3::refill`): how often Redis is checked for lost
//! contents, and how much of L3 goes back. Only used with an L3 store.
use super::{bad, SettingsError};
use crate::l3::refill::RefillSettings;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct RefillArgs {
    /// How often to check whether Redis lost its contents (flush, restart) and refill it from
    /// L3's hottest entries; 0 turns the refill off.
    #[arg(long, env = "AURELIS_L2_REFILL_CHECK_SECONDS", default_value_t = 10, value_name = "SECONDS")]
    pub l2_refill_check_seconds: u64,
    /// At most this many entries per namespace go back into Redis.
    #[arg(long, env = "AURELIS_L2_REFILL_MAX_ENTRIES", default_value_t = 1000, value_name = "N")]
    pub l2_refill_max_entries: usize,
    /// Only entries with at least this many hits in the last 30 days go back.
    #[arg(long, env = "AURELIS_L2_REFILL_MIN_HITS", default_value_t = 10, value_name = "HITS")]
    pub l2_refill_min_hits: u64,
}

impl RefillArgs {
    pub fn validate(&self) -> Result<RefillSettings, SettingsError> {
        if self.l2_refill_check_seconds > 86_400 {
            return Err(bad(
                "--l2-refill-check-seconds / AURELIS_L2_REFILL_CHECK_SECONDS",
                format!("{} is above 86400", self.l2_refill_check_seconds),
            ));
        }
        if !(1..=100_000).contains(&self.l2_refill_max_entries) {
            return Err(bad(
                "--l2-refill-max-entries / AURELIS_L2_REFILL_MAX_ENTRIES",
                format!("{} is outside 1..=100000", self.l2_refill_max_entries),
            ));
        }
        if self.l2_refill_min_hits > 1_000_000 {
            return Err(bad(
                "--l2-refill-min-hits / AURELIS_L2_REFILL_MIN_HITS",
                format!("{} is above 1000000", self.l2_refill_min_hits),
            ));
        }
        Ok(RefillSettings {
            check_every: (self.l2_refill_check_seconds > 0).then(|| Duration::from_secs(self.l2_refill_check_seconds)),
            max_entries: self.l2_refill_max_entries,
            min_hits: self.l2_refill_min_hits,
        })
    }
}

/// For the start-up line.
pub fn describe(refill: &RefillSettings) -> String {
    match refill.check_every {
        None => "l2_refill=off".to_string(),
        Some(every) => format!(
            "l2_refill_check_seconds={} l2_refill_max_entries={} l2_refill_min_hits={}",
            every.as_secs(),
            refill.max_entries,
            refill.min_hits
        ),
    }
}
