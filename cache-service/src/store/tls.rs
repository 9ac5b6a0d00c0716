//! TLS material beyond what a `rediss://` URL says: a private CA trusted instead of the system's
//! roots, and a client certificate for mutual TLS (`tls-auth-clients yes`).
//!
//! Everything is checked when it is added, the way the TLS client will use it (PEM parsing, trust
//! anchors, key matching certificate), so a bad file stops start-up with a message instead of
//! failing every connection later. Without any of it, `rediss://` verifies against the system's
//! roots (`rustls-native-certs`), as before.
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::sync::Arc;

/// Extra TLS material for `rediss://` connections. Default: none (system roots, no client
/// certificate). Deliberately not `Debug`: it may hold a private key.
#[derive(Clone, Default)]
pub struct TlsOptions {
    ca: Option<Vec<u8>>,
    client: Option<ClientIdentity>,
}

#[derive(Clone)]
struct ClientIdentity {
    cert_chain: Vec<u8>,
    key: Vec<u8>,
}

/// Which piece of TLS material a problem is in, so the caller can name its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPart {
    Ca,
    ClientCert,
    ClientKey,
}

/// Unusable TLS material. The message never contains key bytes.
#[derive(Debug, thiserror::Error)]
#[error("{problem}")]
pub struct TlsError {
    pub part: TlsPart,
    pub problem: String,
}

fn tls_error(part: TlsPart, problem: impl Into<String>) -> TlsError {
    TlsError { part, problem: problem.into() }
}

impl TlsOptions {
    /// Trusts only the CA certificate(s) in `pem` (one or more `CERTIFICATE` blocks) to verify
    /// Redis' certificate, instead of the system's roots.
    pub fn with_ca(mut self, pem: Vec<u8>) -> Result<TlsOptions, TlsError> {
        let certs = certificates(&pem, TlsPart::Ca)?;
        let mut roots = RootCertStore::empty();
        for (i, cert) in certs.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|e| tls_error(TlsPart::Ca, format!("certificate #{} is not a usable CA: {e}", i + 1)))?;
        }
        self.ca = Some(pem);
        Ok(self)
    }

    /// Presents this certificate chain (leaf first) and its private key to Redis (mutual TLS).
    pub fn with_client_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<TlsOptions, TlsError> {
        let chain = certificates(&cert_pem, TlsPart::ClientCert)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            tls_error(TlsPart::ClientKey, format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
        })?;
        // The same check the TLS client makes when it connects: the key type is supported and
        // the key belongs to the leaf certificate.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(TlsPart::ClientKey, e.to_string()))?
            .with_root_certificates(RootCertStore::empty())
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls_error(TlsPart::ClientKey, format!("cannot be used with the client certificate: {e}")))?;
        self.client = Some(ClientIdentity { cert_chain: cert_pem, key: key_pem });
        Ok(self)
    }

    pub fn has_ca(&self) -> bool {
        self.ca.is_some()
    }

    pub fn has_client_identity(&self) -> bool {
        self.client.is_some()
    }

    /// Whether anything differs from the defaults (and so needs `rediss://`).
    pub fn is_set(&self) -> bool {
        self.has_ca() || self.has_client_identity()
    }

    /// What the redis client takes; `None` keeps its defaults.
    pub(crate) fn certificates(&self) -> Option<TlsCertificates> {
        self.is_set().then(|| TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|c| ClientTlsConfig { client_cert: c.cert_chain.clone(), client_key: c.key.clone() }),
            root_cert: self.ca.clone(),
        })
    }
}

/// Every `CERTIFICATE` block of `pem`; at least one.
fn certificates(pem: &[u8], part: TlsPart) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(part, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(part, "contains no PEM `CERTIFICATE` block"));
    }
    Ok(certs)
}

/// PEM material generated per test run (rcgen, pure Rust), for unit tests across the crate.
#[cfg(test)]
pub(crate) mod test_pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    pub struct TestPki {
        pub ca: String,
        pub leaf: String,
        pub leaf_key: String,
        /// A key that belongs to no certificate here.
        pub other_key: String,
    }

    pub fn pki() -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["client".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        TestPki {
            ca,
            leaf: leaf.pem(),
            leaf_key: leaf_key.serialize_pem(),
            other_key: KeyPair::generate().unwrap().serialize_pem(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_pki::{pki, TestPki};
    use super::*;

    #[test]
    fn nothing_set_keeps_the_client_defaults() {
        let tls = TlsOptions::default();
        assert!(!tls.is_set());
        assert!(tls.certificates().is_none());
    }

    #[test]
    fn valid_material_is_accepted() {
        let p: TestPki = pki();
        let bundle = format!("{}{}", p.ca, p.leaf).into_bytes();
        let tls = TlsOptions::default().with_ca(bundle).unwrap();
        assert!(tls.has_ca() && !tls.has_client_identity());
        let tls = tls.with_client_identity(p.leaf.into_bytes(), p.leaf_key.into_bytes()).unwrap();
        let certs = tls.certificates().unwrap();
        assert!(certs.root_cert.is_some() && certs.client_tls.is_some());
    }

    #[test]
    fn each_kind_of_bad_material_names_its_part() {
        let p: TestPki = pki();
        let err = |r: Result<TlsOptions, TlsError>| r.err().map(|e| (e.part, e.to_string())).unwrap();
        let (part, msg) = err(TlsOptions::default().with_ca(b"hello".to_vec()));
        assert_eq!(part, TlsPart::Ca);
        assert!(msg.contains("no PEM `CERTIFICATE`"), "{msg}");
        // A key where the CA should be: no certificate in it.
        assert_eq!(err(TlsOptions::default().with_ca(p.leaf_key.clone().into_bytes())).0, TlsPart::Ca);
        let truncated = p.ca[..p.ca.len() - 30].to_string();
        let (part, msg) = err(TlsOptions::default().with_ca(truncated.into_bytes()));
        assert_eq!(part, TlsPart::Ca);
        assert!(msg.contains("not valid PEM"), "{msg}");
        let broken_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let (part, msg) = err(TlsOptions::default().with_ca(broken_der.into()));
        assert_eq!(part, TlsPart::Ca);
        assert!(msg.contains("not a usable CA"), "{msg}");

        let id = |cert: &str, key: &str| TlsOptions::default().with_client_identity(cert.into(), key.into());
        assert_eq!(err(id(&p.leaf_key, &p.leaf_key)).0, TlsPart::ClientCert);
        let (part, msg) = err(id(&p.leaf, &p.leaf));
        assert_eq!(part, TlsPart::ClientKey);
        assert!(msg.contains("no usable PEM private key") && !msg.contains("BEGIN"), "{msg}");
        let (part, msg) = err(id(&p.leaf, &p.other_key));
        assert_eq!(part, TlsPart::ClientKey);
        assert!(msg.contains("cannot be used with the client certificate"), "{msg}");
    }
}
