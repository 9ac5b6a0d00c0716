//! A private OCI registry (Debian's `docker-registry`, Distribution 2.8) on a free loopback
//! port with its own config and storage, for the image tests; killed on drop.
use crate::process::{free_port, wait_until, Managed};
use anyhow::{anyhow, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Registry {
    pub process: Managed,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

impl Registry {
    /// Starts one in `dir` (config and storage there) and waits until `/v2/` answers.
    pub fn start(dir: &Path) -> Result<Registry> {
        let port = free_port()?;
        let storage = dir.join("registry-storage");
        std::fs::create_dir_all(&storage)?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{ level: warn }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\n  \
                 delete: {{ enabled: true }}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let mut process = Managed::spawn("docker-registry", cmd, dir)
            .map_err(|e| anyhow!("{e:#} (scripts/bootstrap.sh installs Debian's docker-registry)"))?;
        let base_url = format!("http://127.0.0.1:{port}");
        let probe = format!("{base_url}/v2/");
        wait_until("docker-registry /v2/", Duration::from_secs(30), || {
            process.check_alive()?;
            Ok(ureq::get(&probe).timeout(Duration::from_secs(2)).call().is_ok())
        })?;
        Ok(Registry { process, base_url })
    }
}
