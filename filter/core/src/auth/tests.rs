use super::*;

/// Claims by name and an address, as a host would read them.
struct Known {
    claims: Vec<(&'static str, &'static str)>,
    address: Option<&'static str>,
}

impl HostFacts for Known {
    fn jwt_claim(&mut self, claim: &str) -> Option<String> {
        self.claims.iter().find(|(k, _)| *k == claim).map(|(_, v)| v.to_string())
    }
    fn client_address(&mut self) -> Option<String> {
        self.address.map(str::to_string)
    }
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

fn consumers() -> AuthConfig {
    AuthConfig {
        consumers: vec![
            Consumer {
                name: "team-a".into(),
                tenant: Some("acme".into()),
                models: vec!["gpt-4o-mini".into()],
                limits: None,
                key_sha256: vec![key_sha256("sk-a")],
            },
            Consumer {
                name: "team-b".into(),
                tenant: None,
                models: vec![],
                limits: None,
                key_sha256: vec![key_sha256("sk-b")],
            },
        ],
        ..Default::default()
    }
}

fn authenticate(auth: &mut Authenticator, pairs: &[(&str, &str)]) -> Result<Identity, AuthError> {
    let h = headers(pairs);
    auth.authenticate(Presented { headers: &h, facts: &mut Known { claims: vec![], address: Some("10.0.0.7") } })
}

#[test]
fn every_key_form_names_the_same_consumer() {
    let mut auth = Authenticator::new(&consumers());
    for pairs in [
        &[("authorization", "Bearer sk-a")][..],
        &[("authorization", "bearer  sk-a ")],
        &[("api-key", "sk-a")],
        &[("x-api-key", "sk-a")],
        &[("x-api-key", "sk-a"), ("authorization", "Bearer sk-a")],
    ] {
        let id = authenticate(&mut auth, pairs).unwrap();
        assert_eq!(id.label, "team-a", "{pairs:?}");
        assert_eq!(id.tenant, TenantIdentity::Tenant("acme".into()));
    }
    let b = authenticate(&mut auth, &[("x-api-key", "sk-b")]).unwrap();
    assert_eq!(b.tenant, TenantIdentity::Tenant("team-b".into()), "the tenant defaults to the name");
}

#[test]
fn unknown_missing_basic_and_two_keys_are_refused() {
    let mut auth = Authenticator::new(&consumers());
    assert_eq!(authenticate(&mut auth, &[]), Err(AuthError::Missing));
    assert_eq!(authenticate(&mut auth, &[("authorization", "Bearer sk-random")]), Err(AuthError::UnknownKey));
    assert_eq!(authenticate(&mut auth, &[("authorization", "Basic dXNlcjpwYXNz")]), Err(AuthError::UnsupportedScheme));
    assert_eq!(
        authenticate(&mut auth, &[("api-key", "sk-a"), ("x-api-key", "sk-b")]),
        Err(AuthError::Ambiguous),
        "no header outranks another"
    );
    // A remembered miss stays a miss; a remembered hit stays a hit.
    assert_eq!(authenticate(&mut auth, &[("authorization", "Bearer sk-random")]), Err(AuthError::UnknownKey));
    assert!(authenticate(&mut auth, &[("api-key", "sk-a")]).is_ok());
}

#[test]
fn anonymous_access_is_explicit_and_scoped_per_client() {
    let mut config = consumers();
    let mut auth = Authenticator::new(&config);
    assert_eq!(authenticate(&mut auth, &[]), Err(AuthError::Missing));
    config.anonymous = Some(AnonymousAccess::default());
    let mut auth = Authenticator::new(&config);
    let id = authenticate(&mut auth, &[]).unwrap();
    assert_eq!((id.label.as_str(), id.kind), ("10.0.0.7", IdentityKind::Anonymous));
    assert_eq!(id.tenant, TenantIdentity::Client("10.0.0.7".into()));
    assert_eq!(
        authenticate(&mut auth, &[("x-api-key", "sk-wrong")]),
        Err(AuthError::UnknownKey),
        "a wrong key is not anonymous"
    );
    config.anonymous = Some(AnonymousAccess { shared_scope: true });
    let mut auth = Authenticator::new(&config);
    assert_eq!(authenticate(&mut auth, &[]).unwrap().tenant, TenantIdentity::Anonymous);
}

#[test]
fn a_verified_jwt_names_the_consumer_and_tenant() {
    let mut config = consumers();
    config.jwt = Some(JwtIdentity { consumer_claim: "sub".into(), tenant_claim: Some("org".into()) });
    let mut auth = Authenticator::new(&config);
    let h = headers(&[("authorization", "Bearer eyJ.not.a.key")]);
    let mut claims = Known { claims: vec![("sub", "team-a"), ("org", "initech")], address: None };
    let id = auth.authenticate(Presented { headers: &h, facts: &mut claims }).unwrap();
    assert_eq!((id.label.as_str(), id.kind, id.consumer), ("team-a", IdentityKind::Jwt, Some(0)));
    assert_eq!(id.tenant, TenantIdentity::Tenant("initech".into()));
    assert!(!auth.allows(&id, "gpt-4o"), "the declared consumer's model list applies");
    // Without verified claims the bearer is tried as an API key, and refused.
    let refused = auth.authenticate(Presented { headers: &h, facts: &mut Known { claims: vec![], address: None } });
    assert_eq!(refused, Err(AuthError::UnknownKey));
}

#[test]
fn allowed_models() {
    let mut auth = Authenticator::new(&consumers());
    let a = authenticate(&mut auth, &[("api-key", "sk-a")]).unwrap();
    assert!(auth.allows(&a, "gpt-4o-mini"));
    assert!(!auth.allows(&a, "gpt-4o"));
    let b = authenticate(&mut auth, &[("api-key", "sk-b")]).unwrap();
    assert!(auth.allows(&b, "gpt-4o"), "no list: every routed model");
}

#[test]
fn config_refuses_keys_in_clear_and_duplicates() {
    let mut config = consumers();
    config.consumers[0].key_sha256 = vec!["sk-live-0123".into()];
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("SHA-256") && !err.contains("sk-live"), "{err}");
    let mut config = consumers();
    config.consumers[1].key_sha256 = config.consumers[0].key_sha256.clone();
    assert!(config.validate().is_err());
    let mut config = consumers();
    config.consumers[1].name = "team-a".into();
    assert!(config.validate().is_err());
    assert!(consumers().validate().is_ok());
    assert!(consumers().authenticates_clients());
    assert!(!AuthConfig::default().authenticates_clients());
}
