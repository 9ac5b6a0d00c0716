//! Answers Envoy gives itself, without a filter or an upstream: OpenAI-shaped JSON errors for
//! what the gateway does not route, and the list of configured models. Static bodies: nothing
//! a client sent is echoed.
use envoy_types::pb::envoy::config::core::v3::{
    data_source::Specifier, header_value_option::HeaderAppendAction, DataSource, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{route::Action, DirectResponseAction, Route, RouteMatch};
use serde_json::json;

/// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
pub fn openai_error(message: &str, code: &str) -> String {
    json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": code } }).to_string()
}

/// OpenAI's `GET /v1/models` body for these model ids.
pub fn models_list(names: &[&str]) -> String {
    let data: Vec<_> =
        names.iter().map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "aurelis" })).collect();
    json!({ "object": "list", "data": data }).to_string()
}

/// A route Envoy answers itself with `status` and a JSON `body`.
pub fn json_route(name: &str, matcher: RouteMatch, status: u32, body: String) -> Route {
    Route {
        name: name.into(),
        r#match: Some(matcher),
        action: Some(Action::DirectResponse(DirectResponseAction {
            status,
            body: Some(DataSource { specifier: Some(Specifier::InlineString(body)), ..Default::default() }),
            ..Default::default()
        })),
        response_headers_to_add: vec![HeaderValueOption {
            header: Some(HeaderValue {
                key: "content-type".into(),
                value: "application/json".into(),
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        }],
        ..Default::default()
    }
}
