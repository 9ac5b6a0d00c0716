//! Aurelis L2 cache service: the filter's shared cache, an HTTP/2 (h2c) and HTTP/1.1 front for
//! Redis. The `store` module is also the library the control plane links to purge entries.
pub mod api;
pub mod l3;
pub mod metrics;
pub mod refresh;
pub mod settings;
pub mod store;

pub use api::ApiToken;
pub use store::{
    Fetched, Purge, PutOptions, Store, StoreError, StoreOptions, Stored, Tags, Target, TlsError, TlsOptions, TlsPart,
};
