//! The agents demo, as a function the example and its test both run: a dev server with three
//! identities, the agent server, an agent client that finds it from its signed card; an
//! allowed call, a refused skill, a forged card refused, then a conversation while both SVIDs
//! rotate, and a summary.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use spiffe_mtls::a2a::{AGENT_CARD_PATH, AgentClient, AgentClientError, CardDiscovery};
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::rustls::pki_types::CertificateDer;
use spiffe_mtls::source::{WorkloadApiSource, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Policy, authorize, net, tls};

use super::agents;

/// The agent server's SPIFFE ID.
pub const SERVER: &str = "spiffe://example.org/agent/server";
/// The agent client's SPIFFE ID.
pub const CLIENT: &str = "spiffe://example.org/agent/client";
/// Another workload of the trust domain, which serves a copy of the agent's card.
pub const IMPOSTOR: &str = "spiffe://example.org/agent/impostor";

/// The agent's policy: anyone of example.org may connect and use `echo`; `secret` is for
/// `spiffe://example.org/agent/boss` only.
pub const POLICY: &str = r#"[connect]
trust_domains = ["example.org"]
[routes.echo]
trust_domains = ["example.org"]
[routes.secret]
ids = ["spiffe://example.org/agent/boss"]
"#;

/// What happened.
#[derive(Debug, Default)]
pub struct Summary {
    /// Calls in the conversation.
    pub calls: u64,
    /// Calls that failed.
    pub failed: u64,
    /// SVID rotations seen (server and client).
    pub rotations: u64,
    /// Whether the `secret` skill was refused to the client.
    pub refused: bool,
    /// Whether the card served by the impostor was refused.
    pub forged_refused: bool,
}

impl Summary {
    /// Whether the demo went as it should.
    pub fn ok(&self) -> bool {
        self.failed == 0
            && self.refused
            && self.forged_refused
            && self.rotations > 0
            && self.calls > 0
    }
}

/// Runs the demo for `duration` with SVIDs living `svid_ttl` (the dev server rotates them at
/// half), telling `say` what happens.
pub async fn run(
    duration: Duration,
    svid_ttl: Duration,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Summary, String> {
    let dir = std::env::temp_dir().join(format!("spiffe-mtls-agents-demo-{}", std::process::id()));
    spiffe_mtls::dev_server::ensure_private_dir(&dir).map_err(|e| e.to_string())?;
    let result = with_dir(&dir, duration, svid_ttl, say).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn uid() -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot read this process's uid: {e}"))
}

async fn with_dir(
    dir: &std::path::Path,
    duration: Duration,
    svid_ttl: Duration,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Summary, String> {
    let uid = uid()?;
    let ttl = format!("{}ms", svid_ttl.as_millis());
    let entries = format!(
        "trust_domain = \"example.org\"\n\
         [[entry]]\nspiffe_id = \"{SERVER}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"server\"\ndns_names = [\"localhost\"]\nttl = \"{ttl}\"\n\
         [[entry]]\nspiffe_id = \"{CLIENT}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"client\"\nttl = \"{ttl}\"\n\
         [[entry]]\nspiffe_id = \"{IMPOSTOR}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"impostor\"\nttl = \"{ttl}\"\n"
    );
    let config = DevServerConfig::from_toml(&entries).map_err(|e| e.to_string())?;
    let address = EndpointAddress::Unix(dir.join("agent.sock"));
    let dev = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .map_err(|e| format!("dev server: {e}"))?;
    say(format!(
        "dev server on {address}: trust domain example.org, three identities (agent server, agent client, an impostor), SVIDs live {}s, rotate at half",
        svid_ttl.as_secs_f64()
    ));
    let result = agents_talk(&address, duration, say).await;
    dev.shutdown().await;
    result
}

fn leaf(source: &WorkloadApiSource, hint: &str) -> Option<CertificateDer<'static>> {
    let context = source.x509_context().ok()?;
    Some(context.svid_by_hint(hint)?.leaf().clone())
}

async fn agents_talk(
    address: &EndpointAddress,
    duration: Duration,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Summary, String> {
    let source = Arc::new(
        WorkloadApiSource::connect(address.clone())
            .await
            .map_err(|e| format!("Workload API: {e}"))?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let policy = Policy::from_toml(POLICY).map_err(|e| e.to_string())?;
    let server = agents::start_agent_server(
        Arc::clone(&source),
        Some("server"),
        listener,
        "127.0.0.1",
        policy,
    )?;
    say(format!(
        "agent server {} on {}: skill echo for example.org, skill secret for spiffe://example.org/agent/boss only",
        server.id, server.base_url
    ));

    // Discovery from the card URL alone; a new connection (a full handshake with the
    // current SVIDs) for every call.
    let discovery = CardDiscovery::new()
        .svid_hint("client")
        .new_connection_per_call();
    let agent =
        AgentClient::discover_with(&server.base_url, Arc::clone(&source), discovery.clone())
            .await
            .map_err(|e| e.to_string())?;
    say(format!(
        "agent client {CLIENT} discovered {:?} from its card URL: the card is signed by the SVID of {SERVER} (verified against the example.org bundle), the server that served it, and its SPIFFE profile declares the same ID; endpoint {}, security requires mutualTLS",
        agent.card().name,
        agent.endpoint()
    ));
    let mut summary = Summary::default();
    match agent.send_text("hello, agent", Some("echo")).await {
        Ok(reply) => say(format!("allowed: skill echo answered {reply:?}")),
        Err(error) => return Err(format!("the echo call failed: {error}")),
    }
    match agent.send_text("what is the secret?", Some("secret")).await {
        Err(AgentClientError::Refused { message, code }) => {
            summary.refused = true;
            say(format!(
                "refused: skill secret: {message} (JSON-RPC error {code})"
            ));
        }
        Ok(reply) => say(format!("NOT refused: skill secret answered {reply:?}")),
        Err(error) => say(format!("refused otherwise: {error}")),
    }
    summary.forged_refused = forged_card(&source, &server.base_url, discovery, say).await?;

    say(format!(
        "conversation for {:.0}s while the SVIDs rotate:",
        duration.as_secs_f64()
    ));
    let started = Instant::now();
    let mut last = (leaf(&source, "server"), leaf(&source, "client"));
    let mut next_report = Duration::from_secs(2);
    while started.elapsed() < duration {
        summary.calls += 1;
        let text = format!("message #{}", summary.calls);
        let reply = if summary.calls % 3 == 0 {
            agent.send_text_streaming(&text, None).await
        } else {
            agent.send_text(&text, Some("echo")).await
        };
        match reply {
            Ok(reply) if reply == text => {}
            Ok(reply) => {
                summary.failed += 1;
                say(format!(
                    "call #{} FAILED: unexpected reply {reply:?}",
                    summary.calls
                ));
            }
            Err(error) => {
                summary.failed += 1;
                say(format!("call #{} FAILED: {error}", summary.calls));
            }
        }
        let now = (leaf(&source, "server"), leaf(&source, "client"));
        for (who, id, before, after) in [
            ("server", SERVER, &last.0, &now.0),
            ("client", CLIENT, &last.1, &now.1),
        ] {
            if before != after {
                summary.rotations += 1;
                say(format!(
                    "[{:>5.1}s] rotation: {who} {id} has a new SVID (call #{})",
                    started.elapsed().as_secs_f64(),
                    summary.calls
                ));
            }
        }
        last = now;
        if started.elapsed() >= next_report {
            say(format!(
                "[{:>5.1}s] {} calls, {} failed",
                started.elapsed().as_secs_f64(),
                summary.calls,
                summary.failed
            ));
            next_report += Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();
    say(format!(
        "summary: {} calls in {:.1}s, {} failed, {} SVID rotations, forged card refused: {}, refused skill: {}",
        summary.calls,
        started.elapsed().as_secs_f64(),
        summary.failed,
        summary.rotations,
        summary.forged_refused,
        summary.refused
    ));
    Ok(summary)
}

/// Another workload of the trust domain copies the agent's genuine signed card and serves
/// it as its own: discovery refuses it (the signer is not the server). Whether it was.
async fn forged_card(
    source: &Arc<WorkloadApiSource>,
    base_url: &str,
    discovery: CardDiscovery,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<bool, String> {
    let config = tls::client_config(
        Arc::clone(source),
        authorize::id(SERVER.parse().map_err(|e| format!("{e}"))?),
    )
    .svid_hint("client")
    .build()
    .map_err(|e| e.to_string())?;
    let http = net::reqwest_client(config).map_err(|e| e.to_string())?;
    let genuine: Value = http
        .get(format!("{base_url}{AGENT_CARD_PATH}"))
        .header("A2A-Version", "1.0")
        .send()
        .await
        .map_err(|e| format!("cannot fetch the agent's card: {e}"))?
        .json()
        .await
        .map_err(|e| format!("cannot read the agent's card: {e}"))?;
    let config = tls::server_config(Arc::clone(source), authorize::any())
        .svid_hint("impostor")
        .build()
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let impostor_url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().map_err(|e| e.to_string())?.port()
    );
    let app = axum::Router::new().route(
        AGENT_CARD_PATH,
        axum::routing::get(move || {
            let card = genuine.clone();
            async move { axum::Json(card) }
        }),
    );
    let impostor = tokio::spawn(net::HttpServer::new(listener, Arc::new(config)).serve(app));
    let found = AgentClient::discover_with(&impostor_url, Arc::clone(source), discovery).await;
    impostor.abort();
    match found {
        Err(error @ AgentClientError::Signature { .. }) => {
            say(format!(
                "forged: {IMPOSTOR} serves a copy of the agent's signed card at {impostor_url}: refused: {error}"
            ));
            Ok(true)
        }
        Ok(_) => {
            say(format!(
                "NOT refused: the card {IMPOSTOR} served was believed"
            ));
            Ok(false)
        }
        Err(error) => {
            say(format!("forged card refused otherwise: {error}"));
            Ok(false)
        }
    }
}
