//! The Aurelis stack as real processes: the mock upstream (in-process), `redis-server`, the
//! control plane and Envoy loaded with the freshly built filter. `Stack::start` picks free
//! ports, waits for readiness, and kills everything on drop (also when a test panics, in which
//! case every process's log is printed first).
pub mod envoy_config;
pub mod fleet;
pub mod paths;
pub mod process;
pub mod stack;

pub use fleet::{Fleet, FleetOptions};
pub use stack::{Stack, StackOptions, Upstream};
