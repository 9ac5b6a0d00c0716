//! Where the binaries and the filter module are. Overrides come from the environment and are
//! printed, so a test never silently runs against something else.
use anyhow::{bail, Result};
use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn from_env_or(var: &str, default: PathBuf) -> Result<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(v) => {
            let p = PathBuf::from(v);
            eprintln!("[aurelis] {var} override: {}", p.display());
            p
        }
        None => default,
    };
    if !path.exists() {
        bail!("{} not found (set {var} or run `make wasm` / scripts/bootstrap.sh)", path.display());
    }
    Ok(path)
}

/// The pinned Envoy from `.venv` (installed by `scripts/bootstrap.sh`), or `AURELIS_ENVOY`.
pub fn envoy() -> Result<PathBuf> {
    from_env_or("AURELIS_ENVOY", repo_root().join(".venv/bin/envoy"))
}

/// The filter module built by `make wasm`, or `AURELIS_WASM`.
pub fn wasm() -> Result<PathBuf> {
    from_env_or("AURELIS_WASM", repo_root().join("target/aurelis_filter.wasm"))
}

/// The control plane binary built next to the test binaries (`cargo build` puts them in the
/// same target profile directory), or `AURELIS_CONTROL_PLANE`.
pub fn control_plane() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    from_env_or("AURELIS_CONTROL_PLANE", dir.join("aurelis-control-plane"))
}

/// The L2 cache service binary (`aurelis-cache`), next to the test binaries like the control plane.
pub fn cache_service() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    from_env_or("AURELIS_CACHE_SERVICE", dir.join("aurelis-cache"))
}

pub fn redis_server() -> Result<PathBuf> {
    for candidate in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        let p = PathBuf::from(candidate);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("redis-server not found: run scripts/bootstrap.sh")
}
