//! Per-worker memo of tenant scopes: hashing an identity (SHA-256) costs more than the rest of
//! a hit's key work, and the same few credentials come back on every request. Bounded; a full
//! memo is emptied (the hot identities come back within a few requests). Holds tenant names and
//! client addresses; never printed (`TenantIdentity`'s `Debug` hides values).
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
        if identity.text_len() > MAX_IDENTITY_BYTES {
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

/// Per-worker memo of request contexts (`key::request_context`): the same few paths, query
/// strings and header values come back on every request. Bounded like `ScopeMemo`.
#[derive(Default)]
pub struct ContextMemo {
    contexts: HashMap<String, String>,
}

impl ContextMemo {
    pub fn context(&mut self, input: String) -> String {
        if input.len() > MAX_IDENTITY_BYTES {
            return crate::key::request_context(&input);
        }
        if let Some(context) = self.contexts.get(&input) {
            return context.clone();
        }
        let context = crate::key::request_context(&input);
        if self.contexts.len() >= MAX_ENTRIES {
            self.contexts.clear();
        }
        self.contexts.insert(input, context.clone());
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_identities_are_not_kept() {
        let mut memo = ScopeMemo::default();
        let long = TenantIdentity::Tenant("k".repeat(10_000));
        assert_eq!(memo.scope(long.clone()), long.scope());
        assert!(memo.scopes.is_empty());
        memo.scope(TenantIdentity::Tenant("team-a".into()));
        assert_eq!(memo.scopes.len(), 1);
    }
}
