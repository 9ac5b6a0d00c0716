//! Test PKI, generated per run in pure Rust (rcgen): a private CA, a Redis server certificate for
//! 127.0.0.1 and localhost, a client certificate for mutual TLS, and a second, unrelated CA with
//! its own client certificate. PEM files in a fresh directory, removed on drop.
use aurelis_cache_service::TlsOptions;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TestPki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that did not issue the server certificate.
    pub other_ca: PathBuf,
    /// A client certificate issued by `other_ca`, which Redis must refuse.
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

impl TestPki {
    pub fn generate() -> TestPki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("aurelis-cache-pki-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };

        let (ca_pem, ca) = new_ca("Aurelis test CA");
        let (other_ca_pem, other_ca) = new_ca("Aurelis unrelated CA");
        let (server_pem, server_key) =
            new_leaf(&ca, "127.0.0.1", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_pem, client_key) =
            new_leaf(&ca, "aurelis-cache", &["aurelis-cache"], ExtendedKeyUsagePurpose::ClientAuth);
        let (other_client_pem, other_client_key) =
            new_leaf(&other_ca, "aurelis-cache", &["aurelis-cache"], ExtendedKeyUsagePurpose::ClientAuth);
        TestPki {
            ca: write("ca.pem", ca_pem),
            server_cert: write("server.pem", server_pem),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client_pem),
            client_key: write("client.key", client_key),
            other_ca: write("other-ca.pem", other_ca_pem),
            other_client_cert: write("other-client.pem", other_client_pem),
            other_client_key: write("other-client.key", other_client_key),
            dir,
        }
    }

    /// Trusts `ca` (instead of the system's roots), as `--redis-tls-ca-file` does.
    pub fn trusting(ca: &Path) -> TlsOptions {
        TlsOptions::default().with_ca(std::fs::read(ca).unwrap()).unwrap()
    }

    /// Trusts our CA and presents our client certificate, as the three TLS flags do.
    pub fn mutual(&self) -> TlsOptions {
        TestPki::trusting(&self.ca)
            .with_client_identity(std::fs::read(&self.client_cert).unwrap(), std::fs::read(&self.client_key).unwrap())
            .unwrap()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

/// Certificate and key PEM; names that parse as IP addresses become IP SANs.
fn new_leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}
