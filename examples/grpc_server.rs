//! A tonic gRPC server over SPIFFE mutual TLS: it lets in the SVIDs of the trust domains given
//! by `--allow-td`, and its handler answers with the caller's SPIFFE ID, read from the
//! handshake (never from anything the caller sent).
//!
//! ```text
//! cargo run --example grpc_server -- --socket unix:///tmp/agent.sock --listen 127.0.0.1:50051 --allow-td example.org
//! ```

mod socket_arg;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use spiffe_mtls::net::{self, GrpcConnectInfo};
use spiffe_mtls::{TrustDomain, authorize, tls};
use tonic::{Request, Response, Status};

mod hello {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("hello");
}

use hello::greeter_server::{Greeter, GreeterServer};
use hello::{HelloReply, HelloRequest};

/// A gRPC server that greets each caller by its SPIFFE ID.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    socket: socket_arg::SocketArg,
    /// Where to listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// The trust domains whose workloads may call (repeatable).
    #[arg(long = "allow-td", value_name = "TD", required = true)]
    allow_td: Vec<TrustDomain>,
}

/// The handler: the caller's identity comes from the connection tonic hands over.
struct SpiffeGreeter;

#[tonic::async_trait]
impl Greeter for SpiffeGreeter {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let caller = request
            .extensions()
            .get::<GrpcConnectInfo>()
            .ok_or_else(|| Status::unauthenticated("no verified peer"))?
            .peer()
            .spiffe_id()
            .to_string();
        println!("hello from {caller}");
        let text = request.into_inner().text;
        Ok(Response::new(HelloReply { caller, text }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let source = args.socket.source().await?;
    let config = tls::server_config(source, authorize::member_of(args.allow_td))
        .alpn_protocols([b"h2".to_vec()])
        .build()?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(GreeterServer::new(SpiffeGreeter))
        .serve_with_incoming(net::incoming(listener, Arc::new(config)))
        .await?;
    Ok(())
}
