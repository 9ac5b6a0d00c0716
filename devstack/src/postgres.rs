//! A private PostgreSQL server, started like Redis: its own data directory in a temporary
//! folder, a free port on loopback, no system service. PostgreSQL refuses to run as root, and
//! tests run as root here, so the server runs as the unprivileged `postgres` user (created by
//! Debian's package) through `setpriv`, which execs in place: the pid we hold is the server's.
//!
//! Local (socket) connections are trusted, for `createdb`; TCP connections need the password,
//! which is fresh per server, so what the store tests use is the real authenticated path.
use crate::paths;
use crate::process::{free_port, wait_until, Managed};
use crate::secrets::random_hex;
use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

/// The server's superuser (not the OS user it runs as).
const SUPERUSER: &str = "aurelis";
/// The line PostgreSQL logs once it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A fast shutdown (SIGINT) writes a checkpoint and ends every session: well under a second.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The unprivileged account a root process runs PostgreSQL as.
struct RunAs {
    uid: u32,
    gid: u32,
}

pub struct Postgres {
    dir: TempDir,
    port: u16,
    password: String,
    run_as: Option<RunAs>,
    server: Option<Managed>,
    starts: usize,
}

impl Postgres {
    /// `initdb` into a new temporary directory, then starts the server on a free port.
    pub fn start() -> Result<Postgres> {
        let dir = tempfile::Builder::new().prefix("aurelis-postgres-").tempdir()?;
        let run_as = run_as()?;
        if let Some(user) = &run_as {
            chown(dir.path(), Some(user.uid), Some(user.gid)).context("giving the data folder to postgres")?;
        }
        let password = random_hex()?;
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, &password)?;
        if let Some(user) = &run_as {
            chown(&password_file, Some(user.uid), Some(user.gid))?;
        }
        let mut initdb = as_server_user(&run_as, &paths::postgres_program("initdb")?);
        // The postgres user may not read our working directory; initdb refuses to start there.
        initdb
            .current_dir(dir.path())
            .arg("--pgdata")
            .arg(dir.path().join("data"))
            .args(["--username", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", password_file.display()));
        run(initdb, "initdb")?;
        std::fs::remove_file(&password_file)?;
        let mut postgres = Postgres { dir, port: free_port()?, password, run_as, server: None, starts: 0 };
        postgres.resume()?;
        Ok(postgres)
    }

    /// A URL for `database` with the password (give it to the program under test; never log it).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database (one per test keeps parallel tests apart).
    pub fn create_database(&self, name: &str) -> Result<()> {
        let mut createdb = Command::new(paths::postgres_program("createdb")?);
        createdb.arg("--host").arg(self.dir.path()).args([
            "--port",
            &self.port.to_string(),
            "--username",
            SUPERUSER,
            name,
        ]);
        run(createdb, "createdb")
    }

    /// Shuts the server down cleanly (fast shutdown: sessions end, data stays).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.interrupt(STOP_GRACE);
        }
    }

    /// Starts the server again on the same data directory and port.
    pub fn resume(&mut self) -> Result<()> {
        if self.server.is_some() {
            bail!("postgres is already running");
        }
        let mut cmd = as_server_user(&self.run_as, &paths::postgres_program("postgres")?);
        cmd.current_dir(self.dir.path())
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(self.dir.path())
            // A test server: durability across a machine crash is not needed, speed is. A
            // clean stop still writes everything (the restart tests rely on that).
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        let name = if self.starts == 0 { "postgres".to_string() } else { format!("postgres-{}", self.starts) };
        self.starts += 1;
        let mut server = Managed::spawn(&name, cmd, self.dir.path())?;
        wait_until("postgres ready", READY_TIMEOUT, || {
            server.check_alive()?;
            Ok(server.log().contains(READY_LINE))
        })?;
        self.server = Some(server);
        Ok(())
    }

    /// The current server's log.
    pub fn log(&self) -> String {
        self.server.as_ref().map(Managed::log).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGKILL would leave the server's children holding shared memory; stop it properly.
        self.stop();
    }
}

/// `postgres` when we are root (PostgreSQL refuses root), nobody otherwise.
fn run_as() -> Result<Option<RunAs>> {
    let me = Command::new("id").arg("-u").output().context("running id -u")?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return Ok(None);
    }
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!("no `postgres` user to run PostgreSQL as (run scripts/bootstrap.sh: postgresql-15 creates it)");
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| anyhow!("id {flag} postgres: {e}"))
    };
    Ok(Some(RunAs { uid: id("-u")?, gid: id("-g")? }))
}

fn as_server_user(run_as: &Option<RunAs>, program: &Path) -> Command {
    match run_as {
        Some(user) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .arg("--init-groups")
                .arg("--")
                .arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
