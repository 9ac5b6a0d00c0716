//! Headless Chromium for page tests (Debian's `chromium`, installed by `scripts/bootstrap.sh`):
//! the rendered DOM of a page after its scripts ran, and a screenshot. Started with the flags
//! that keep it off the network at start-up, a throw-away profile, and a virtual-time budget:
//! Chromium runs the page's timers and fetches until the budget is spent (time stands still
//! while a fetch is in flight), then prints or shoots, so no test sleeps for it.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Virtual milliseconds the page gets to load and render its first data.
pub const DEFAULT_BUDGET_MS: u32 = 8000;

/// `AURELIS_CHROMIUM`, or the Debian package's binary.
pub fn chromium() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("AURELIS_CHROMIUM") {
        let path = PathBuf::from(path);
        eprintln!("[aurelis] AURELIS_CHROMIUM override: {}", path.display());
        return Ok(path);
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!("chromium not found: run scripts/bootstrap.sh (it installs Debian's `chromium`)")
}

fn headless(profile: &Path, budget_ms: u32) -> Result<Command> {
    let mut cmd = Command::new(chromium()?);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--virtual-time-budget={budget_ms}"));
    Ok(cmd)
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting chromium for {what}"))?;
    if !out.status.success() {
        bail!("chromium {what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The page's DOM (serialized HTML) after `budget_ms` of virtual time.
pub fn dump_dom(url: &str, budget_ms: u32) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let mut cmd = headless(profile.path(), budget_ms)?;
    cmd.arg("--dump-dom").arg(url);
    run(cmd, "--dump-dom")
}

/// A PNG of the page (`width` × `height` CSS pixels) after `budget_ms` of virtual time.
pub fn screenshot(url: &str, out: &Path, width: u32, height: u32, budget_ms: u32) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let profile = tempfile::tempdir()?;
    let mut cmd = headless(profile.path(), budget_ms)?;
    cmd.arg(format!("--screenshot={}", out.display())).arg(format!("--window-size={width},{height}")).arg(url);
    run(cmd, "--screenshot")?;
    if !out.exists() {
        bail!("chromium wrote no screenshot at {}", out.display());
    }
    Ok(())
}

/// Where end-to-end tests put what a person may want to look at afterwards.
pub fn artifacts_dir() -> PathBuf {
    crate::paths::repo_root().join("target/e2e-artifacts")
}
