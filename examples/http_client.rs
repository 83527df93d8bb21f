//! An HTTPS client over SPIFFE mutual TLS with reqwest (the `reqwest` feature): it presents
//! its SVID, accepts only the server whose SPIFFE ID is `--server-id` (the handshake fails
//! before the request is sent otherwise), and prints the server's ID and the body.
//!
//! ```text
//! cargo run --example http_client -- --socket unix:///tmp/agent.sock --url https://127.0.0.1:8443/ --server-id spiffe://example.org/server
//! ```

mod socket_arg;

use clap::Parser;
use spiffe_mtls::tls::Side;
use spiffe_mtls::{SpiffeId, authorize, net, tls};

/// GETs one URL over mutual TLS.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    socket: socket_arg::SocketArg,
    /// The URL (https only).
    #[arg(long)]
    url: String,
    /// The only SPIFFE ID the server may have.
    #[arg(long, value_name = "ID")]
    server_id: SpiffeId,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("http_client: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let source = args.socket.source().await.map_err(|e| e.to_string())?;
    let config = tls::client_config(source, authorize::id(args.server_id))
        .build()
        .map_err(|e| e.to_string())?;
    let client = net::reqwest_client(config).map_err(|e| e.to_string())?;
    // A refusal in words: what we expected and what the server presented, or what its alert
    // means for our ID.
    let failed = |e: reqwest::Error| {
        let cause = std::error::Error::source(&e).unwrap_or(&e);
        format!(
            "{}: {}",
            args.url,
            net::describe_error(cause, Side::Client, None)
        )
    };
    let response = client.get(&args.url).send().await.map_err(failed)?;
    let response = response.error_for_status().map_err(|e| e.to_string())?;
    let server = net::reqwest_peer(&response).ok_or("the response carries no server identity")?;
    eprintln!("server {server}");
    print!("{}", response.text().await.map_err(failed)?);
    Ok(())
}
