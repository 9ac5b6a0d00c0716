//! How each backend makes an empty store for a case, and reopens it for the restart tests.
use aurelis_devstack::Postgres;
use aurelis_store::memory::MemoryStore;
use aurelis_store::{open, StoreSettings, Stores};
use std::sync::Arc;
use tempfile::TempDir;

pub enum Backend {
    Memory,
    Sqlite(TempDir),
    Postgres(Postgres),
}

impl Backend {
    pub fn memory() -> Backend {
        Backend::Memory
    }

    pub fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    pub fn postgres() -> Backend {
        Backend::Postgres(Postgres::start().expect("a private PostgreSQL server (scripts/bootstrap.sh installs it)"))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A new, empty store for `case`.
    pub async fn fresh(&self, case: &str) -> Stores {
        if let Backend::Postgres(server) = self {
            server.create_database(case).expect("createdb");
        }
        self.reopen(case).await
    }

    /// The store of `case` as it was left.
    pub async fn reopen(&self, case: &str) -> Stores {
        let location = match self {
            Backend::Memory => {
                let store = Arc::new(MemoryStore::default());
                return Stores { rollups: store.clone(), entries: store };
            }
            Backend::Sqlite(dir) => format!("sqlite:{}", dir.path().join(format!("{case}.db")).display()),
            Backend::Postgres(server) => server.url(case),
        };
        let settings = StoreSettings::parse(&location).expect("settings");
        open(&settings).await.unwrap_or_else(|e| panic!("opening {settings}: {e}"))
    }

    /// Stops and starts the PostgreSQL server (same data, same port).
    pub fn restart_server(&mut self) {
        if let Backend::Postgres(server) = self {
            server.stop();
            server.resume().expect("postgres restarts");
        }
    }
}
