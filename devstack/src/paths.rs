//! Where the binaries and the filter module are, for the devstack's own binaries (`aurelis-run`,
//! `aurelis-bench`) and for the end-to-end tests alike. Overrides come from the environment and
//! are printed, so a test never silently runs against something else.
use anyhow::{bail, Result};
use std::path::PathBuf;

/// The repository's root (this crate is `devstack/` in it).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
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
        bail!(
            "{} not found (set {var}, or run `make build`: it installs Envoy and builds the module and the binaries)",
            path.display()
        );
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

/// The directory holding the native filter (`libaurelis_native.so`, built by `make build`), or
/// `AURELIS_NATIVE_DIR`. Envoy gets it as `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub fn native_module_dir() -> Result<PathBuf> {
    let dir = from_env_or("AURELIS_NATIVE_DIR", repo_root().join("target/release"))?;
    let module = dir.join("libaurelis_native.so");
    if !module.exists() {
        bail!("{} not found (run `make build`: it builds the native filter too)", module.display());
    }
    Ok(dir)
}

/// The directory holding the null native module (`devstack/null-native`, built and copied
/// there as `libaurelis_native.so` by `make bench`), or `AURELIS_NULL_NATIVE_DIR`.
pub fn null_native_dir() -> Result<PathBuf> {
    let dir = from_env_or("AURELIS_NULL_NATIVE_DIR", repo_root().join("target/null-native"))?;
    if !dir.join("libaurelis_native.so").exists() {
        bail!("{} has no libaurelis_native.so (run `make bench`: it builds the null module)", dir.display());
    }
    Ok(dir)
}

/// The directory cargo puts the workspace's binaries in for the running profile: the running
/// executable's own (`target/<profile>/aurelis-bench`) or its parent for a test binary
/// (`target/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// A workspace binary next to the running one (build it first: `make build`), or `var`.
fn workspace_binary(name: &str, var: &str) -> Result<PathBuf> {
    from_env_or(var, profile_dir()?.join(name))
}

/// The null proxy-wasm filter (`devstack/null-filter`, built by `make bench`), or
/// `AURELIS_NULL_WASM`.
pub fn null_filter() -> Result<PathBuf> {
    from_env_or("AURELIS_NULL_WASM", repo_root().join("target/aurelis_null_filter.wasm"))
}

/// The filter built with `count-host-calls` (by `make bench`), or `AURELIS_COUNTING_WASM`.
pub fn counting_filter() -> Result<PathBuf> {
    from_env_or("AURELIS_COUNTING_WASM", repo_root().join("target/aurelis_filter_counting.wasm"))
}

/// The control plane binary, or `AURELIS_CONTROL_PLANE`.
pub fn control_plane() -> Result<PathBuf> {
    workspace_binary("aurelis-control-plane", "AURELIS_CONTROL_PLANE")
}

/// The L2 cache service binary (`aurelis-cache`), or `AURELIS_CACHE_SERVICE`.
pub fn cache_service() -> Result<PathBuf> {
    workspace_binary("aurelis-cache", "AURELIS_CACHE_SERVICE")
}

/// The OCI image builder (`aurelis-oci`, this crate's binary; `make oci`), or `AURELIS_OCI`.
pub fn oci_builder() -> Result<PathBuf> {
    workspace_binary("aurelis-oci", "AURELIS_OCI")
}

/// The `make run` launcher (`aurelis-run`, this crate's binary), or `AURELIS_RUN`.
pub fn launcher() -> Result<PathBuf> {
    workspace_binary("aurelis-run", "AURELIS_RUN")
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

/// A PostgreSQL server program (`initdb`, `postgres`, `createdb`): Debian's `postgresql-15`
/// (installed by `scripts/bootstrap.sh`), or the directory `AURELIS_POSTGRES_BIN`.
pub fn postgres_program(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("AURELIS_POSTGRES_BIN") {
        Some(dir) => {
            eprintln!("[aurelis] AURELIS_POSTGRES_BIN override: {}", PathBuf::from(&dir).display());
            PathBuf::from(dir)
        }
        None => PathBuf::from("/usr/lib/postgresql/15/bin"),
    };
    let program = dir.join(name);
    if !program.exists() {
        bail!("{} not found: run scripts/bootstrap.sh (it installs postgresql-15)", program.display());
    }
    Ok(program)
}
