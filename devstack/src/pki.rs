//! A throw-away PKI for a fleet over xDS TLS: one CA, the control plane's certificate (URI SAN
//! `spiffe://aurelis/control-plane`) and one client certificate per Envoy node
//! (`spiffe://aurelis/node/<id>`), written as PEM files into the fleet's temporary directory.
//! Generated per run with rcgen: no private key is ever committed.
use anyhow::{Context, Result};
use aurelis_control_plane::xds::tls::{CONTROL_PLANE_URI, NODE_URI_PREFIX};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use std::path::{Path, PathBuf};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    dir: PathBuf,
    pub ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA, written to `dir/ca.pem` (its key stays in memory).
    pub fn create(dir: &Path) -> Result<Pki> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "aurelis test CA");
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        std::fs::create_dir_all(dir)?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).with_context(|| format!("writing {}", ca_file.display()))?;
        Ok(Pki { dir: dir.to_path_buf(), ca_file, issuer: Issuer::new(params, key) })
    }

    /// The control plane's server certificate.
    pub fn control_plane(&self) -> Result<CertFiles> {
        self.leaf("control-plane", CONTROL_PLANE_URI)
    }

    /// A client certificate vouching for `node_id`.
    pub fn node(&self, node_id: &str) -> Result<CertFiles> {
        self.leaf(&format!("node-{node_id}"), &format!("{NODE_URI_PREFIX}{node_id}"))
    }

    fn leaf(&self, name: &str, uri: &str) -> Result<CertFiles> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.subject_alt_names.push(SanType::URI(uri.to_string().try_into()?));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files =
            CertFiles { cert: self.dir.join(format!("{name}.pem")), key: self.dir.join(format!("{name}-key.pem")) };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        // Like any private key: readable by its owner only.
        #[cfg(unix)]
        std::fs::set_permissions(&files.key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(files)
    }
}
