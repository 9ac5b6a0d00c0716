//! The security settings: where the admin token comes from and how long it must be, and
//! whether xDS runs over TLS (with the files checked now) or in plaintext on loopback. Each
//! refusal names the setting to change and never echoes a secret.
use super::ServeArgs;
use crate::xds::tls::{TlsFiles, TlsFlags, XdsTls};
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;

/// The environment variable holding the admin token (the alternative to the file).
pub const ADMIN_TOKEN_ENV: &str = "AURELIS_ADMIN_TOKEN";
/// Shorter tokens are refused: 32 random bytes are out of reach of guessing.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;
pub(super) const ADMIN_TOKEN_FILE_FLAG: &str = "--admin-token-file / AURELIS_ADMIN_TOKEN_FILE";
const XDS_TLS_FLAGS: TlsFlags = TlsFlags {
    cert: "--xds-tls-cert-file / AURELIS_XDS_TLS_CERT_FILE",
    key: "--xds-tls-key-file / AURELIS_XDS_TLS_KEY_FILE",
    client_ca: "--xds-tls-client-ca-file / AURELIS_XDS_TLS_CLIENT_CA_FILE",
};
const XDS_PLAINTEXT_FLAG: &str = "--xds-plaintext-loopback / AURELIS_XDS_PLAINTEXT_LOOPBACK";

/// The admin token from `AURELIS_ADMIN_TOKEN` or the file (not both), checked; and where it
/// came from. Empty means unset: docker-compose passes `AURELIS_ADMIN_TOKEN=""` when none is given.
pub(super) fn admin_token(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<String>, String)> {
    let from_env = env(ADMIN_TOKEN_ENV).filter(|t| !t.is_empty());
    let (token, source, name) = match (from_env, file) {
        (Some(_), Some(_)) => bail!("set the admin token once: {ADMIN_TOKEN_ENV} or {ADMIN_TOKEN_FILE_FLAG}, not both"),
        (Some(token), None) => (token, ADMIN_TOKEN_ENV.to_string(), ADMIN_TOKEN_ENV.to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{ADMIN_TOKEN_FILE_FLAG}: cannot read {}", path.display()))?;
            // Files written by `echo` end with a newline that is no part of the token.
            let token = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            (
                token.to_string(),
                format!("file {}", path.display()),
                format!("{ADMIN_TOKEN_FILE_FLAG} ({})", path.display()),
            )
        }
        (None, None) => return Ok((None, "<unset>".into())),
    };
    // A token with spaces or newlines can never match a header value, which HTTP trims: refuse
    // it now rather than lock the API out silently. Messages never echo the token.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the admin token from {name} must be printable ASCII without spaces or newlines");
    }
    if token.len() < MIN_ADMIN_TOKEN_BYTES {
        bail!("the admin token from {name} has {} bytes; it needs at least {MIN_ADMIN_TOKEN_BYTES} (e.g. `openssl rand -hex 32`)", token.len());
    }
    Ok((Some(token), source))
}

/// TLS for xDS, or plaintext when explicitly asked for on loopback; anything else is refused.
pub(super) fn xds_tls(args: &ServeArgs, xds_listen: SocketAddr) -> Result<Option<XdsTls>> {
    let files = [&args.xds_tls_cert_file, &args.xds_tls_key_file, &args.xds_tls_client_ca_file];
    let names = [XDS_TLS_FLAGS.cert, XDS_TLS_FLAGS.key, XDS_TLS_FLAGS.client_ca];
    let missing: Vec<&str> = files.iter().zip(names).filter(|(f, _)| f.is_none()).map(|(_, n)| n).collect();
    match (missing.len(), args.xds_plaintext_loopback) {
        (0, true) => bail!("{XDS_PLAINTEXT_FLAG} contradicts the xDS TLS files: choose one"),
        (0, false) => {}
        (3, true) if xds_listen.ip().is_loopback() => return Ok(None),
        (3, true) => bail!(
            "{XDS_PLAINTEXT_FLAG} needs a loopback --xds-listen / AURELIS_XDS_LISTEN, not {xds_listen}: \
             Envoys elsewhere must connect over TLS"
        ),
        (3, false) => bail!(
            "xDS needs TLS: set {}, {} and {} (or, for development on loopback only, {XDS_PLAINTEXT_FLAG})",
            names[0],
            names[1],
            names[2]
        ),
        _ => bail!("xDS over TLS needs all three files; missing: {}", missing.join(", ")),
    }
    let (Some(cert), Some(key), Some(client_ca)) = (files[0].clone(), files[1].clone(), files[2].clone()) else {
        bail!("xDS over TLS needs all three files");
    };
    Ok(Some(XdsTls::load(TlsFiles { cert, key, client_ca }, &XDS_TLS_FLAGS)?))
}
