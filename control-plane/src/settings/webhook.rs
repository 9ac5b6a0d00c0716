//! The anomaly webhook's settings: an http(s) URL and an optional secret, from a file or the
//! environment (never a flag: command lines are visible in `ps`). Neither is ever printed whole.
use crate::anomaly::webhook::WebhookTarget;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub const WEBHOOK_SECRET_ENV: &str = "AURELIS_ANOMALY_WEBHOOK_SECRET";
const URL_FLAG: &str = "--anomaly-webhook-url / AURELIS_ANOMALY_WEBHOOK_URL";
const SECRET_FILE_FLAG: &str = "--anomaly-webhook-secret-file / AURELIS_ANOMALY_WEBHOOK_SECRET_FILE";

pub(super) fn anomaly_webhook(
    url: Option<&str>,
    secret_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<WebhookTarget>> {
    let from_env = env(WEBHOOK_SECRET_ENV).filter(|s| !s.is_empty());
    let secret = match (from_env, secret_file) {
        (Some(_), Some(_)) => {
            bail!("set the webhook secret once: {WEBHOOK_SECRET_ENV} or {SECRET_FILE_FLAG}, not both")
        }
        (Some(secret), None) => Some(secret),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{SECRET_FILE_FLAG}: cannot read {}", path.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        }
        (None, None) => None,
    };
    if secret.as_deref().is_some_and(|s| !s.bytes().all(|b| b.is_ascii_graphic())) {
        bail!("the anomaly webhook secret must be printable ASCII without spaces (it travels in a header)");
    }
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        if secret.is_some() {
            bail!("an anomaly webhook secret is set without {URL_FLAG}");
        }
        return Ok(None);
    };
    // The URL may carry a credential (chat webhooks do): errors name the setting, not the value.
    let parsed: reqwest::Url = url.parse().map_err(|_| anyhow::anyhow!("{URL_FLAG} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!("{URL_FLAG} must be an http:// or https:// URL with a host");
    }
    Ok(Some(WebhookTarget { url: parsed, secret }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn url_and_secret_are_checked_and_never_echoed() {
        assert!(anomaly_webhook(None, None, &no_env).unwrap().is_none());
        let target = anomaly_webhook(Some("https://hooks.example/T0/s3cret-path"), None, &no_env).unwrap().unwrap();
        assert_eq!(target.redacted(), "https://hooks.example/<redacted>");
        let env = |name: &str| (name == WEBHOOK_SECRET_ENV).then(|| "hunter2-hunter2".to_string());
        let target = anomaly_webhook(Some("http://127.0.0.1:9/hook"), None, &env).unwrap().unwrap();
        assert_eq!(target.secret.as_deref(), Some("hunter2-hunter2"));
        for (url, expected) in
            [("ftp://files.example/s3cret", "http:// or https://"), ("not a url s3cret", "is not a URL")]
        {
            let err = format!("{:#}", anomaly_webhook(Some(url), None, &no_env).err().unwrap());
            assert!(err.contains(expected) && !err.contains("s3cret"), "{err}");
        }
        let err = format!("{:#}", anomaly_webhook(None, None, &env).err().unwrap());
        assert!(err.contains("without --anomaly-webhook-url"), "{err}");
    }
}
