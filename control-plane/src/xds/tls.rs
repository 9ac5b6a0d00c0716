//! xDS over TLS with client certificates: the control plane's certificate, the CA its Envoys'
//! certificates must chain to (checked by rustls' `WebPkiClientVerifier` during the handshake,
//! `tls_incoming`), and the node identity such a certificate carries.
//!
//! Identity rule: an Envoy's client certificate names its node with a URI subject alternative
//! name `spiffe://aurelis/node/<node id>` (`NODE_URI_PREFIX`); the ADS stream's `node.id` must be
//! exactly one of those. DNS names and the subject CN are ignored on purpose: a CA that also
//! issues server certificates (DNS SANs) must not make every host a valid node. The control
//! plane's own certificate carries `spiffe://aurelis/control-plane` (`CONTROL_PLANE_URI`), which
//! the rendered Envoy bootstraps require, so a node certificate cannot pose as the control plane.
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A client certificate vouches for node `<id>` with the URI SAN `spiffe://aurelis/node/<id>`.
pub const NODE_URI_PREFIX: &str = "spiffe://aurelis/node/";
/// The URI SAN of the control plane's certificate; Envoys accept no other xDS server.
pub const CONTROL_PLANE_URI: &str = "spiffe://aurelis/control-plane";

/// Where the PEM files are; the flag names are for error messages.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The flag (and variable) names that set each file, for messages.
pub struct TlsFlags {
    pub cert: &'static str,
    pub key: &'static str,
    pub client_ca: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag}: cannot read {path}: {source}")]
    Read { flag: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{flag}: {path} holds no PEM certificate")]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("{flag}: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { flag: &'static str, path: PathBuf },
    /// rustls refused the combination (a key that does not match the certificate, a CA it
    /// cannot use); its text says which, and never contains key material.
    #[error("{what}: {reason}")]
    Refused { what: String, reason: String },
}

/// The rustls configuration built from the files. Deliberately not `Debug`: it holds a
/// private key.
pub struct XdsTls {
    files: TlsFiles,
    config: Arc<rustls::ServerConfig>,
}

impl XdsTls {
    /// Reads the three files and builds the rustls configuration once, so a bad file stops the
    /// start-up naming its flag instead of failing every handshake later.
    pub fn load(files: TlsFiles, flags: &TlsFlags) -> Result<XdsTls, TlsError> {
        let cert_pem = read(&files.cert, flags.cert)?;
        let key_pem = read(&files.key, flags.key)?;
        let client_ca_pem = read(&files.client_ca, flags.client_ca)?;
        let chain = certificates(&cert_pem, &files.cert, flags.cert)?;
        let cas = certificates(&client_ca_pem, &files.client_ca, flags.client_ca)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsError::NoKey { flag: flags.key, path: files.key.clone() })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            roots.add(ca).map_err(|e| refused(flags.client_ca, &files.client_ca, e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .map_err(|e| refused(flags.client_ca, &files.client_ca, e))?;
        // Client certificates are required (not optional); ring is named explicitly so no
        // process-wide default provider is guessed.
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_client_cert_verifier(verifier).with_single_cert(chain, key))
            .map_err(|e| TlsError::Refused {
                what: format!("{} / {} ({} with {})", flags.cert, flags.key, files.cert.display(), files.key.display()),
                reason: e.to_string(),
            })?;
        // gRPC is HTTP/2.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(XdsTls { files, config: Arc::new(config) })
    }

    /// For the xDS listener (`tls_incoming::incoming`).
    pub fn rustls_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.config)
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { flag, path: path.to_path_buf(), source })
}

fn certificates(pem: &[u8], path: &Path, flag: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { flag, path: path.to_path_buf() });
    }
    Ok(certs)
}

fn refused(flag: &str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Refused { what: format!("{flag} ({})", path.display()), reason: e.to_string() }
}

/// The node ids a (verified) certificate vouches for: every URI SAN under `NODE_URI_PREFIX`.
/// An unparsable certificate vouches for nothing.
pub fn node_ids(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else { return Vec::new() };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX),
            _ => None,
        })
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
pub(crate) mod test_pki {
    //! A throw-away CA and certificates for the tests (rcgen); nothing is committed.
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

    pub struct Ca {
        pub pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    pub struct Leaf {
        pub cert_pem: String,
        pub key_pem: String,
        pub der: Vec<u8>,
    }

    impl Ca {
        pub fn new() -> Ca {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
        }

        /// A leaf with these URI and DNS SANs.
        pub fn leaf(&self, uris: &[&str], dns: &[&str]) -> Leaf {
            let mut params = CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
            for uri in uris {
                params.subject_alt_names.push(SanType::URI(uri.to_string().try_into().unwrap()));
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_pki::Ca;
    use super::*;

    const FLAGS: TlsFlags = TlsFlags { cert: "--cert", key: "--key", client_ca: "--ca" };

    #[test]
    fn a_certificate_vouches_only_for_its_node_uris() {
        let ca = Ca::new();
        let leaf = ca.leaf(&["spiffe://aurelis/node/gw-1", "spiffe://other/node/gw-2"], &["gw-3.example"]);
        assert_eq!(node_ids(&leaf.der), ["gw-1"], "other trust domains and DNS names are ignored");
        assert!(node_ids(&ca.leaf(&[], &["gw-1"]).der).is_empty());
        assert!(node_ids(&ca.leaf(&["spiffe://aurelis/node/"], &[]).der).is_empty(), "an empty id is none");
        assert!(node_ids(b"not a certificate").is_empty());
    }

    #[test]
    fn load_names_the_flag_of_a_bad_file() {
        let dir = tempdir("load");
        let ca = Ca::new();
        let server = ca.leaf(&[CONTROL_PLANE_URI], &[]);
        let other = ca.leaf(&[CONTROL_PLANE_URI], &[]);
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let files = TlsFiles {
            cert: write("cert.pem", &server.cert_pem),
            key: write("key.pem", &server.key_pem),
            client_ca: write("ca.pem", &ca.pem),
        };
        assert!(XdsTls::load(files.clone(), &FLAGS).is_ok());

        let missing = TlsFiles { client_ca: dir.join("nope.pem"), ..files.clone() };
        let err = XdsTls::load(missing, &FLAGS).err().unwrap().to_string();
        assert!(err.starts_with("--ca: cannot read"), "{err}");
        let not_a_cert = TlsFiles { cert: files.key.clone(), ..files.clone() };
        let err = XdsTls::load(not_a_cert, &FLAGS).err().unwrap().to_string();
        assert!(err.contains("--cert") && err.contains("no PEM certificate"), "{err}");
        let no_key = TlsFiles { key: files.cert.clone(), ..files.clone() };
        let err = XdsTls::load(no_key, &FLAGS).err().unwrap().to_string();
        assert!(err.contains("--key") && err.contains("no PEM private key"), "{err}");
        let wrong_key = TlsFiles { key: write("other-key.pem", &other.key_pem), ..files.clone() };
        let err = XdsTls::load(wrong_key, &FLAGS).err().unwrap().to_string();
        assert!(err.contains("--cert / --key"), "{err}");
        assert!(!err.contains("PRIVATE KEY"), "no key material in messages: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aurelis-cp-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
