//! An HTTPS service over SPIFFE mutual TLS that reads its SVID and bundles from files instead
//! of a Workload API: the directory `spiffe-mtls fetch --write DIR` (or `spire-agent api fetch
//! x509 -write DIR`) fills, or spiffe-helper's file names with `--layout spiffe-helper`. The
//! files are watched: when the writer rotates them, the next handshake uses the new ones.
//!
//! ```text
//! spiffe-mtls fetch --socket unix:///tmp/agent.sock --write /tmp/svids
//! cargo run --example file_service -- --dir /tmp/svids --listen 127.0.0.1:8443 --allow-td example.org
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use clap::{Parser, ValueEnum};
use spiffe_mtls::net::{self, PeerIdentity};
use spiffe_mtls::source::{FilePaths, FileSource};
use spiffe_mtls::{TrustDomain, authorize, tls};

/// Which file names the directory holds.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Layout {
    /// `svid.0.pem`, `svid.0.key`, `bundle.0.pem`, `federated_bundle.0.td.<TD>.pem`.
    Fetch,
    /// `svid.pem`, `svid_key.pem`, `svid_bundle.pem`.
    SpiffeHelper,
}

/// Serves `GET /` to the workloads of the allowed trust domains, greeting each by its ID.
#[derive(Parser, Debug)]
struct Args {
    /// The directory of SVID and bundle files.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Its file names.
    #[arg(long, value_enum, default_value = "fetch")]
    layout: Layout,
    /// Where to listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The trust domains whose workloads may call (repeatable).
    #[arg(long = "allow-td", value_name = "TD", required = true)]
    allow_td: Vec<TrustDomain>,
}

async fn hello(Extension(peer): Extension<PeerIdentity>) -> String {
    format!("hello {peer}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let paths = match args.layout {
        Layout::Fetch => FilePaths::fetch_layout(&args.dir),
        Layout::SpiffeHelper => FilePaths::spiffe_helper(&args.dir),
    };
    let source = FileSource::open(paths)?;
    let config = tls::server_config(source, authorize::member_of(args.allow_td))
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = Router::new().route("/", get(hello));
    net::serve_http(listener, Arc::new(config), app).await?;
    Ok(())
}
