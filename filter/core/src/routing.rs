//! Model routing: Envoy routes on headers, but the model is in the JSON body. The filter copies
//! it into `MODEL_HEADER` once it has read the body (Envoy then re-matches the route), and
//! removes any copy a client sent, so clients cannot pick a route the body does not name.

/// The header the control plane's routes match on.
pub const MODEL_HEADER: &str = "x-aurelis-model";

/// The model as a header value, or `None` if it cannot be one (the request then takes the
/// default route): 1-128 printable ASCII characters without spaces, as the control plane
/// requires of model names.
pub fn model_header_value(model: &str) -> Option<&str> {
    let ok = !model.is_empty() && model.len() <= 128 && model.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(model)
}

/// The `model` field of a request body, without canonicalizing it (for requests the cache
/// does not read but that still need routing).
pub fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<String>,
    }
    serde_json::from_slice::<ModelOnly>(body).ok().and_then(|m| m.model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_plain() {
        assert_eq!(model_header_value("openai/gpt-4o-mini"), Some("openai/gpt-4o-mini"));
        assert_eq!(model_header_value("gpt 4"), None);
        assert_eq!(model_header_value("gpt\n4"), None);
        assert_eq!(model_header_value(""), None);
        assert_eq!(model_header_value(&"m".repeat(129)), None);
    }

    #[test]
    fn model_of_reads_only_the_model() {
        assert_eq!(model_of(br#"{"messages":[],"model":"gpt-4o"}"#).as_deref(), Some("gpt-4o"));
        assert_eq!(model_of(br#"{"messages":[]}"#), None);
        assert_eq!(model_of(b"not json"), None);
        assert_eq!(model_of(br#"{"model":5}"#), None);
    }
}
