//! JWT clients against real Envoy: the control plane renders `jwt_authn` ahead of the filter
//! from the model's `jwt` section; a token signed with the test's own key (an RSA key pair and
//! JWKS generated here with the `openssl` CLI) reaches the provider as its consumer, and the
//! tenant claim decides the cache scope; an API key in the same header still reaches the filter.
mod common;
use aurelis_devstack::FleetOptions;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "aurelis";

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl {args:?}: {e} (install the openssl CLI)"));
    if let Some(input) = input {
        use std::io::Write;
        child.stdin.take().map(|mut s| s.write_all(input)).transpose().unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// An RSA signing key in `dir` and its public JWKS.
struct Signer {
    key: PathBuf,
    jwks: String,
}

impl Signer {
    fn new(dir: &Path, name: &str) -> Signer {
        let key = dir.join(format!("{name}.pem"));
        let key_arg = key.to_str().unwrap();
        openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key_arg], None);
        let modulus = String::from_utf8(openssl(&["rsa", "-in", key_arg, "-noout", "-modulus"], None)).unwrap();
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let jwks = json!({ "keys": [{ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": name, "n": base64url(&bytes), "e": "AQAB" }] });
        Signer { key, jwks: jwks.to_string() }
    }

    /// An RS256 JWT with these claims plus `iss`, `aud` and an `exp` ten minutes ahead.
    fn token(&self, claims: Value) -> String {
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
        let mut payload = json!({ "iss": ISSUER, "aud": AUDIENCE, "exp": exp });
        payload.as_object_mut().unwrap().extend(claims.as_object().cloned().unwrap_or_default());
        let header = json!({ "alg": "RS256", "typ": "JWT" });
        let input =
            format!("{}.{}", base64url(header.to_string().as_bytes()), base64url(payload.to_string().as_bytes()));
        let signature = openssl(&["dgst", "-sha256", "-sign", self.key.to_str().unwrap()], Some(input.as_bytes()));
        format!("{input}.{}", base64url(&signature))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_jwt_reaches_the_provider_as_its_consumer_and_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new(dir.path(), "trusted");
    let stranger = Signer::new(dir.path(), "stranger");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, &signer.jwks).unwrap();
    // The JWKS from a file on the Envoy host; the filter reads `sub` and `org` from the claims.
    // An API-key consumer too: its key travels in the same `authorization` header.
    let key = "sk-jwt-neighbour";
    let auth = json!({
        "jwt": { "consumer_claim": "sub", "tenant_claim": "org" },
        "consumers": [{ "name": "keyed", "key_sha256": [aurelis_core::auth::key_sha256(key)] }],
    });
    let model = format!(
        "listener: {{ port: {{{{listen_port}}}} }}\n\
         providers:\n  - {{ name: mock, base_url: 'http://127.0.0.1:{{{{mock0}}}}/v1', protocol: http2 }}\n\
         models:\n  - {{ name: gpt-4o-mini, providers: [{{ provider: mock, weight: 1 }}] }}\n\
         jwt: {{ issuer: '{ISSUER}', audiences: [{AUDIENCE}], jwks_file: '{}' }}\n\
         filter: {{ auth: {auth} }}\n",
        jwks_file.display()
    );
    let fleet = start_fleet(FleetOptions { model: Some(model), ..FleetOptions::default() });
    let gw = fleet.envoy().gateway_url.clone();
    let ask = |token: String| {
        let gw = gw.clone();
        async move {
            let bearer = format!("Bearer {token}");
            post_chat_to(&gw, &chat("who am I"), &[("authorization", bearer.as_str())]).await
        }
    };

    let alice = ask(signer.token(json!({ "sub": "alice", "org": "acme" }))).await;
    assert_eq!(alice.status, 200, "{}", String::from_utf8_lossy(&alice.body));
    assert_eq!(alice.cache(), "MISS");
    let seen = fleet.mocks[0].last_request().unwrap();
    assert!(
        !seen.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")),
        "the token is the client's credential to the gateway, not forwarded: {:?}",
        seen.headers
    );
    // Same tenant: one cache scope. Another tenant: its own.
    assert_eq!(ask(signer.token(json!({ "sub": "bob", "org": "acme" }))).await.cache(), "HIT");
    assert_eq!(ask(signer.token(json!({ "sub": "carol", "org": "globex" }))).await.cache(), "MISS");
    assert_eq!(fleet.mocks[0].request_count(), 2);
    // `jwt_authn` lets a key that is no JWT through to the filter, which knows it.
    let keyed = post_chat_to(&gw, &chat("who am I"), &[("authorization", &format!("Bearer {key}"))]).await;
    assert_eq!((keyed.status, keyed.cache()), (200, "MISS"), "its own scope: {}", String::from_utf8_lossy(&keyed.body));
    assert_eq!(fleet.mocks[0].request_count(), 3);

    // A token Envoy cannot verify, or none: the filter refuses (no anonymous access).
    let forged = ask(stranger.token(json!({ "sub": "mallory", "org": "acme" }))).await;
    assert_eq!(forged.status, 401, "{}", String::from_utf8_lossy(&forged.body));
    let none = post_chat_to(&gw, &chat("who am I"), &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(fleet.mocks[0].request_count(), 3, "refused requests never reach the provider");
}

#[test]
fn base64url_matches_the_rfc_4648_vectors() {
    let cases = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")];
    for (input, expected) in cases {
        assert_eq!(base64url(input.as_bytes()), expected);
    }
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
}
