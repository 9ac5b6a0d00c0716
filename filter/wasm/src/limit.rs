//! Rate limiting glue: who the request is, and the admission ticket it carries until its
//! answer is settled. The decisions themselves are in `aurelis_core::limits`.
use crate::host::Headers;
use aurelis_core::config::FilterConfig;
use aurelis_core::key::{self, TenantScope};
use aurelis_core::limits::{Decision, IdentitySource, Limits};
use proxy_wasm::hostcalls;
use sha2::{Digest, Sha256};

/// An admitted request's reservation, settled when its answer ends.
pub struct Ticket {
    pub identity: u64,
    pub limits: Limits,
    pub reserved: u64,
    pub decision: Decision,
    pub settled: bool,
}

/// The identity's label (used by overrides; never a raw API key) and its 64-bit table hash.
pub fn identity(config: &FilterConfig, headers: &Headers, model: Option<&str>) -> (String, u64) {
    let r = &config.rate_limit;
    let label = match r.identity {
        IdentitySource::Bearer => {
            // The same domain-separated hash the cache uses for tenants: keys never appear.
            let scope = key::tenant_scope(&Default::default(), |name| headers.get(name).map(str::to_string));
            match scope {
                TenantScope::Tenant(hex) => format!("key:{hex}"),
                _ => "anonymous".to_string(),
            }
        }
        IdentitySource::Header => {
            r.identity_header.as_deref().and_then(|h| headers.get(h)).unwrap_or("anonymous").to_string()
        }
        IdentitySource::ClientAddress => client_address().unwrap_or_else(|| "unknown".to_string()),
        IdentitySource::Route => "route".to_string(),
    };
    let mut hasher = Sha256::new();
    hasher.update(b"aurelis-ratelimit\0");
    hasher.update(label.as_bytes());
    if r.per_model {
        hasher.update(b"\0");
        hasher.update(model.unwrap_or("").as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    (label, u64::from_le_bytes(first))
}

/// The downstream address without its port.
fn client_address() -> Option<String> {
    let bytes = hostcalls::get_property(vec!["source", "address"]).ok().flatten()?;
    let address = String::from_utf8(bytes).ok()?;
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
        _ => address,
    };
    Some(host.trim_start_matches('[').trim_end_matches(']').to_string())
}
