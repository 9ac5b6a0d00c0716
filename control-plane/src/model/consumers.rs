//! Changes to the API-key consumers (`filter.auth.consumers`) made through the admin API. Each
//! change produces a whole new model whose `filter` section is the changed filter configuration,
//! validated like a new model file (the filter's own checks, then how auth fits the providers),
//! so what the admin API accepts is exactly what a file with the same content would be.
use super::validate::ModelError;
use super::Model;
use aurelis_core::auth::Consumer;
use aurelis_core::config::FilterConfig;
use aurelis_core::limits::Limits;

/// One change to the consumers.
#[derive(Debug, Clone)]
pub enum ConsumerChange {
    /// Adds the consumer, or replaces its tenant, models and limits; its keys are kept (keys
    /// change only through `AddKey` and `RevokeKey`).
    Upsert {
        name: String,
        tenant: Option<String>,
        models: Vec<String>,
        limits: Option<Limits>,
    },
    Remove {
        name: String,
    },
    /// A key, by its SHA-256 digest (64 lowercase hex characters).
    AddKey {
        name: String,
        key_sha256: String,
    },
    RevokeKey {
        name: String,
        key_sha256: String,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer `{0}` is not declared (filter.auth.consumers)")]
    UnknownConsumer(String),
    #[error("consumer `{0}` has no key with that digest")]
    UnknownKey(String),
    #[error("{0}")]
    Invalid(#[from] ModelError),
}

impl Model {
    /// `filter` with `change` applied, and this model carrying it; both validated.
    pub fn with_consumer_change(
        &self,
        filter: &FilterConfig,
        change: ConsumerChange,
    ) -> Result<(Model, FilterConfig), ConsumerError> {
        let mut next = filter.clone();
        let consumers = &mut next.auth.consumers;
        let find = |consumers: &mut Vec<Consumer>, name: &str| consumers.iter().position(|c| c.name == name);
        match change {
            ConsumerChange::Upsert { name, tenant, models, limits } => match find(consumers, &name) {
                Some(i) => {
                    let existing = &mut consumers[i];
                    existing.tenant = tenant;
                    existing.models = models;
                    existing.limits = limits;
                }
                None => consumers.push(Consumer { name, tenant, models, limits, key_sha256: Vec::new() }),
            },
            ConsumerChange::Remove { name } => {
                let i = find(consumers, &name).ok_or(ConsumerError::UnknownConsumer(name))?;
                consumers.remove(i);
            }
            ConsumerChange::AddKey { name, key_sha256 } => {
                let i = find(consumers, &name).ok_or_else(|| ConsumerError::UnknownConsumer(name.clone()))?;
                if !consumers[i].key_sha256.contains(&key_sha256) {
                    consumers[i].key_sha256.push(key_sha256);
                }
            }
            ConsumerChange::RevokeKey { name, key_sha256 } => {
                let i = find(consumers, &name).ok_or_else(|| ConsumerError::UnknownConsumer(name.clone()))?;
                let before = consumers[i].key_sha256.len();
                consumers[i].key_sha256.retain(|k| k != &key_sha256);
                if consumers[i].key_sha256.len() == before {
                    return Err(ConsumerError::UnknownKey(name));
                }
            }
        }
        let mut model = self.clone();
        model.filter = serde_json::to_value(&next).map_err(|e| ModelError::Syntax(e.to_string()))?;
        // The same checks as a model file: the filter's parser (names, digests, limits), then
        // the cross-checks (a gateway with provider credentials keeps authenticated clients).
        model.validate()?;
        let parsed = model.filter_config()?;
        Ok((model, parsed))
    }
}

/// A new random API key: `sk-aurelis-` and 32 bytes from the operating system's CSPRNG as hex.
/// Only its digest is stored; the key itself is shown once to whoever asked for it.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sk-aurelis-{hex}"))
}
