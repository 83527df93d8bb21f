//! An A2A client over SPIFFE mutual TLS: resolves the agent card, refuses a server whose
//! SPIFFE ID is not `--server-id` before sending anything, checks that the card requires
//! mutual TLS, sends the message with the official A2A SDK client and prints the reply.
//!
//! ```text
//! cargo run --example agent_client -- --socket unix:///tmp/spiffe/agent.sock \
//!     --server https://127.0.0.1:8443 --server-id spiffe://example.org/agent/server \
//!     --text hello [--skill secret] [--stream]
//! ```
//! `--socket` defaults to `SPIFFE_ENDPOINT_SOCKET`. Exits 1 with the reason on stderr when the
//! server, the card or the agent refuses (a refused server's audit event, naming its SPIFFE
//! ID, comes first).

#[path = "support/agents.rs"]
mod agents;

use spiffe_mtls::a2a::AgentClient;
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::{SpiffeId, authorize, tls};

const USAGE: &str = "usage: agent_client [--socket ADDR] --server URL --server-id ID --text TEXT [--skill NAME] [--stream]";

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

async fn run() -> Result<String, String> {
    let flags = agents::Flags::parse(
        &["socket", "server", "server-id", "text", "skill"],
        &["stream"],
        USAGE,
    )?;
    let address = agents::endpoint(&flags)?;
    let server = flags.required("server", USAGE)?;
    let server_id: SpiffeId = flags
        .required("server-id", USAGE)?
        .parse()
        .map_err(|e| format!("--server-id: {e}"))?;
    let text = flags.required("text", USAGE)?;
    let source = WorkloadApiSource::builder()
        .address(address.clone())
        .build()
        .await
        .map_err(|e| format!("Workload API at {address}: {e}"))?;
    let config = tls::client_config(source, authorize::id(server_id))
        .build()
        .map_err(|e| e.to_string())?;
    let agent = AgentClient::connect(config, server)
        .await
        .map_err(|e| e.to_string())?;
    let skill = flags.value("skill");
    let reply = if flags.on("stream") {
        agent.send_text_streaming(text, skill).await
    } else {
        agent.send_text(text, skill).await
    };
    reply.map_err(|e| e.to_string())
}
