//! Which build of the filter a stack or fleet runs: the proxy-wasm module (default) or the
//! native dynamic module. Chosen per stack (`StackOptions::filter_host`,
//! `FleetOptions::filter_host`), by default from `AURELIS_FILTER` (`wasm` or `native`), so the
//! same end-to-end suites run against either host without copies:
//!
//!   AURELIS_FILTER=native cargo test -p aurelis-e2e --test cache_l1
//!
//! The filter's stats keep their names under either host except the prefix Envoy gives them
//! (`wasmcustom.` or `dynamicmodulescustom.`); tests name them the Wasm way and the stat
//! helpers read the running host's name (`stat_name`).
use crate::paths;
use anyhow::{bail, Result};
pub use aurelis_control_plane::model::FilterHost;
use std::borrow::Cow;

pub const FILTER_ENV: &str = "AURELIS_FILTER";
/// Where Envoy looks for `lib<name>.so`.
pub const SEARCH_PATH_ENV: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";

const WASM_PREFIX: &str = "wasmcustom.";
const NATIVE_PREFIX: &str = "dynamicmodulescustom.";

/// `AURELIS_FILTER`: unset or `wasm` is the Wasm module, `native` the dynamic module.
pub fn from_env() -> Result<FilterHost> {
    match std::env::var(FILTER_ENV).as_deref() {
        Err(_) | Ok("") | Ok("wasm") => Ok(FilterHost::Wasm),
        Ok("native") => Ok(FilterHost::Native),
        Ok(other) => bail!("{FILTER_ENV}={other}: expected `wasm` or `native`"),
    }
}

/// A filter stat's name under `host`, given its Wasm name (`wasmcustom.aurelis_*`).
pub fn stat_name(host: FilterHost, name: &str) -> Cow<'_, str> {
    match (host, name.strip_prefix(WASM_PREFIX)) {
        (FilterHost::Native, Some(rest)) => Cow::Owned(format!("{NATIVE_PREFIX}{rest}")),
        _ => Cow::Borrowed(name),
    }
}

/// Whether `name` (already in the host's spelling) is one of the filter's own stats, which it
/// counts in memory and flushes on its timer.
pub fn is_filter_stat(name: &str) -> bool {
    name.starts_with("wasmcustom.aurelis_") || name.starts_with("dynamicmodulescustom.aurelis_")
}

/// The environment an Envoy needs for `host`: the native module's directory.
pub fn envoy_env(host: FilterHost) -> Result<Vec<(String, String)>> {
    Ok(match host {
        FilterHost::Wasm => Vec::new(),
        FilterHost::Native => vec![(SEARCH_PATH_ENV.to_string(), paths::native_module_dir()?.display().to_string())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_follow_the_host() {
        let name = "wasmcustom.aurelis_cache_hits_total.level.L1";
        assert_eq!(stat_name(FilterHost::Wasm, name), name);
        assert_eq!(stat_name(FilterHost::Native, name), "dynamicmodulescustom.aurelis_cache_hits_total.level.L1");
        assert_eq!(stat_name(FilterHost::Native, "cluster.mock.upstream_rq_total"), "cluster.mock.upstream_rq_total");
    }
}
