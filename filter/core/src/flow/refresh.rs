//! Refresh replays in the request flow (the boundary is described in `crate::refresh`).
//!
//! A request carrying a grant never falls back to the client's credentials: its identity is
//! the grant's or it is refused. In the header phase the grant is only parsed and dated (its
//! MACs need the key, which needs the body); nothing runs on the grant's identity before the
//! body phase has checked both MACs against the key recomputed from the replayed body under
//! the grant's tenant: a request whose grant is not verified is refused before any limit,
//! lookup or upstream work. A verified replay skips the lookup (it exists to replace the
//! entry), joins no flight, is charged to the tenant's refresh budget and to the consumer's
//! own rate limits, and stores its answer like any miss.
//!
//! Ordinary requests of opted-in tenants keep their body until the answer is stored, and then
//! queue a refresh record (`crate::refresh::record`) next to the L2 store.
use super::host::Host;
use super::lookup::parse;
use super::request::{Action, Request};
use super::stats::Counter;
use super::worker::Worker;
use crate::auth::{Identity, IdentityKind};
use crate::cache::{self, Entry};
use crate::gate;
use crate::key::{CacheKey, TenantIdentity};
use crate::limits;
use crate::refresh::{self, ledger, record, Grant, GrantError, Record, GRANT_HEADER};
use crate::replay::ReplyShape;

pub const BUDGET_EXHAUSTED: &str = "refresh_budget_exhausted";
pub const UNAVAILABLE: &str = "refresh_unavailable";

/// A replay whose grant parsed and is in date (verified in the body phase), and what it has
/// reserved from its tenant's refresh budget.
#[derive(Debug, Clone)]
pub(super) struct Replay {
    grant: Grant,
    reserved: u64,
}

/// What a refresh record needs from an opted-in tenant's request, kept until its answer is
/// stored.
#[derive(Debug, Clone)]
pub(super) struct RecordSource {
    kind: IdentityKind,
    label: String,
    tenant: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The header phase's verdict on a request's grant.
pub(super) enum GrantCheck {
    /// No grant: the request authenticates as usual.
    Absent,
    /// Parsed, in date, for an opted-in tenant: the identity is the grant's (to be verified).
    Accepted,
    /// Answered with an error.
    Refused,
}

impl Request {
    /// Header phase. The grant header is removed from every request, whatever it holds.
    pub(super) fn check_grant(&mut self, w: &Worker, host: &mut impl Host) -> GrantCheck {
        let Some(value) = self.headers.get(GRANT_HEADER).map(str::to_string) else { return GrantCheck::Absent };
        host.set_request_header(GRANT_HEADER, None);
        match self.accept_grant(w, host, &value) {
            Ok(()) => GrantCheck::Accepted,
            Err(error) => {
                self.refuse_grant(w, host, error);
                GrantCheck::Refused
            }
        }
    }

    fn accept_grant(&mut self, w: &Worker, host: &mut impl Host, value: &str) -> Result<(), GrantError> {
        let enabled = !w.config.refresh.is_off() && w.config.l2.enabled && w.l2_secrets.refresh.is_some();
        if !enabled {
            return Err(GrantError::NotEnabled);
        }
        let grant = Grant::parse(value)?;
        grant.check_time(host.now_ms())?;
        if w.config.refresh.tenant(&grant.tenant).is_none() {
            return Err(GrantError::NotEnabled);
        }
        let auth = w.auth.borrow();
        let consumer = auth.consumer_named(&grant.label);
        // An API-key consumer must still exist, in the same tenant as when it was recorded.
        let same_tenant = consumer.and_then(|i| auth.consumer(i)).is_some_and(|c| c.tenant() == grant.tenant);
        if grant.kind == IdentityKind::ApiKey && !same_tenant {
            return Err(GrantError::NotEnabled);
        }
        drop(auth);
        self.identity = Some(Identity {
            label: grant.label.clone(),
            tenant: TenantIdentity::Tenant(grant.tenant.clone()),
            consumer,
            kind: grant.kind,
        });
        self.replay = Some(Replay { grant, reserved: 0 });
        Ok(())
    }

    /// Refuses a replay, counted by reason (`aurelis_refused_total`). Always `true`.
    pub(super) fn refuse_grant(&mut self, w: &Worker, host: &mut impl Host, error: GrantError) -> bool {
        // Nothing of a refused grant may act for anyone.
        self.identity = None;
        self.replay = None;
        self.refuse(w, host, error.status(), error.code(), error.message())
    }

    /// Whether this request is a replay (its identity is the grant's, not yet verified).
    pub(super) fn is_replay(&self) -> bool {
        self.replay.is_some()
    }

    /// Header phase, once the request's shape is known: a replay must be a cacheable model
    /// call with a body, or it is refused before anything else happens.
    pub(super) fn refuse_unusable_replay(&mut self, w: &Worker, host: &mut impl Host, usable: bool) -> bool {
        self.is_replay() && !usable && self.refuse_grant(w, host, GrantError::Unusable)
    }

    /// Body phase of a replay: verify, spend the nonce, reserve the budget, then go upstream.
    pub(super) fn on_replay_body(&mut self, w: &Worker, host: &mut impl Host, body: &[u8]) -> Action {
        let config = &w.config;
        let now = host.now_ms();
        self.started_ms = now;
        let Some(grant) = self.replay.as_ref().map(|r| r.grant.clone()) else { return Action::Pause };
        if self.head_bypass.is_some() || body.len() as u64 > config.cache.max_body_bytes {
            self.refuse_grant(w, host, GrantError::Unusable);
            return Action::Pause;
        }
        let Ok(parsed) = parse(w, body) else {
            self.refuse_grant(w, host, GrantError::Unusable);
            return Action::Pause;
        };
        let facts = &parsed.canonical.facts;
        let path = self.headers.get(":path").unwrap_or_default();
        if gate::check_request_facts(facts, &config.cache, gate::is_deterministic_endpoint(path)).is_err() {
            self.refuse_grant(w, host, GrantError::Unusable);
            return Action::Pause;
        }
        self.model = facts.model.clone();
        self.shape = ReplyShape::of(facts);
        let reserve = limits::estimate_prompt_tokens(body.len())
            + facts.max_tokens.unwrap_or(config.rate_limit.default_max_tokens);
        let identity = TenantIdentity::Tenant(grant.tenant.clone());
        let (tenant, key) = self.key_for(w, identity, &parsed);
        if let Err(error) = verify(w, &grant, &key) {
            self.refuse_grant(w, host, error);
            return Action::Pause;
        }
        match ledger::spend_nonce(host.store(), &grant.nonce, grant.expires_at_ms, now) {
            Ok(()) => {}
            Err(ledger::LedgerError::Replayed) => {
                self.refuse_grant(w, host, GrantError::Replayed);
                return Action::Pause;
            }
            Err(ledger::LedgerError::Unavailable) => {
                self.refuse(w, host, 503, UNAVAILABLE, "Refresh-ahead is unavailable; try again later.");
                return Action::Pause;
            }
        }
        if self.refuse_model(w, host) {
            return Action::Pause;
        }
        let limit = config.refresh.tenant(&grant.tenant).map(|t| t.tokens_per_hour);
        let delta = i64::try_from(reserve).unwrap_or(i64::MAX);
        match ledger::add_spend(host.store(), &grant.tenant, delta, limit, now) {
            Ok(true) => {}
            Ok(false) => {
                let message = "The tenant's refresh budget for this hour is spent.";
                self.refuse(w, host, 429, BUDGET_EXHAUSTED, message);
                return Action::Pause;
            }
            Err(_) => {
                self.refuse(w, host, 503, UNAVAILABLE, "Refresh-ahead is unavailable; try again later.");
                return Action::Pause;
            }
        }
        if self.admit(w, host, reserve) {
            // Refused by the consumer's own limits: the refresh budget gets its reservation back.
            let _ = ledger::add_spend(host.store(), &grant.tenant, -delta, None, now);
            return Action::Pause;
        }
        if let Some(replay) = self.replay.as_mut() {
            replay.reserved = reserve;
        }
        self.tenant_scope = Some(tenant.key_part());
        self.keep_record_source(w, body);
        w.count(Counter::Refresh("admitted"), 1);
        self.go_upstream(w, host, key, false)
    }

    /// Ordinary requests: keeps what a refresh record needs, for opted-in tenants only.
    pub(super) fn keep_record_source(&mut self, w: &Worker, body: &[u8]) {
        let Some(identity) = &self.identity else { return };
        let TenantIdentity::Tenant(tenant) = &identity.tenant else { return };
        let recordable = matches!(identity.kind, IdentityKind::ApiKey | IdentityKind::Jwt)
            && w.config.refresh.tenant(tenant).is_some()
            && w.config.l2.enabled
            && w.l2_secrets.refresh.is_some();
        if !recordable {
            return;
        }
        let h = &self.headers;
        let mut headers: Vec<(String, String)> = w
            .config
            .cache
            .key_headers
            .iter()
            .filter_map(|name| h.get(name).map(|v| (name.clone(), v.to_string())))
            .collect();
        if let Some(content_type) = h.get("content-type") {
            headers.push(("content-type".into(), content_type.to_string()));
        }
        self.record_source = Some(RecordSource {
            kind: identity.kind,
            label: identity.label.clone(),
            tenant: tenant.clone(),
            path: h.get(":path").unwrap_or_default().to_string(),
            headers,
            body: body.to_vec(),
        });
    }

    /// The answer ended: a replay settles its refresh budget to what the answer cost; a stored
    /// answer of an opted-in tenant queues its refresh record.
    pub(super) fn after_refreshable_fill(
        &mut self,
        w: &Worker,
        host: &mut impl Host,
        key: &CacheKey,
        stored: Option<&Entry>,
    ) {
        let now = host.now_ms();
        if let Some(replay) = self.replay.take().filter(|r| r.reserved > 0) {
            let spent = stored.map_or(replay.reserved, |e| u64::from(e.prompt_tokens) + u64::from(e.completion_tokens));
            let delta = i64::try_from(spent).unwrap_or(i64::MAX) - i64::try_from(replay.reserved).unwrap_or(i64::MAX);
            if ledger::add_spend(host.store(), &replay.grant.tenant, delta, None, now).is_err() {
                w.count(Counter::Error("refresh_budget"), 1);
            }
            w.count(Counter::RefreshTokens, spent);
        }
        let (Some(source), Some(_)) = (self.record_source.take(), stored) else { return };
        let Some(signing_key) = w.l2_secrets.signing_key.as_ref() else { return };
        let namespace = &w.config.l2.namespace;
        let seal = record::seal(signing_key, namespace, &key.text, source.kind, &source.label, &source.tenant);
        let record = Record {
            seal,
            kind: source.kind,
            label: source.label,
            tenant: source.tenant,
            path: source.path,
            headers: source.headers,
            body: source.body,
        };
        let callout = cache::l2::record_callout(
            &w.config.l2,
            &w.l2_secrets,
            &key.text,
            record.encode(),
            self.tenant_scope.as_deref(),
            self.model.as_deref(),
        );
        w.queue_record(host, callout);
    }
}

/// Both MACs against the key this filter computed: the grant (refresh secret) and the record
/// seal it carries (the fleet's L2 signing key).
fn verify(w: &Worker, grant: &Grant, key: &CacheKey) -> Result<(), GrantError> {
    let namespace = &w.config.l2.namespace;
    let (Some(secret), Some(signing_key)) = (&w.l2_secrets.refresh, &w.l2_secrets.signing_key) else {
        return Err(GrantError::NotEnabled);
    };
    grant.verify(secret, namespace, &key.text)?;
    let sealed_here = refresh::record::seal_checks(
        signing_key,
        namespace,
        &key.text,
        grant.kind,
        &grant.label,
        &grant.tenant,
        &grant.record_seal,
    );
    sealed_here.then_some(()).ok_or(GrantError::Forged)
}
