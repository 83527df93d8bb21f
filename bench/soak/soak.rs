//! The soak of issue 18 (`bench/soak/run.sh` runs it; not part of CI): many connections held
//! open, with requests flowing on each, while the embedded dev server rotates SVIDs every
//! second; then thousands of rotations more; and, with `--faults`, the Workload API killed and
//! restarted 20 times (its socket removed and every connection to it cut, back a second
//! later with the same CA, as an agent that restarts), CA rotations with overlap, and one
//! peer revoked mid-run.
//!
//! ```text
//! soak --target http|proxy [--proxy BIN] [--connections N] [--seconds S]
//!      [--rotations R] [--faults]
//! ```
//!
//! - `http`: the crate's `net::HttpServer` in this process (its source from the dev server,
//!   live connections re-checked on every update); each connection is an HTTP/1.1 keep-alive
//!   connection with a `GET /ping` every second.
//! - `proxy`: `BIN proxy server --policy FILE` (TCP mode) in front of an echo backend of this
//!   process; each connection sends a line every second and reads it back.
//!
//! Every workload (this process, the proxy) gets `spiffe://example.org/soak` from the dev
//! server; the peer revoked with `--faults` is `spiffe://partner.org/peer` (a federated trust
//! domain; 1 in 100 connections), revoked at half time (`LiveConnections::revoke` for `http`,
//! the policy file's `revoked` list for `proxy`). A request that fails, or a connection that
//! closes, counts as dropped, unless it is the revoked peer's after its revocation (those
//! must all close). RSS is the server's (this process for `http`, the proxy for `proxy`),
//! read from `/proc/PID/status`. Prints one JSON line at the end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use spiffe_mtls::dev_server::{DevCa, DevServer, DevServerConfig, DevServerOptions, SvidRequest};
use spiffe_mtls::net::{HttpServer, LiveConnections};
use spiffe_mtls::rustls::ClientConfig;
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{StaticSource, WorkloadApiSource, X509Context, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{BundleSet, SvidVerifier, X509Bundle, authorize, net, tls};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ME: &str = "spiffe://example.org/soak";
const PEER: &str = "spiffe://partner.org/peer";
/// One connection in this many is the partner peer's.
const PEER_SHARE: usize = 100;
/// RSS is read at the start, after this many seconds of rotations (buffers and caches
/// settled), and at the end.
const SETTLED_AFTER_SECONDS: u64 = 10;
/// And every this many seconds.
const RSS_EVERY_SECONDS: u64 = 30;

struct Settings {
    target: String,
    proxy: Option<String>,
    connections: usize,
    seconds: u64,
    rotations: usize,
    faults: bool,
}

fn settings() -> Result<Settings, Error> {
    let mut settings = Settings {
        target: String::new(),
        proxy: None,
        connections: 1000,
        seconds: 120,
        rotations: 10_000,
        faults: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--target" => settings.target = value()?,
            "--proxy" => settings.proxy = Some(value()?),
            "--connections" => settings.connections = value()?.parse()?,
            "--seconds" => settings.seconds = value()?.parse()?,
            "--rotations" => settings.rotations = value()?.parse()?,
            "--faults" => settings.faults = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if settings.target != "http" && settings.target != "proxy" {
        return Err("--target http|proxy".into());
    }
    if settings.target == "proxy" && settings.proxy.is_none() {
        return Err("--target proxy needs --proxy BIN (target/release/spiffe-mtls)".into());
    }
    Ok(settings)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(error) = runtime.block_on(run()) {
        eprintln!("soak: {error}");
        std::process::exit(1);
    }
}

/// What every connection task counts.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    peer_closed: AtomicU64,
    peer_open_after_revocation: AtomicU64,
}

/// The server side under test: where to connect, and how to revoke the partner peer.
enum Server {
    Http {
        address: SocketAddr,
        live: LiveConnections,
    },
    Proxy {
        address: SocketAddr,
        child: std::process::Child,
        policy: std::path::PathBuf,
    },
}

impl Server {
    fn address(&self) -> SocketAddr {
        match self {
            Server::Http { address, .. } | Server::Proxy { address, .. } => *address,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Server::Http { .. } => std::process::id(),
            Server::Proxy { child, .. } => child.id(),
        }
    }

    fn revoke_peer(&self) -> Result<(), Error> {
        match self {
            Server::Http { live, .. } => {
                live.revoke(&PEER.parse()?);
            }
            Server::Proxy { policy, .. } => write_policy(policy, true)?,
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Proxy { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write_policy(path: &std::path::Path, revoked: bool) -> Result<(), Error> {
    let revoked = if revoked {
        format!("revoked = [{PEER:?}]\n")
    } else {
        String::new()
    };
    let text = format!("{revoked}[connect]\ntrust_domains = [\"example.org\", \"partner.org\"]\n");
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// The Workload API socket the workloads use: a relay to the dev server's own socket, which
/// can be killed (its socket removed, every relayed connection cut) and restarted.
struct Agent {
    path: std::path::PathBuf,
    upstream: std::path::PathBuf,
    relay: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    fn start(path: std::path::PathBuf, upstream: std::path::PathBuf) -> Result<Self, Error> {
        let mut agent = Self {
            path,
            upstream,
            relay: None,
        };
        agent.restart()?;
        Ok(agent)
    }

    fn is_up(&self) -> bool {
        self.relay.is_some()
    }

    fn kill(&mut self) {
        if let Some(relay) = self.relay.take() {
            // Its connections are tasks of its own set: aborted with it.
            relay.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    fn restart(&mut self) -> Result<(), Error> {
        let listener = tokio::net::UnixListener::bind(&self.path)?;
        let upstream = self.upstream.clone();
        self.relay = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                // Finished relays are reaped as new ones come.
                while connections.try_join_next().is_some() {}
            }
        }));
        Ok(())
    }
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn run() -> Result<(), Error> {
    let settings = settings()?;
    let dir = tempfile::tempdir()?;
    let partner = DevCa::new("partner.org".parse()?, Duration::from_secs(24 * 3600))?;
    let config = DevServerConfig::one_identity(
        "example.org".parse()?,
        ME.parse()?,
        Duration::from_secs(3600),
    )?
    .with_federation("partner.org".parse()?);
    let upstream = dir.path().join("dev.sock");
    let dev = Arc::new(
        DevServer::start(
            config,
            EndpointAddress::Unix(upstream.clone()),
            DevServerOptions::default().with_federated(partner.bundle()),
        )
        .await?,
    );
    // The workloads reach the dev server through a relay that the faults kill and restart.
    let mut agent = Agent::start(dir.path().join("agent.sock"), upstream)?;
    let address = EndpointAddress::Unix(agent.path.clone());
    let source: Arc<dyn X509Source> = Arc::new(WorkloadApiSource::connect(address.clone()).await?);
    // How many updates this process's source took: it must keep following the rotations
    // through the Workload API's restarts.
    let updates = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&updates);
    let mut watch = source.updates();
    tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let server = match settings.target.as_str() {
        "http" => start_http(Arc::clone(&source)).await?,
        _ => {
            start_proxy(
                settings.proxy.as_deref().unwrap_or_default(),
                &address,
                dir.path(),
            )
            .await?
        }
    };
    let own = Arc::new(tls::client_config(Arc::clone(&source), authorize::any()).build()?);
    let peer = Arc::new(peer_config(&partner, &dev)?);

    let counts = Arc::new(Counts::default());
    let revoked = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(settings.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..settings.connections {
        let is_peer = settings.faults && index % PEER_SHARE == PEER_SHARE - 1;
        let config = Arc::clone(if is_peer { &peer } else { &own });
        let stream = connect(&server, config).await?;
        let counts = Arc::clone(&counts);
        let revoked = Arc::clone(&revoked);
        let http = matches!(server, Server::Http { .. });
        // Spread the requests over the second.
        let offset = Duration::from_millis((index as u64 * 997) % 1000);
        tasks.spawn(async move {
            hold(stream, http, offset, deadline, is_peer, &counts, &revoked).await;
        });
    }
    let pid = server.pid();
    let (rss_start, _) = rss_kib(pid);
    eprintln!(
        "soak: {} connections open to {} ({}); rotating SVIDs every second for {} s{}",
        settings.connections,
        settings.target,
        server.address(),
        settings.seconds,
        if settings.faults { ", with faults" } else { "" }
    );

    // The timed phase: a rotation every second; faults on their schedule.
    let started = Instant::now();
    let mut second = 0u64;
    let mut faults = 0;
    let mut rss_settled = rss_start;
    let mut rss_samples = Vec::new();
    while Instant::now() < deadline {
        second += 1;
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        dev.rotate_svids().await;
        if second == SETTLED_AFTER_SECONDS {
            rss_settled = rss_kib(pid).0;
        }
        if second.is_multiple_of(RSS_EVERY_SECONDS) {
            rss_samples.push(rss_kib(pid).0);
        }
        if settings.faults {
            if second.is_multiple_of(5) && faults < 20 {
                // The Workload API is killed: its socket goes, its streams are cut.
                agent.kill();
                faults += 1;
            } else if !agent.is_up() {
                // And restarted a second later, with the same CA (as an agent that restarts).
                agent.restart()?;
            }
            if second % 40 == 20 {
                dev.rotate_ca().await;
            }
            if second == settings.seconds / 2 {
                // Marked first: the peer's tasks may see their connections close at once.
                revoked.store(true, Ordering::SeqCst);
                server.revoke_peer()?;
            }
        }
    }
    let (rss_end, hwm) = rss_kib(pid);
    let updates_during_run = updates.load(Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}

    // Rotations without the timed pace, connections closed: memory must not grow.
    let (rss_before_rotations, _) = rss_kib(pid);
    let rotations_started = Instant::now();
    for _ in 0..settings.rotations {
        dev.rotate_svids().await;
        // Paced so that each rotation reaches the server (a burst would be coalesced).
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rotations_took = rotations_started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_after_rotations, _) = rss_kib(pid);

    let line = serde_json::json!({
        "target": settings.target,
        "faults": settings.faults,
        "connections": settings.connections,
        "seconds": settings.seconds,
        "requests": counts.requests.load(Ordering::Relaxed),
        "failed_requests": counts.failed.load(Ordering::Relaxed),
        "dropped_connections": counts.dropped.load(Ordering::Relaxed),
        "workload_api_outages": faults,
        "source_updates_during_the_run": updates_during_run,
        "revoked_peer_connections_closed": counts.peer_closed.load(Ordering::Relaxed),
        "revoked_peer_connections_left_open": counts.peer_open_after_revocation.load(Ordering::Relaxed),
        "rss_kib_start": rss_start,
        "rss_kib_after_10s": rss_settled,
        "rss_kib_every_30s": rss_samples,
        "rss_kib_end": rss_end,
        "rss_kib_peak": hwm,
        "rotations": settings.rotations,
        "rotations_seconds": rotations_took.as_secs_f64(),
        "rss_kib_before_rotations": rss_before_rotations,
        "rss_kib_after_rotations": rss_after_rotations,
    });
    println!("{line}");
    drop(server);
    Ok(())
}

/// The partner peer's client config: its own SVID (partner.org), the dev server's bundle to
/// verify the server by.
fn peer_config(partner: &DevCa, dev: &DevServer) -> Result<ClientConfig, Error> {
    let svid = partner.issue(&SvidRequest::new(PEER.parse()?, Duration::from_secs(3600)))?;
    let local = X509Bundle::new("example.org".parse()?, dev.roots())?;
    let bundles: BundleSet = [local, partner.bundle()].into_iter().collect();
    let source = StaticSource::new(X509Context::new(vec![svid], bundles)?);
    Ok(tls::client_config(source, authorize::any()).build()?)
}

async fn start_http(source: Arc<dyn X509Source>) -> Result<Server, Error> {
    let config = tls::server_config(Arc::clone(&source), authorize::any())
        .alpn_protocols([b"http/1.1".to_vec()])
        .build()?;
    let live = LiveConnections::new();
    drop(live.recheck_on_changes(source, SvidVerifier::new()?, authorize::any(), None));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let service = tower::service_fn(|_request: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::from("pong\n")))
    });
    let server = HttpServer::new(listener, Arc::new(config))
        .max_handshakes(4096)
        .live_connections(live.clone());
    tokio::spawn(server.serve(service));
    Ok(Server::Http { address, live })
}

async fn start_proxy(
    program: &str,
    workload_api: &EndpointAddress,
    dir: &std::path::Path,
) -> Result<Server, Error> {
    let backend = TcpListener::bind("127.0.0.1:0").await?;
    let backend_address = backend.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = backend.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = tcp.split();
                let _ = tokio::io::copy(&mut tokio::io::BufReader::new(read), &mut write).await;
            });
        }
    });
    let policy = dir.join("policy.toml");
    write_policy(&policy, false)?;
    let mut child = std::process::Command::new(program)
        .args(["proxy", "server", "--listen", "127.0.0.1:0", "--target"])
        .arg(backend_address.to_string())
        .arg("--socket")
        .arg(workload_api.to_string())
        .arg("--policy")
        .arg(&policy)
        .args(["--max-conns", "8192"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        // The audit lines follow; they are read and dropped so the pipe never fills.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && let Some((_, rest)) = line.split_once("listening on ") {
                let address = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(address);
                sent = true;
            }
        }
    });
    let address = rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| "the proxy did not start")?;
    Ok(Server::Proxy {
        address: address.parse()?,
        child,
        policy,
    })
}

/// A connected stream: TLS to the server under test.
type Tls = net::MtlsStream<TcpStream>;

async fn connect(server: &Server, config: Arc<ClientConfig>) -> Result<Tls, Error> {
    let tcp = TcpStream::connect(server.address()).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    Ok(net::connect(config, name, tcp).await?)
}

/// Holds one connection until `deadline`, a request every second from `offset`.
async fn hold(
    stream: Tls,
    http: bool,
    offset: Duration,
    deadline: Instant,
    is_peer: bool,
    counts: &Counts,
    revoked: &AtomicBool,
) {
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let outcome: Result<(), Error> = async {
        if http {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let mut driver = tokio::spawn(connection);
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    return Ok(());
                }
                counts.requests.fetch_add(1, Ordering::Relaxed);
                let request = http::Request::get("/ping").body(Empty::<bytes::Bytes>::new())?;
                let response = tokio::select! {
                    response = sender.send_request(request) => response?,
                    _ = &mut driver => return Err("the connection closed".into()),
                };
                response.into_body().collect().await?;
            }
        } else {
            let (read, mut write) = tokio::io::split(stream);
            let mut lines = tokio::io::BufReader::new(read).lines();
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    return Ok(());
                }
                counts.requests.fetch_add(1, Ordering::Relaxed);
                write.write_all(b"ping\n").await?;
                match lines.next_line().await? {
                    Some(line) if line == "ping" => {}
                    _ => return Err("the connection closed".into()),
                }
            }
        }
    }
    .await;
    match (outcome, is_peer && revoked.load(Ordering::SeqCst)) {
        (Ok(()), true) => {
            counts
                .peer_open_after_revocation
                .fetch_add(1, Ordering::Relaxed);
        }
        (Ok(()), false) => {}
        (Err(_), true) => {
            counts.peer_closed.fetch_add(1, Ordering::Relaxed);
        }
        (Err(error), false) => {
            eprintln!(
                "soak: a {} connection dropped: {error}",
                if is_peer {
                    "revoked peer's (before its revocation)"
                } else {
                    ""
                }
            );
            counts.failed.fetch_add(1, Ordering::Relaxed);
            counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
