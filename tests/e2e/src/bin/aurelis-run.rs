//! `make run`: the whole stack on fixed ports with no configuration. Ctrl-C stops everything.
use anyhow::Result;
use aurelis_e2e::envoy_config::GITHUB_TOKEN_ENV;
use aurelis_e2e::{Stack, StackOptions, Upstream};
use std::sync::mpsc;

fn main() -> Result<()> {
    let github = std::env::var(GITHUB_TOKEN_ENV).is_ok_and(|t| !t.trim().is_empty());
    let options = StackOptions {
        upstream: if github { Upstream::GitHubModels } else { Upstream::Mock },
        redis: true,
        control_plane: true,
        listen_port: Some(10000),
        admin_port: Some(9901),
        mock_port: Some(8000),
        redis_port: Some(6379),
        control_plane_port: Some(18000),
        envoy_log_level: "info".into(),
        ..StackOptions::default()
    };
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })?;
    let stack = Stack::start(options)?;
    let upstream = match &stack.mock {
        Some(m) => format!("mock OpenAI-compatible provider   http://{}", m.addr()),
        None => {
            "GitHub Models                     https://models.github.ai/inference (token from $GITHUB_TOKEN)".into()
        }
    };
    let model = if github { "openai/gpt-4o-mini" } else { "gpt-4o-mini" };
    println!(
        "\nAurelis is running:\n\
         \x20 gateway (Envoy + aurelis filter)  {gw}/v1/chat/completions\n\
         \x20 Envoy admin                       {admin}  (stats: {admin}/stats/prometheus)\n\
         \x20 upstream                          {upstream}\n\
         \x20 Redis                             127.0.0.1:{redis}\n\
         \x20 control plane                     {cp}/healthz\n\
         \x20 logs                              {logs}\n\n\
         Try it (run twice: MISS, then HIT):\n\
         \x20 curl -si {gw}/v1/chat/completions -H 'content-type: application/json' \\\n\
         \x20   -d '{{\"model\":\"{model}\",\"temperature\":0,\"messages\":[{{\"role\":\"user\",\"content\":\"Say hello\"}}]}}'\n\n\
         Ctrl-C stops everything.",
        gw = stack.gateway_url,
        admin = stack.admin_url,
        redis = stack.redis_port.unwrap_or(0),
        cp = stack.control_plane_url.as_deref().unwrap_or("-"),
        logs = stack.dir().display(),
    );
    let _ = rx.recv();
    println!("\nstopping...");
    drop(stack);
    Ok(())
}
