//! One contract, every backend: the same cases run against the in-memory reference, the
//! embedded file database (a temporary file) and a real PostgreSQL server (private, started by
//! `aurelis_devstack::Postgres`). Each case gets an empty store of its own.
mod backends;
mod entries;
mod rollups;

use aurelis_store::Stores;
use backends::Backend;
use futures::future::BoxFuture;

pub type Case = (&'static str, fn(Stores) -> BoxFuture<'static, ()>);

/// `cases![a, b]` lists async fns taking `Stores` with their names.
#[macro_export]
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        vec![$((stringify!($case), (|s| Box::pin($case(s))) as fn(aurelis_store::Stores) -> futures::future::BoxFuture<'static, ()>)),*]
    };
}

async fn run_contract(backend: &Backend) {
    for (name, case) in rollups::cases().into_iter().chain(entries::cases()) {
        eprintln!("[contract] {} :: {name}", backend.name());
        let stores = backend.fresh(name).await;
        case(stores).await;
    }
}

#[tokio::test]
async fn memory_meets_the_contract() {
    run_contract(&Backend::memory()).await;
}

#[tokio::test]
async fn sqlite_meets_the_contract() {
    run_contract(&Backend::sqlite()).await;
}

#[tokio::test]
async fn postgres_meets_the_contract() {
    run_contract(&Backend::postgres()).await;
}

#[tokio::test]
async fn sqlite_keeps_everything_across_a_reopen() {
    let backend = Backend::sqlite();
    let stores = backend.fresh("restart").await;
    rollups::write_history(&stores).await;
    entries::write_and_use(&stores).await;
    drop(stores);
    let stores = backend.reopen("restart").await;
    rollups::history_is_back(&stores).await;
    entries::entries_are_back(&stores).await;
}

#[tokio::test]
async fn postgres_keeps_everything_across_a_server_restart() {
    let mut backend = Backend::postgres();
    let stores = backend.fresh("restart").await;
    rollups::write_history(&stores).await;
    entries::write_and_use(&stores).await;
    drop(stores);
    backend.restart_server();
    let stores = backend.reopen("restart").await;
    rollups::history_is_back(&stores).await;
    entries::entries_are_back(&stores).await;
}

#[tokio::test]
async fn postgres_replicas_starting_together_share_one_schema() {
    let server = aurelis_devstack::Postgres::start().expect("postgres");
    server.create_database("replicas").expect("createdb");
    let settings = aurelis_store::StoreSettings::parse(&server.url("replicas")).expect("settings");
    let (a, b, c) =
        tokio::join!(aurelis_store::open(&settings), aurelis_store::open(&settings), aurelis_store::open(&settings));
    let (a, b, _c) = (a.expect("replica a"), b.expect("replica b"), c.expect("replica c"));
    rollups::write_history(&a).await;
    rollups::history_is_back(&b).await;
}

#[tokio::test]
async fn postgres_refuses_a_wrong_password_without_showing_it() {
    let server = aurelis_devstack::Postgres::start().expect("postgres");
    let url = format!("postgres://aurelis:not-the-password-1234@127.0.0.1:{}/postgres", server.port());
    let settings = aurelis_store::StoreSettings::parse(&url).expect("settings");
    let error = aurelis_store::open(&settings).await.err().expect("a wrong password is refused");
    let shown = format!("{error} {error:?} {settings} {settings:?}");
    assert!(matches!(error, aurelis_store::StoreError::Unavailable(_)), "{shown}");
    assert!(!shown.contains("not-the-password-1234"), "{shown}");
}

#[tokio::test]
async fn the_file_database_creates_its_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state/aurelis/store.db");
    let settings = aurelis_store::StoreSettings::parse(&path.display().to_string()).expect("settings");
    let stores = aurelis_store::open(&settings).await.expect("opens with no setup");
    rollups::write_history(&stores).await;
    assert!(path.exists());
}
