//! A tonic gRPC client over SPIFFE mutual TLS: it presents its SVID, accepts only the server
//! whose SPIFFE ID is `--server-id` (the handshake fails before any call otherwise), and
//! prints the identity the server saw.
//!
//! ```text
//! cargo run --example grpc_client -- --socket unix:///tmp/agent.sock --server https://127.0.0.1:50051 --server-id spiffe://example.org/server
//! ```

mod socket_arg;

use clap::Parser;
use spiffe_mtls::tls::Side;
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
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("grpc_client: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let source = args.socket.source().await.map_err(|e| e.to_string())?;
    let config = tls::client_config(source, authorize::id(args.server_id))
        .build()
        .map_err(|e| e.to_string())?;
    // A refused server: "cannot connect to URL: the server is not authorized: expected ...,
    // presented ...".
    let channel = net::grpc_channel(&args.server, &config)
        .await
        .map_err(|e| e.to_string())?;
    // A server that refuses our certificate after the handshake fails the call: its causes
    // say why.
    let reply = GreeterClient::new(channel)
        .hello(HelloRequest { text: args.text })
        .await
        .map_err(|status| match std::error::Error::source(&status) {
            Some(cause) => format!(
                "the call failed: {}",
                net::describe_error(cause, Side::Client, None)
            ),
            None => format!("the call failed: {status}"),
        })?
        .into_inner();
    println!("server saw {}: {}", reply.caller, reply.text);
    Ok(())
}
