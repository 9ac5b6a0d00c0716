//! The L2 secrets from Envoy's own environment (`AURELIS_L2_TOKEN`, `AURELIS_L2_SIGNING_KEY`):
//! a native module runs in Envoy's process and reads it directly (the Wasm filter needs
//! `host_env_keys` for the same). Read once per worker and configuration; never logged.
use crate::abi::{self, Level};
use aurelis_core::cache::l2::L2Secrets;

pub fn from_env() -> L2Secrets {
    L2Secrets::from_env(|message| abi::log(Level::Warn, message))
}
