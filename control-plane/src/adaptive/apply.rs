//! Where each tunable lives in what the control plane pushes, read and written the way an
//! operator's change is: filter settings through the filter's own validation (pushed over
//! ECDS), provider limits in the model (pushed over CDS).
use super::{CurrentSettings, Tunable};
use crate::state::Desired;

pub fn current_settings(desired: &Desired) -> CurrentSettings {
    let first = desired.model.providers.first().map(|p| p.limits.clone()).unwrap_or_default();
    CurrentSettings {
        cache_ttl_s: desired.filter.cache.ttl_seconds as f64,
        l1_max_entries: f64::from(desired.filter.cache.max_entries),
        l2_timeout_ms: desired.filter.l2.timeout_ms as f64,
        coalescing_timeout_ms: desired.filter.cache.coalesce_timeout_ms as f64,
        max_pending_requests: f64::from(first.max_pending_requests),
        retry_budget_percent: f64::from(first.retry_budget_percent),
    }
}

/// Sets one tunable to `value` (rounded), validated as an admin change would be. On error
/// nothing is changed.
pub fn set(desired: &mut Desired, setting: Tunable, value: f64) -> Result<(), String> {
    let whole = value.round().max(0.0);
    let mut filter = desired.filter.clone();
    let mut providers = desired.model.providers.clone();
    match setting {
        Tunable::CacheTtlSeconds => filter.cache.ttl_seconds = whole as u64,
        Tunable::L1MaxEntries => filter.cache.max_entries = whole.min(f64::from(u32::MAX)) as u32,
        Tunable::L1MaxBytes => filter.cache.max_bytes = whole as u64,
        Tunable::L2TimeoutMs => filter.l2.timeout_ms = whole as u64,
        Tunable::CoalescingTimeoutMs => filter.cache.coalesce_timeout_ms = whole as u64,
        Tunable::MaxPendingRequests => {
            providers.iter_mut().for_each(|p| p.limits.max_pending_requests = whole.min(f64::from(u32::MAX)) as u32)
        }
        Tunable::RetryBudgetPercent => {
            providers.iter_mut().for_each(|p| p.limits.retry_budget_percent = whole.min(100.0) as u32)
        }
    }
    // The filter's own parser and validator: what passes here, the filter accepts.
    let bytes = serde_json::to_vec(&filter).map_err(|e| e.to_string())?;
    let filter = aurelis_core::config::FilterConfig::from_json(&bytes).map_err(|e| e.to_string())?;
    let filter_json = serde_json::to_value(&filter).map_err(|e| e.to_string())?;
    let mut model = desired.model.clone();
    model.providers = providers;
    model.filter = filter_json;
    model.validate().map_err(|e| e.to_string())?;
    model.check_filter(&filter).map_err(|e| e.to_string())?;
    desired.model = model;
    desired.filter = filter;
    Ok(())
}
