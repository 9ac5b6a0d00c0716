//! The Aurelis stack as real processes, for `make run` (`aurelis-run`), `make bench`
//! (`aurelis-bench`) and the end-to-end tests: the mock upstream (in-process), `redis-server`,
//! the cache service, the control plane and Envoy loaded with the freshly built filter.
//! `Stack::start` and `Fleet::start` pick free ports, wait for readiness, and kill everything on
//! drop (also when a test panics, in which case every process's log is printed first).
//! Every Envoy configuration they use comes from the control plane's compile step
//! (`aurelis_control_plane::xds::resources`, rendered by `aurelis_control_plane::render`).
pub mod browser;
pub mod fleet;
pub mod host;
pub mod istio;
pub mod load;
pub mod oci;
pub mod paths;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod registry;
pub mod secrets;
pub mod stack;

pub use fleet::{Fleet, FleetOptions, L3Store};
pub use host::FilterHost;
pub use postgres::Postgres;
pub use secrets::L2Credentials;
pub use stack::{Stack, StackOptions};
