//! The body phase of one request (step 2 of the flow in `http`): once the body is buffered,
//! canonicalize it, run the body gate, build the cache key, then serve from L1, wait for an
//! identical in-flight request, ask L2, or go upstream as a MISS.
use super::{route_on_model, AurelisHttp, State};
use crate::host::{self, Headers};
use crate::l2;
use crate::metrics::{self, CacheStatus};
use aurelis_core::gate::{self, BypassReason};
use aurelis_core::key;
use aurelis_core::limits;
use proxy_wasm::types::{Action, LogLevel};

impl AurelisHttp {
    /// Runs once the whole request body is buffered.
    pub(super) fn on_full_body(&mut self, body: &[u8]) -> Action {
        let config = &self.worker.config;
        let default_reserve = limits::estimate_prompt_tokens(body.len()) + config.rate_limit.default_max_tokens;
        let canonical = match key::canonicalize(body, &config.normalization) {
            Ok(c) => c,
            Err(err) => {
                if let Some(action) = self.limit(default_reserve) {
                    return action;
                }
                return self.bypass(bypass_reason_of(&err));
            }
        };
        self.model = canonical.facts.model.clone();
        route_on_model(self.model.as_deref());
        let reserve = limits::estimate_prompt_tokens(body.len())
            + canonical.facts.max_tokens.unwrap_or(config.rate_limit.default_max_tokens);
        if config.log_prompts {
            host::log(LogLevel::Debug, &format!("aurelis: request body: {}", String::from_utf8_lossy(body)));
        }
        if let Err(reason) = gate::check_request_facts(&canonical.facts, &config.cache) {
            if let Some(action) = self.limit(reserve) {
                return action;
            }
            return self.bypass(reason);
        }
        let config = &self.worker.config;
        let headers = self.request_headers.get_or_insert_with(Headers::request);
        let tenant = key::tenant_scope(&config.tenant, |name| headers.get(name).map(str::to_string));
        let cache_key = key::entry_key(&config.cache.key_prefix, &tenant, &canonical, &config.normalization);
        self.tenant_scope = Some(tenant.key_part());
        if config.debug_headers {
            let shape = key::response_shape(&canonical.facts);
            self.key_info = Some(format!("{}; shape={shape}", key::key_info(&tenant, &canonical)));
        }
        let now = host::now_ms();
        if !self.directives.skip_lookup {
            if let Some(action) = self.serve_from_l1(&cache_key, now) {
                return action;
            }
        }
        if let Some(action) = self.limit(reserve) {
            return action;
        }
        if self.directives.skip_lookup || self.worker.join(&cache_key, self.context_id, now, self.model.as_deref()) {
            let leader = !self.directives.skip_lookup;
            // The leader asks L2 before going upstream; identical requests wait on it as on a fill.
            if leader && self.worker.config.l2.enabled {
                if l2::lookup(&self.worker.config.l2, self.worker.l2_authorization.as_deref(), &cache_key).is_some() {
                    self.state = State::L2Lookup { key: cache_key, started_ms: now };
                    return Action::Pause;
                }
                self.worker.metrics.l2_lookup("error");
            }
            metrics::increment(self.worker.metrics.misses, 1);
            self.worker.metrics.request(CacheStatus::Miss, self.model.as_deref());
            self.state = State::Miss { key: cache_key, leader };
            Action::Continue
        } else {
            self.state = State::Waiting { key: cache_key };
            Action::Pause
        }
    }
}

fn bypass_reason_of(err: &key::KeyError) -> BypassReason {
    match err {
        key::KeyError::InvalidUtf8 => BypassReason::InvalidUtf8,
        key::KeyError::InvalidJson => BypassReason::InvalidJson,
        key::KeyError::TooDeep => BypassReason::TooDeep,
        key::KeyError::NotAnObject => BypassReason::NotAnObject,
        key::KeyError::MissingModel => BypassReason::MissingModel,
    }
}
