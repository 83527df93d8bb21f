//! An A2A agent over SPIFFE mutual TLS, with two skills: `echo` (replies with your text) and
//! `secret` (a fixed text), each allowed by its own rule of a policy file.
//!
//! ```text
//! cargo run --example agent_server -- --socket unix:///tmp/spiffe/agent.sock \
//!     --listen 127.0.0.1:8443 --policy agents-policy.toml
//! ```
//! `--socket` defaults to `SPIFFE_ENDPOINT_SOCKET`, `--listen` to `127.0.0.1:8443`, `--auth`
//! to `mtls`: with `jwt` callers present a JWT-SVID for the server's SPIFFE ID as audience in
//! `Authorization: Bearer` instead of a client certificate (for callers behind a
//! TLS-terminating proxy), with `both` either one. The policy:
//! ```toml
//! [connect]                      # who may complete a handshake (and fetch the card)
//! trust_domains = ["example.org"]
//! [routes.echo]
//! trust_domains = ["example.org"]
//! [routes.secret]
//! ids = ["spiffe://example.org/agent/boss"]
//! ```
//! The card is at `https://localhost:8443/.well-known/agent-card.json`, JSON-RPC (v1.0 and
//! v0.3) at `/a2a` (the card names `localhost` when listening on a loopback address, so that
//! clients checking host names match the SVID's DNS SAN `localhost`). Every handshake and
//! every call is an audit event on stderr.

#[path = "support/agents.rs"]
mod agents;

use std::sync::Arc;

use spiffe_mtls::Policy;
use spiffe_mtls::a2a::AgentAuth;
use spiffe_mtls::jwt::{JwtBundleSource, JwtSource};
use spiffe_mtls::source::WorkloadApiSource;

const USAGE: &str =
    "usage: agent_server [--socket ADDR] [--listen ADDR] --policy FILE [--auth mtls|jwt|both]";

#[tokio::main]
async fn main() {
    tracing_subscriber_init();
    if let Err(error) = run().await {
        eprintln!("agent_server: {error}");
        std::process::exit(1);
    }
}

/// Audit events and warnings on stderr.
fn tracing_subscriber_init() {
    let _ = tracing::subscriber::set_global_default(agents::StderrLog::new());
}

async fn run() -> Result<(), String> {
    let flags = agents::Flags::parse(&["socket", "listen", "policy", "auth"], &[], USAGE)?;
    let auth: AgentAuth = flags.value("auth").unwrap_or("mtls").parse()?;
    let address = agents::endpoint(&flags)?;
    let listen = flags.value("listen").unwrap_or("127.0.0.1:8443");
    let policy_file = flags.required("policy", USAGE)?;
    let policy = Policy::load(policy_file).map_err(|e| e.to_string())?;
    let source = WorkloadApiSource::builder()
        .address(address.clone())
        .build()
        .await
        .map_err(|e| format!("Workload API at {address}: {e}"))?;
    let jwt_bundles: Option<Arc<dyn JwtBundleSource>> = match auth {
        AgentAuth::Mtls => None,
        _ => Some(Arc::new(
            JwtSource::connect(address.clone())
                .await
                .map_err(|e| format!("JWT bundles from {address}: {e}"))?,
        )),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    // The card's URL: `localhost` on this host (which an SVID's DNS SAN can name, for
    // clients that check host names), else the address listened on.
    let host = match listener.local_addr().map_err(|e| e.to_string())?.ip() {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
        ip if ip.is_ipv6() => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let server =
        agents::start_agent_server_with(source, None, listener, &host, policy, auth, jwt_bundles)?;
    println!(
        "agent server {} on {} (card {}/.well-known/agent-card.json, JSON-RPC {}/a2a)",
        server.id, server.base_url, server.base_url, server.base_url
    );
    server.wait().await
}
