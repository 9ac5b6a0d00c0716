//! Per-worker memo of tenant scopes: hashing a credential (SHA-256) costs more than the rest of
//! a hit's key work, and the same few credentials come back on every request. Bounded; a full
//! memo is emptied (the hot identities come back within a few requests). Holds credentials in
//! memory like the request headers do; never printed (`TenantIdentity`'s `Debug` hides values).
use crate::key::{TenantIdentity, TenantScope};
use std::collections::HashMap;

const MAX_ENTRIES: usize = 1024;
/// Longer identities are hashed every time rather than kept: the memo's memory stays under
/// `MAX_ENTRIES × MAX_IDENTITY_BYTES` whatever clients send.
const MAX_IDENTITY_BYTES: usize = 256;

#[derive(Default)]
pub struct ScopeMemo {
    scopes: HashMap<TenantIdentity, TenantScope>,
}

impl ScopeMemo {
    pub fn scope(&mut self, identity: TenantIdentity) -> TenantScope {
        let long = match &identity {
            TenantIdentity::Header(value) | TenantIdentity::Credential(value) => value.len() > MAX_IDENTITY_BYTES,
            TenantIdentity::Shared | TenantIdentity::Anonymous => false,
        };
        if long {
            return identity.scope();
        }
        if let Some(scope) = self.scopes.get(&identity) {
            return scope.clone();
        }
        let scope = identity.scope();
        if self.scopes.len() >= MAX_ENTRIES {
            self.scopes.clear();
        }
        self.scopes.insert(identity, scope.clone());
        scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_identities_are_not_kept() {
        let mut memo = ScopeMemo::default();
        let long = TenantIdentity::Credential("k".repeat(10_000));
        assert_eq!(memo.scope(long.clone()), long.scope());
        assert!(memo.scopes.is_empty());
        memo.scope(TenantIdentity::Credential("sk-short".into()));
        assert_eq!(memo.scopes.len(), 1);
    }
}
