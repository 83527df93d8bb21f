//! `spiffe-mtls demo`: mutual TLS between two workloads while their SVIDs rotate.
//!
//! Starts the embedded dev server on a temporary socket, an mTLS echo server and a client with
//! different SPIFFE IDs (each with its own Workload API source), sends requests for a while
//! (one new connection each, so every request is a full handshake) as the SVIDs rotate, shows
//! each rotation, then shows a client with an unauthorized ID refused, and prints a summary.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::net::{accept, connect};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{WorkloadApiSource, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{authorize, tls};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SERVER: &str = "spiffe://example.org/demo/echo-server";
const CLIENT: &str = "spiffe://example.org/demo/client";
const ROGUE: &str = "spiffe://example.org/demo/rogue";

/// Options of the demo.
#[derive(clap::Args)]
pub struct Args {
    /// How long to send requests.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = spiffe_mtls::dev_server::parse_duration)]
    duration: Duration,
    /// SVID lifetime; the dev server rotates each SVID at half of it.
    #[arg(long, value_name = "DURATION", default_value = "6s", value_parser = spiffe_mtls::dev_server::parse_duration)]
    svid_ttl: Duration,
}

/// Runs the demo: exit 0 when no request failed, SVIDs rotated and the rogue was refused.
pub fn run(args: &Args) -> ExitCode {
    crate::runtime(demo(args.duration, args.svid_ttl))
}

fn entries(svid_ttl: Duration) -> Result<DevServerConfig, String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot read this process's uid: {e}"))?;
    let ttl = humantime::format_duration(svid_ttl);
    let entry = |id: &str, hint: &str| {
        format!(
            "[[entry]]\nspiffe_id = \"{id}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"{hint}\"\nttl = \"{ttl}\"\n"
        )
    };
    let text = format!(
        "trust_domain = \"example.org\"\n{}{}{}",
        entry(SERVER, "server"),
        entry(CLIENT, "client"),
        entry(ROGUE, "rogue")
    );
    DevServerConfig::from_toml(&text).map_err(|e| e.to_string())
}

fn described(source: &WorkloadApiSource, hint: &str) -> String {
    match source.x509_context() {
        Ok(context) => match context.svid_by_hint(hint) {
            Some(svid) => format!(
                "{} serial={} expires={}",
                svid.spiffe_id(),
                crate::fetch::serial(svid),
                crate::fetch::rfc3339(svid.expires_at())
            ),
            None => format!("no SVID with hint {hint}"),
        },
        Err(error) => error.to_string(),
    }
}

/// Prints a line each time `hint`'s SVID changes in `source`; counts the rotations.
fn show_rotations(
    source: Arc<WorkloadApiSource>,
    hint: &'static str,
    started: Instant,
    count: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        let mut updates = source.updates();
        let mut last = described(&source, hint);
        while updates.changed().await.is_ok() {
            let now = described(&source, hint);
            if now != last {
                count.fetch_add(1, Ordering::Relaxed);
                println!(
                    "[{:>5.1}s] rotation: {hint:<6} now {now}",
                    started.elapsed().as_secs_f64()
                );
                last = now;
            }
        }
    });
}

/// The echo server: one line in, the same line out, per connection.
fn serve_echo(listener: TcpListener, config: Arc<spiffe_mtls::rustls::ServerConfig>) {
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = Arc::clone(&config);
            tokio::spawn(async move {
                let Ok(stream) = accept(config, tcp).await else {
                    return;
                };
                let peer = stream.peer().clone();
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                if stream.read_line(&mut line).await.is_ok() {
                    let reply = format!("{peer} said: {line}");
                    let _ = stream.get_mut().write_all(reply.as_bytes()).await;
                }
            });
        }
    });
}

/// One request on a new connection; the reply or why it failed.
async fn request(
    config: &Arc<spiffe_mtls::rustls::ClientConfig>,
    address: std::net::SocketAddr,
    text: &str,
) -> Result<String, String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(address.ip().into());
    let stream = connect(Arc::clone(config), name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(format!("{text}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    match stream.read_line(&mut reply).await {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(_) => Ok(reply.trim_end().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

async fn demo(duration: Duration, svid_ttl: Duration) -> Result<(), String> {
    let dir = tempfile_dir()?;
    let address = EndpointAddress::Unix(dir.join("agent.sock"));
    let dev = DevServer::start(
        entries(svid_ttl)?,
        address.clone(),
        DevServerOptions::default(),
    )
    .await
    .map_err(|e| format!("dev server: {e}"))?;
    let result = exchange(&address, duration, svid_ttl).await;
    dev.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn exchange(
    address: &EndpointAddress,
    duration: Duration,
    svid_ttl: Duration,
) -> Result<(), String> {
    println!(
        "dev server (trust domain example.org) on {address}; SVIDs live {}, rotate at half",
        humantime::format_duration(svid_ttl)
    );
    let connect_source = || async {
        WorkloadApiSource::connect(address.clone())
            .await
            .map(Arc::new)
            .map_err(|e| format!("Workload API source: {e}"))
    };
    let server_source = connect_source().await?;
    let client_source = connect_source().await?;
    println!("echo server is {}", described(&server_source, "server"));
    println!("client      is {}", described(&client_source, "client"));

    let server_config =
        tls::server_config(Arc::clone(&server_source), authorize::id(parse(CLIENT)?))
            .svid_hint("server")
            .build()
            .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let echo = listener.local_addr().map_err(|e| e.to_string())?;
    serve_echo(listener, Arc::new(server_config));
    println!("echo server on {echo}: lets in {CLIENT} only\n");

    let started = Instant::now();
    let rotations = Arc::new(AtomicU64::new(0));
    show_rotations(
        Arc::clone(&server_source),
        "server",
        started,
        Arc::clone(&rotations),
    );
    show_rotations(
        Arc::clone(&client_source),
        "client",
        started,
        Arc::clone(&rotations),
    );

    let client_config = Arc::new(
        tls::client_config(Arc::clone(&client_source), authorize::id(parse(SERVER)?))
            .svid_hint("client")
            .build()
            .map_err(|e| e.to_string())?,
    );
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut next_report = Duration::from_secs(2);
    while started.elapsed() < duration {
        sent += 1;
        match request(&client_config, echo, &format!("hello #{sent}")).await {
            Ok(reply) if reply.ends_with(&format!("hello #{sent}")) => {}
            Ok(reply) => {
                failed += 1;
                println!("request #{sent}: unexpected reply {reply:?}");
            }
            Err(error) => {
                failed += 1;
                println!("request #{sent} FAILED: {error}");
            }
        }
        if started.elapsed() >= next_report {
            println!(
                "[{:>5.1}s] {sent} requests, {failed} failed",
                started.elapsed().as_secs_f64()
            );
            next_report += Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!("\nnow a client with an ID the echo server does not allow: {ROGUE}");
    let rogue_config = Arc::new(
        tls::client_config(Arc::clone(&client_source), authorize::id(parse(SERVER)?))
            .svid_hint("rogue")
            .build()
            .map_err(|e| e.to_string())?,
    );
    let refused = match request(&rogue_config, echo, "let me in").await {
        Ok(reply) => {
            println!("NOT refused: {reply}");
            false
        }
        Err(error) => {
            println!("refused: {error}");
            true
        }
    };
    let rotations = rotations.load(Ordering::Relaxed);
    let ok = failed == 0 && refused && rotations > 0;
    println!(
        "\nsummary: {sent} requests in {:.1}s, {failed} failed, {rotations} SVID rotations, unauthorized client refused: {refused}",
        started.elapsed().as_secs_f64()
    );
    if ok {
        println!("{NEXT_STEPS}");
        Ok(())
    } else {
        Err("the demo did not go as expected".into())
    }
}

/// Printed after a successful demo: one next step per kind of reader.
const NEXT_STEPS: &str = "\nwhat to try next (after `cargo install --path .`):
  agents:   cargo run --example agents_demo                  two A2A agents over SPIFFE mTLS
  services: spiffe-mtls proxy server --help                  any TCP or HTTP service behind mTLS
  library:  the README's \"Mutual TLS in ten lines\"          rustls configs that rotate by themselves";

fn parse(id: &str) -> Result<spiffe_mtls::SpiffeId, String> {
    id.parse().map_err(|e| format!("{id}: {e}"))
}

/// A private directory for the socket (created 0700; refused if another user made it first).
fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("spiffe-mtls-demo-{}", std::process::id()));
    spiffe_mtls::dev_server::ensure_private_dir(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
