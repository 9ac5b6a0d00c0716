//! Per-worker memo of tenant scopes: hashing a credential (SHA-256) costs more than the rest of
//! a hit's key work, and the same few credentials come back on every request. Bounded; a full
//! memo is emptied (the hot identities come back within a few requests). Holds credentials in
//! memory like the request headers do; never printed (`TenantIdentity`'s `Debug` hides values).
use crate::key::{TenantIdentity, TenantScope};
use std::collections::HashMap;

const MAX_ENTRIES: usize = 1024;

#[derive(Default)]
pub struct ScopeMemo {
    scopes: HashMap<TenantIdentity, TenantScope>,
}

impl ScopeMemo {
    pub fn scope(&mut self, identity: TenantIdentity) -> TenantScope {
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
