//! Envoy's `jwt_authn` filter from the model's `jwt` section. It verifies a bearer JWT
//! (signature with the JWKS, issuer, audiences, expiry) and writes the verified claims to
//! dynamic metadata under the key the Aurelis filter reads (`aurelis_core::auth`). Requests
//! without a token, or with one that fails, continue: API-key clients send their key in the
//! same `authorization` header, and the Aurelis filter refuses whatever it cannot authenticate.
use super::proto::any;
use crate::model::FilterHost;
use crate::model::JwtSpec;
use aurelis_core::auth::{jwt_claim_header, JwtIdentity, JWT_PAYLOAD_KEY};
use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
use envoy_types::pb::envoy::config::route::v3::{route_match::PathSpecifier, RouteMatch};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType, requirement_rule::RequirementType,
    JwtAuthentication, JwtClaimToHeader, JwtProvider, JwtRequirement, JwtRequirementOrList, RequirementRule,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::google::protobuf::Empty;
use std::collections::HashMap;

/// The filter's name in the listener: Envoy's canonical one, which is also the metadata
/// namespace the filter writes and the Aurelis filter reads.
pub const JWT_FILTER_NAME: &str = aurelis_core::auth::JWT_METADATA_NAMESPACE;
/// The one provider's name in the filter config.
const PROVIDER: &str = "aurelis";

/// `claim_headers`: claims also copied into request headers (`aurelis_core::auth::jwt_claim_header`),
/// for the native filter, which cannot read the payload struct in metadata; empty for Wasm.
pub fn jwt_authn_filter(spec: &JwtSpec, claim_headers: &[String]) -> HttpFilter {
    let jwks = match (&spec.jwks, &spec.jwks_file) {
        (Some(inline), _) => Specifier::InlineString(inline.clone()),
        (None, Some(file)) => Specifier::Filename(file.clone()),
        // Validation requires one of them; an empty key set verifies nothing.
        (None, None) => Specifier::InlineString(r#"{"keys":[]}"#.into()),
    };
    let provider = JwtProvider {
        issuer: spec.issuer.clone(),
        audiences: spec.audiences.clone(),
        // A token without `exp` would be valid forever.
        require_expiration: true,
        // The token is removed after verification: it is the client's credential to us, not to
        // the provider.
        forward: false,
        payload_in_metadata: JWT_PAYLOAD_KEY.into(),
        claim_to_headers: claim_headers
            .iter()
            .map(|claim| JwtClaimToHeader {
                header_name: jwt_claim_header(claim),
                claim_name: claim.clone(),
                ..Default::default()
            })
            .collect(),
        clock_skew_seconds: spec.clock_skew_seconds,
        jwks_source_specifier: Some(JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(jwks),
            ..Default::default()
        })),
        ..Default::default()
    };
    // Verify with the provider when a token is there; let everything else through to the
    // Aurelis filter (an `allow_missing_or_failed` alternative).
    let requirement = JwtRequirement {
        requires_type: Some(RequiresType::RequiresAny(JwtRequirementOrList {
            requirements: vec![
                JwtRequirement { requires_type: Some(RequiresType::ProviderName(PROVIDER.into())) },
                JwtRequirement { requires_type: Some(RequiresType::AllowMissingOrFailed(Empty {})) },
            ],
        })),
    };
    let config = JwtAuthentication {
        // One entry: a map with more would encode in varying order and change the content hash.
        providers: HashMap::from([(PROVIDER.to_string(), provider)]),
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch { path_specifier: Some(PathSpecifier::Prefix("/".into())), ..Default::default() }),
            requirement_type: Some(RequirementType::Requires(requirement)),
        }],
        ..Default::default()
    };
    HttpFilter {
        name: JWT_FILTER_NAME.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(&config))),
        ..Default::default()
    }
}

/// The claims the filter reads from a verified JWT (consumer, tenant), when the listener runs the
/// native filter; none for the Wasm filter (it reads them from the payload in metadata).
pub fn native_claim_headers(host: FilterHost, identity: Option<&JwtIdentity>) -> Vec<String> {
    match (host, identity) {
        (FilterHost::Native, Some(identity)) => {
            let mut claims = vec![identity.consumer_claim.clone()];
            claims.extend(identity.tenant_claim.iter().filter(|t| **t != identity.consumer_claim).cloned());
            claims
        }
        _ => Vec::new(),
    }
}
