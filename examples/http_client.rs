//! An HTTPS client over SPIFFE mutual TLS with reqwest (the `reqwest` feature): it presents
//! its SVID, accepts only the server whose SPIFFE ID is `--server-id` (the handshake fails
//! before the request is sent otherwise), and prints the server's ID and the body.
//!
//! ```text
//! cargo run --example http_client -- --socket unix:///tmp/agent.sock --url https://127.0.0.1:8443/ --server-id spiffe://example.org/server
//! ```

mod socket_arg;

use clap::Parser;
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let source = args.socket.source().await?;
    let config = tls::client_config(source, authorize::id(args.server_id)).build()?;
    let client = net::reqwest_client(config)?;
    let response = client.get(&args.url).send().await?.error_for_status()?;
    let server = net::reqwest_peer(&response).ok_or("the response carries no server identity")?;
    eprintln!("server {server}");
    print!("{}", response.text().await?);
    Ok(())
}
