use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{EntryStore, RollupStore, StoreError, StoreSettings};
use std::sync::Arc;

/// Both stores of one backend (they share its connection or pool).
#[derive(Clone)]
pub struct Stores {
    pub rollups: Arc<dyn RollupStore>,
    pub entries: Arc<dyn EntryStore>,
}

/// Opens the backend the settings name and makes sure its schema exists.
pub async fn open(settings: &StoreSettings) -> Result<Stores, StoreError> {
    Ok(match settings {
        StoreSettings::File(path) => {
            let store = Arc::new(SqliteStore::open(path).await?);
            Stores { rollups: store.clone(), entries: store }
        }
        StoreSettings::Postgres(pg) => {
            let store = Arc::new(PostgresStore::connect(pg).await?);
            Stores { rollups: store.clone(), entries: store }
        }
    })
}
