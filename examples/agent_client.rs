//! An A2A client over SPIFFE mutual TLS, sending one message with the official A2A SDK client
//! and printing the reply. It finds the agent one of two ways:
//!
//! - `--card URL`: discovery from the card alone. The card is fetched over mutual TLS; its
//!   signature must be by an X.509-SVID valid against the bundle of its trust domain, of the
//!   very SPIFFE ID the server presented; its SPIFFE profile must declare that ID; the calls
//!   then require exactly that ID.
//! - `--server URL --server-id ID`: a server whose SPIFFE ID is not `ID` is refused before
//!   anything is sent; the card (signed or not) must require mutual TLS.
//!
//! ```text
//! cargo run --example agent_client -- --socket unix:///tmp/spiffe/agent.sock \
//!     --card https://localhost:8443/.well-known/agent-card.json --text hello [--skill secret] [--stream]
//! cargo run --example agent_client -- --socket unix:///tmp/spiffe/agent.sock \
//!     --server https://127.0.0.1:8443 --server-id spiffe://example.org/agent/server \
//!     --text hello [--skill secret] [--stream]
//! ```
//! `--socket` defaults to `SPIFFE_ENDPOINT_SOCKET`. With `--card`, the agent's ID is printed
//! on stderr (`agent ID verified by its signed card`). Exits 1 with the reason on stderr when
//! the server, the card or the agent refuses (a refused server's audit event, naming its
//! SPIFFE ID, comes first).

#[path = "support/agents.rs"]
mod agents;

use spiffe_mtls::a2a::AgentClient;
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::{SpiffeId, authorize, tls};

const USAGE: &str = "usage: agent_client [--socket ADDR] (--card URL | --server URL --server-id ID) --text TEXT [--skill NAME] [--stream]";

#[tokio::main]
async fn main() {
    // A refused server's audit event (its SPIFFE ID and the rule) on stderr.
    let _ = tracing::subscriber::set_global_default(agents::StderrLog::denials());
    match run().await {
        Ok(reply) => println!("{reply}"),
        Err(error) => {
            eprintln!("agent_client: {error}");
            std::process::exit(1);
        }
    }
}

/// How the agent is found.
enum Target<'a> {
    /// Discovery from its signed card.
    Card(&'a str),
    /// Its URL and the SPIFFE ID it must have.
    Server(&'a str, SpiffeId),
}

async fn run() -> Result<String, String> {
    let flags = agents::Flags::parse(
        &["socket", "card", "server", "server-id", "text", "skill"],
        &["stream"],
        USAGE,
    )?;
    let address = agents::endpoint(&flags)?;
    let text = flags.required("text", USAGE)?;
    // The flags are checked before anything connects.
    let target = match flags.value("card") {
        Some(_) if flags.value("server").is_some() || flags.value("server-id").is_some() => {
            return Err(format!(
                "--card finds the server and its ID: give it without --server and --server-id\n{USAGE}"
            ));
        }
        Some(card) => Target::Card(card),
        None => {
            let url = flags.required("server", USAGE)?;
            let id: SpiffeId = flags
                .required("server-id", USAGE)?
                .parse()
                .map_err(|e| format!("--server-id: {e}"))?;
            Target::Server(url, id)
        }
    };
    let source = WorkloadApiSource::builder()
        .address(address.clone())
        .build()
        .await
        .map_err(|e| format!("Workload API at {address}: {e}"))?;
    let agent = match target {
        Target::Server(url, id) => {
            let config = tls::client_config(source, authorize::id(id))
                .build()
                .map_err(|e| e.to_string())?;
            AgentClient::connect(config, url)
                .await
                .map_err(|e| e.to_string())?
        }
        Target::Card(card) => {
            let agent = AgentClient::discover(card, source)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(id) = agent.server_id() {
                eprintln!("agent {id} verified by its signed card");
            }
            agent
        }
    };
    let skill = flags.value("skill");
    let reply = if flags.on("stream") {
        agent.send_text_streaming(text, skill).await
    } else {
        agent.send_text(text, skill).await
    };
    reply.map_err(|e| e.to_string())
}
