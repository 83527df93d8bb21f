//! A tonic gRPC client over SPIFFE mutual TLS: it presents its SVID, accepts only the server
//! whose SPIFFE ID is `--server-id` (the handshake fails before any call otherwise), and
//! prints the identity the server saw.
//!
//! ```text
//! cargo run --example grpc_client -- --socket unix:///tmp/agent.sock --server https://127.0.0.1:50051 --server-id spiffe://example.org/server
//! ```

mod socket_arg;

use clap::Parser;
use spiffe_mtls::{SpiffeId, authorize, net, tls};

mod hello {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("hello");
}

use hello::HelloRequest;
use hello::greeter_client::GreeterClient;

/// Calls the greeter once and prints the caller ID the server verified.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    socket: socket_arg::SocketArg,
    /// The server: https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The only SPIFFE ID the server may have.
    #[arg(long, value_name = "ID")]
    server_id: SpiffeId,
    /// What to send.
    #[arg(long, default_value = "hello")]
    text: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let source = args.socket.source().await?;
    let config = tls::client_config(source, authorize::id(args.server_id)).build()?;
    let channel = net::grpc_channel(&args.server, &config).await?;
    let reply = GreeterClient::new(channel)
        .hello(HelloRequest { text: args.text })
        .await?
        .into_inner();
    println!("server saw {}: {}", reply.caller, reply.text);
    Ok(())
}
