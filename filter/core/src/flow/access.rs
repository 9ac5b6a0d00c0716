//! Who may do what, decided before any cache or upstream work: the request's verified identity
//! (or a 401), the model it may call (or a 403), and the other refusals that end a request with
//! an OpenAI-style error body (413, 415, 503). A refused request is answered locally and never
//! goes on: when even the local reply fails, it stays paused (Envoy's timeout ends it) rather
//! than reach the provider unverified.
use super::host::Host;
use super::reply;
use super::request::{Request, State};
use super::stats::Counter;
use super::worker::Worker;
use crate::auth::{HostFacts, Presented, JWT_METADATA_NAMESPACE, JWT_PAYLOAD_KEY};

/// The host as `auth` reads it: claims from `jwt_authn`'s dynamic metadata, the client address.
struct Facts<'h, H>(&'h mut H);

impl<H: Host> HostFacts for Facts<'_, H> {
    fn jwt_claim(&mut self, claim: &str) -> Option<String> {
        self.0.metadata_string(&[JWT_METADATA_NAMESPACE, JWT_PAYLOAD_KEY, claim])
    }
    fn client_address(&mut self) -> Option<String> {
        self.0.client_address()
    }
}

impl Request {
    /// Establishes the identity from the request's headers and verified metadata. `true` when
    /// refused (answered 401: the caller pauses the stream).
    pub(super) fn authenticate(&mut self, w: &Worker, host: &mut impl Host) -> bool {
        let mut auth = w.auth.borrow_mut();
        let presented = Presented { headers: &self.headers, facts: &mut Facts(&mut *host) };
        match auth.authenticate(presented) {
            Ok(identity) => {
                self.identity = Some(identity);
                false
            }
            Err(error) => {
                drop(auth);
                self.refuse(w, host, 401, error.code(), error.message())
            }
        }
    }

    /// A consumer that may not call the body's model (or names none while its list is
    /// restricted) is answered 403. `true` when refused.
    pub(super) fn refuse_model(&mut self, w: &Worker, host: &mut impl Host) -> bool {
        let Some(identity) = &self.identity else { return false };
        let auth = w.auth.borrow();
        let allowed = match self.model.as_deref() {
            Some(model) => auth.allows(identity, model),
            None => identity.consumer.and_then(|i| auth.consumer(i)).is_none_or(|c| c.models.is_empty()),
        };
        if allowed {
            return false;
        }
        let message = match self.model.as_deref().and_then(crate::routing::model_header_value) {
            Some(model) => format!("You are not allowed to use the model `{model}`."),
            None => "You are not allowed to call this API without a model you may use.".to_string(),
        };
        drop(auth);
        self.refuse(w, host, 403, reply::MODEL_NOT_ALLOWED, &message)
    }

    /// Ends the request with an OpenAI-style error. Always `true` (the caller pauses).
    pub(super) fn refuse(
        &mut self,
        w: &Worker,
        host: &mut impl Host,
        status: u16,
        code: &'static str,
        message: &str,
    ) -> bool {
        w.count(Counter::Refused(code), 1);
        self.state = State::Refused;
        self.outcome.refusal = Some(code);
        if !host.send_reply(&reply::error(status, code, message)) {
            w.count(Counter::Error("local_reply"), 1);
        }
        true
    }
}
