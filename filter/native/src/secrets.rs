//! The L2 secrets from Envoy's own environment (`AURELIS_L2_TOKEN`, `AURELIS_L2_SIGNING_KEY`):
//! a native module runs in Envoy's process and reads it directly (the Wasm filter needs
//! `host_env_keys` for the same). Read once per worker and configuration; never logged.
use crate::abi::{self, Level};
use aurelis_core::cache::l2::{self as core_l2, InvalidToken, L2Secrets, TOKEN_ENV};
use aurelis_core::cache::sealed::{SigningKey, SIGNING_KEY_ENV};

pub fn from_env() -> L2Secrets {
    L2Secrets { authorization: authorization(), signing_key: signing_key() }
}

/// Unset, empty or unusable: `None`, and the worker turns L2 off (counted, and said in its
/// configuration line); the log says why, without the value.
fn signing_key() -> Option<SigningKey> {
    let raw = match std::env::var(SIGNING_KEY_ENV) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            abi::log(Level::Warn, &format!("aurelis: {SIGNING_KEY_ENV} is not valid UTF-8: L2 is off"));
            return None;
        }
    };
    SigningKey::from_env_value(raw.as_deref()).unwrap_or_else(|err| {
        abi::log(Level::Warn, &format!("aurelis: {SIGNING_KEY_ENV} {err}: L2 is off"));
        None
    })
}

/// The `authorization` header for L2 calls; a value that cannot be a header is left out (the
/// service then refuses the calls and L2 fails open), and the log says so without the value.
fn authorization() -> Option<String> {
    let raw = match std::env::var(TOKEN_ENV) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(InvalidToken),
    };
    match raw.and_then(|value| core_l2::authorization(value.as_deref())) {
        Ok(header) => header,
        Err(InvalidToken) => {
            abi::log(
                Level::Warn,
                &format!("aurelis: {TOKEN_ENV} is not printable ASCII without spaces: L2 calls are sent without it"),
            );
            None
        }
    }
}
