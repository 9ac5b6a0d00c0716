//! Panics caught at the ABI boundary: counted here (any thread), published as
//! `aurelis_errors_total.kind.panic` by the next stats flush, and logged at critical level.
use crate::abi::{self, Level};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// The stat a caught panic counts into.
pub const STAT: &str = "aurelis_errors_total.kind.panic";

pub fn record(panic: &Box<dyn Any + Send>) {
    CAUGHT.fetch_add(1, Ordering::Relaxed);
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    abi::log(Level::Critical, &format!("aurelis: panic caught, failing open: {message}"));
}

/// Panics caught since the last call.
pub fn take() -> u64 {
    CAUGHT.swap(0, Ordering::Relaxed)
}

/// Logs every panic at critical level with its location, once per process (the default hook
/// writes to stderr, which Envoy may not keep).
pub fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| abi::log(Level::Critical, &format!("aurelis: panic: {info}"))));
    });
}
