//! Watch two agents work over SPIFFE mutual TLS, in one command:
//!
//! ```text
//! cargo run --example agents_demo
//! ```
//! It starts the embedded dev server (a SPIRE-compatible Workload API) with two identities,
//! the agent server (`agent_server`'s code) and an agent client (the official A2A SDK client
//! on this crate's mTLS `reqwest` client), then shows an allowed call, a refused skill (the
//! audit event of the refusal goes to stderr), and a conversation while both SVIDs rotate,
//! with no failed call. It exits by itself (0 when all went as expected) after `--duration`
//! (default 20s; or `AGENTS_DEMO_DURATION`), with SVIDs living `--svid-ttl` (default 8s; or
//! `AGENTS_DEMO_SVID_TTL`).
//!
//! With `--oauth`, the three levels of the A2A authentication guide side by side instead:
//! mutual TLS, a JWT-SVID bearer, and an OAuth token from a real Keycloak that the agent got
//! with its JWT-SVID alone, with per-skill scopes (`agent:execute`, `data:pii`). Keycloak is
//! the one the `KEYCLOAK_*` variables of `interop/keycloak.sh start`'s `keycloak.env` name,
//! else one this demo starts with that script (a 164 MB download the first time, cached;
//! needs Java 17).

#[path = "support/agents.rs"]
mod agents;
#[path = "support/demo.rs"]
mod demo;
#[path = "support/keycloak.rs"]
mod keycloak;
#[path = "support/oauth_demo.rs"]
mod oauth_demo;

use std::time::Duration;

const USAGE: &str = "usage: agents_demo [--duration DURATION] [--svid-ttl DURATION] [--oauth]";

#[tokio::main]
async fn main() {
    let _ = tracing::subscriber::set_global_default(agents::StderrLog::denials());
    let code = match run().await {
        Ok(true) => 0,
        Ok(false) => {
            println!("the demo did not go as expected");
            1
        }
        Err(error) => {
            eprintln!("agents_demo: {error}");
            1
        }
    };
    std::process::exit(code);
}

fn duration_flag(
    flags: &agents::Flags,
    flag: &str,
    env: &str,
    default: Duration,
) -> Result<Duration, String> {
    match flags
        .value(flag)
        .map(str::to_owned)
        .or_else(|| std::env::var(env).ok())
    {
        Some(text) => spiffe_mtls::dev_server::parse_duration(&text),
        None => Ok(default),
    }
}

async fn run() -> Result<bool, String> {
    let flags = agents::Flags::parse(&["duration", "svid-ttl"], &["oauth"], USAGE)?;
    if flags.on("oauth") {
        let summary = oauth_demo::run_oauth(&mut |line| println!("{line}")).await?;
        return Ok(summary.ok());
    }
    let duration = duration_flag(
        &flags,
        "duration",
        "AGENTS_DEMO_DURATION",
        Duration::from_secs(20),
    )?;
    let ttl = duration_flag(
        &flags,
        "svid-ttl",
        "AGENTS_DEMO_SVID_TTL",
        Duration::from_secs(8),
    )?;
    let summary = demo::run(duration, ttl, &mut |line| println!("{line}")).await?;
    Ok(summary.ok())
}
