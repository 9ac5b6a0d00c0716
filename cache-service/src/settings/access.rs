//! Who may use the cache API: its tokens and the namespace each is bound to, checked once at
//! start-up. The service requires a token by default; running open takes an explicit flag and
//! a loopback listener. Token values come from the environment or a file, never from a flag
//! (`ps` shows flags), and no error or log line repeats one.
use super::{bad, SettingsError};
use crate::api::{Access, BindError, TokenTable};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;

pub const TOKEN_ENV: &str = "AURELIS_CACHE_API_TOKEN";
const TOKEN_SETTING: &str = "AURELIS_CACHE_API_TOKEN";
const TOKEN_FILE: &str = "--api-token-file / AURELIS_CACHE_API_TOKEN_FILE";
const TOKENS_FILE: &str = "--tokens-file / AURELIS_CACHE_TOKENS_FILE";
const NAMESPACE: &str = "--namespace / AURELIS_CACHE_NAMESPACE";
const ALLOW_OPEN: &str = "--allow-unauthenticated / AURELIS_CACHE_ALLOW_UNAUTHENTICATED";
/// A token must be worth a 256-bit key: `openssl rand -hex 32` gives 64 characters.
pub const MIN_TOKEN_BYTES: usize = 32;

/// The raw inputs, as the command line and environment gave them.
pub struct AccessInput {
    /// `AURELIS_CACHE_API_TOKEN`, bound to `namespace`.
    pub token: Option<OsString>,
    /// A file whose content (trimmed) is the token, bound to `namespace`.
    pub token_file: Option<OsString>,
    pub namespace: String,
    /// Lines `<namespace> <sha256 hex of a token>`; `#` starts a comment.
    pub tokens_file: Option<OsString>,
    pub allow_unauthenticated: bool,
    pub listen: SocketAddr,
}

impl AccessInput {
    pub fn validate(self) -> Result<Access, SettingsError> {
        let mut table = TokenTable::default();
        let token = match (empty_is_none(self.token), empty_is_none(self.token_file)) {
            (Some(_), Some(_)) => {
                return Err(bad(TOKEN_FILE, format!("and {TOKEN_SETTING} are both set: give the token once")))
            }
            (Some(value), None) => Some((TOKEN_SETTING, value.into_string().map_err(|_| not_a_token(TOKEN_SETTING))?)),
            (None, Some(path)) => Some((TOKEN_FILE, read(TOKEN_FILE, &path)?.trim().to_string())),
            (None, None) => None,
        };
        if let Some((setting, token)) = token {
            check_token(setting, &token)?;
            table.bind_token(&self.namespace, &token).map_err(|e| bind_error(NAMESPACE, e))?;
        }
        if let Some(path) = empty_is_none(self.tokens_file) {
            parse_tokens_file(&read(TOKENS_FILE, &path)?, &path, &mut table)?;
        }
        if !table.is_empty() {
            return Ok(Access::Tokens(Arc::new(table)));
        }
        if !self.allow_unauthenticated {
            return Err(bad(
                TOKEN_SETTING,
                format!(
                    "is required (at least {MIN_TOKEN_BYTES} bytes; or {TOKEN_FILE}, or {TOKENS_FILE}); \
                     to run without one for local development, set {ALLOW_OPEN} with a loopback --listen"
                ),
            ));
        }
        if !self.listen.ip().is_loopback() {
            return Err(bad(
                ALLOW_OPEN,
                format!(
                    "needs a loopback --listen address, not {}: an open L2 cache must not be reachable",
                    self.listen
                ),
            ));
        }
        Ok(Access::Open)
    }
}

/// Compose files pass `VAR=""` for an unset variable.
fn empty_is_none(value: Option<OsString>) -> Option<OsString> {
    value.filter(|v| !v.is_empty())
}

fn read(setting: &'static str, path: &OsString) -> Result<String, SettingsError> {
    let shown = std::path::Path::new(path).display().to_string();
    std::fs::read_to_string(path).map_err(|e| bad(setting, format!("cannot read {shown}: {e}")))
}

fn not_a_token(setting: &'static str) -> SettingsError {
    bad(setting, "must be printable ASCII without spaces (value not shown)")
}

/// The token travels in a header (visible ASCII, no spaces, which `Bearer <token>` parsing
/// would cut) and must be long enough not to be guessed.
fn check_token(setting: &'static str, token: &str) -> Result<(), SettingsError> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(not_a_token(setting));
    }
    if token.len() < MIN_TOKEN_BYTES {
        return Err(bad(
            setting,
            format!("is {} bytes long, at least {MIN_TOKEN_BYTES} needed (value not shown)", token.len()),
        ));
    }
    Ok(())
}

fn bind_error(setting: &'static str, e: BindError) -> SettingsError {
    bad(setting, e.to_string())
}

/// Binds each line's digest to its namespace; errors name the file and line, never a digest.
fn parse_tokens_file(text: &str, path: &OsString, table: &mut TokenTable) -> Result<(), SettingsError> {
    let shown = std::path::Path::new(path).display().to_string();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = |problem: String| bad(TOKENS_FILE, format!("{shown} line {}: {problem}", index + 1));
        let mut fields = line.split_whitespace();
        let (Some(namespace), Some(digest), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(at("expected `<namespace> <sha256 hex of the token>`".into()));
        };
        let digest = parse_digest(digest.strip_prefix("sha256:").unwrap_or(digest))
            .ok_or_else(|| at("the digest is not 64 hex characters (sha256sum of the token)".into()))?;
        table.bind_digest(namespace, digest).map_err(|e| at(e.to_string()))?;
    }
    Ok(())
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// For the start-up line: how many tokens, which namespaces; never a token or digest.
pub fn describe(access: &Access) -> String {
    match access {
        Access::Open => "api_tokens=<none> (unauthenticated: loopback only)".into(),
        Access::Tokens(table) => format!("api_tokens={} namespaces={}", table.len(), table.namespaces().join(",")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    const TOKEN: &str = "0123456789abcdef0123456789abcdef-token";

    fn input() -> AccessInput {
        AccessInput {
            token: None,
            token_file: None,
            namespace: "aurelis".into(),
            tokens_file: None,
            allow_unauthenticated: false,
            listen: "127.0.0.1:18080".parse().unwrap(),
        }
    }

    fn refused(input: AccessInput) -> String {
        input.validate().expect_err("accepted").to_string()
    }

    fn namespace_of(access: &Access, token: &str) -> Option<String> {
        let Access::Tokens(table) = access else { return None };
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        table.namespace_of(&headers).map(str::to_string)
    }

    fn file(name: &str, contents: &str) -> OsString {
        let path = std::env::temp_dir().join(format!("aurelis-access-{name}-{}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path.into_os_string()
    }

    #[test]
    fn a_token_is_required_by_default() {
        let err = refused(input());
        assert!(err.starts_with("AURELIS_CACHE_API_TOKEN: is required"), "{err}");
        assert!(err.contains("--allow-unauthenticated"), "{err}");
        let err = refused(AccessInput { token: Some("".into()), ..input() });
        assert!(err.starts_with("AURELIS_CACHE_API_TOKEN: is required"), "empty is unset: {err}");
    }

    #[test]
    fn open_only_when_asked_and_on_loopback() {
        let open = AccessInput { allow_unauthenticated: true, ..input() }.validate().unwrap();
        assert!(matches!(open, Access::Open));
        assert_eq!(describe(&open), "api_tokens=<none> (unauthenticated: loopback only)");
        let v6 = AccessInput { allow_unauthenticated: true, listen: "[::1]:1".parse().unwrap(), ..input() };
        assert!(matches!(v6.validate(), Ok(Access::Open)));
        for listen in ["0.0.0.0:18080", "10.0.0.5:18080", "[::]:18080"] {
            let err = refused(AccessInput { allow_unauthenticated: true, listen: listen.parse().unwrap(), ..input() });
            assert!(err.starts_with("--allow-unauthenticated / AURELIS_CACHE_ALLOW_UNAUTHENTICATED:"), "{err}");
        }
    }

    #[test]
    fn tokens_are_long_printable_and_never_repeated() {
        let access = AccessInput { token: Some(TOKEN.into()), ..input() }.validate().unwrap();
        assert_eq!(namespace_of(&access, TOKEN).as_deref(), Some("aurelis"));
        assert_eq!(describe(&access), "api_tokens=1 namespaces=aurelis");
        for bad in
            ["short-token", "has a space 0123456789abcdef0123456789", "caf\u{e9}0123456789abcdef0123456789abcdef"]
        {
            let err = refused(AccessInput { token: Some(bad.into()), ..input() });
            assert!(err.starts_with("AURELIS_CACHE_API_TOKEN: "), "{err}");
            assert!(!err.contains(bad), "the error repeats the token: {err}");
        }
        // The allow flag does not weaken a configured token.
        let access = AccessInput { token: Some(TOKEN.into()), allow_unauthenticated: true, ..input() };
        assert!(matches!(access.validate(), Ok(Access::Tokens(_))));
    }

    #[test]
    fn the_token_can_come_from_a_file_bound_to_the_namespace() {
        let path = file("one", &format!("{TOKEN}\n"));
        let access =
            AccessInput { token_file: Some(path.clone()), namespace: "fleet-a".into(), ..input() }.validate().unwrap();
        assert_eq!(namespace_of(&access, TOKEN).as_deref(), Some("fleet-a"));
        let err = refused(AccessInput { token: Some(TOKEN.into()), token_file: Some(path), ..input() });
        assert!(err.starts_with("--api-token-file / AURELIS_CACHE_API_TOKEN_FILE: and AURELIS_CACHE_API_TOKEN"));
        let err = refused(AccessInput { token_file: Some("/nonexistent/aurelis-token".into()), ..input() });
        assert!(err.contains("cannot read /nonexistent/aurelis-token"), "{err}");
        let err = refused(AccessInput { token: Some(TOKEN.into()), namespace: "a b".into(), ..input() });
        assert!(err.starts_with("--namespace / AURELIS_CACHE_NAMESPACE: namespace: byte 0x20"), "{err}");
    }

    #[test]
    fn a_tokens_file_binds_each_digest_to_its_namespace() {
        let digest = |t: &str| {
            use sha2::Digest;
            sha2::Sha256::digest(t.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let text = format!(
            "# namespace  sha256 of the token\nfleet-a {}\n\nfleet-b sha256:{}  # rotated 2026-11\n",
            digest("token-a"),
            digest("token-b")
        );
        let path = file("many", &text);
        let access = AccessInput { tokens_file: Some(path), token: Some(TOKEN.into()), ..input() }.validate().unwrap();
        assert_eq!(namespace_of(&access, "token-a").as_deref(), Some("fleet-a"));
        assert_eq!(namespace_of(&access, "token-b").as_deref(), Some("fleet-b"));
        assert_eq!(namespace_of(&access, TOKEN).as_deref(), Some("aurelis"));
        assert_eq!(namespace_of(&access, "token-c"), None);
        assert_eq!(describe(&access), "api_tokens=3 namespaces=aurelis,fleet-a,fleet-b");
        for (name, text, problem) in [
            ("fields", "fleet-a\n".to_string(), "line 1: expected `<namespace> <sha256 hex"),
            ("hex", "fleet-a abc\n".to_string(), "line 1: the digest is not 64 hex"),
            (
                "dup",
                format!("a {0}\nb {0}\n", digest("x")),
                "line 2: the same token is bound to namespaces `a` and `b`",
            ),
            ("ns", format!("# c\nbad{{ns}} {}\n", digest("x")), "line 2: namespace: byte 0x7b"),
        ] {
            let err = refused(AccessInput { tokens_file: Some(file(name, &text)), ..input() });
            assert!(err.starts_with("--tokens-file / AURELIS_CACHE_TOKENS_FILE: "), "{err}");
            assert!(err.contains(problem), "{name}: {err}");
        }
    }
}
