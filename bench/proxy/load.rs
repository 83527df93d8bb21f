//! The load client and backend of the proxy benchmark (`bench/proxy/run.sh`): one cheap Rust
//! client (rustls, one thread) drives every contender the same way.
//!
//! ```text
//! proxy_bench backend ADDR
//!     A backend on ADDR: per connection, command `P` answers `pong\n` (and waits for the
//!     next command); `B` + 8-byte little-endian N sends N bytes, then closes.
//! proxy_bench handshakes TARGET (--certs DIR | --untrusted DIR | --plain) --conns N
//!     --seconds S [--pid PID]...
//!     N clients loop for S seconds: connect, full mTLS handshake (no resumption), send `P`,
//!     read `pong\n`. Only handshakes that got the reply count as completed (a refused TLS 1.3
//!     client can finish its side of the handshake; the reply proves the server let it in).
//!     With --pid, also the CPU time (user + system) those processes spent per completed
//!     handshake, from /proc/PID/stat. Prints one JSON line.
//! proxy_bench bulk TARGET (--certs DIR | --plain) --bytes N [--repeat K] [--pid PID]...
//!     K times: a new connection asks for N bytes and reads them, timed from the request to
//!     the last byte; prints the median (and extreme) MB/s (10^6 bytes) as JSON, and with
//!     --pid the CPU time those processes spent per transfer.
//! ```
//!
//! `--certs DIR` is a `spiffe-mtls fetch --write` directory (the client's SVID and bundle);
//! `--untrusted DIR` presents an SVID of another CA (the refused-certificate control) and
//! verifies the server by DIR's bundle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::rustls::ClientConfig;
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{FilePaths, FileSource, StaticSource, X509Context};
use spiffe_mtls::{BundleSet, X509Bundle, authorize, net, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(error) = runtime.block_on(run(&args)) {
        eprintln!("proxy_bench: {error}");
        std::process::exit(1);
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn flags<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

async fn run(args: &[String]) -> Result<(), Error> {
    match args.first().map(String::as_str) {
        Some("backend") => backend(args.get(1).ok_or("backend ADDR")?).await,
        Some("handshakes") => handshakes(args).await,
        Some("bulk") => bulk(args).await,
        _ => Err("usage: proxy_bench backend|handshakes|bulk ...".into()),
    }
}

async fn backend(address: &str) -> Result<(), Error> {
    let listener = TcpListener::bind(address).await?;
    println!("listening on {}", listener.local_addr()?);
    let zeros: Arc<[u8]> = vec![0u8; 1 << 20].into();
    loop {
        let (mut stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let zeros = Arc::clone(&zeros);
        // Backend load is the same for every contender.
        tokio::spawn(async move {
            let mut command = [0u8; 1];
            while stream.read_exact(&mut command).await.is_ok() {
                match command[0] {
                    b'P' => {
                        if stream.write_all(b"pong\n").await.is_err() {
                            return;
                        }
                    }
                    b'B' => {
                        let mut n = [0u8; 8];
                        if stream.read_exact(&mut n).await.is_err() {
                            return;
                        }
                        let mut left = u64::from_le_bytes(n);
                        while left > 0 {
                            let chunk = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(0);
                            if stream.write_all(&zeros[..chunk]).await.is_err() {
                                return;
                            }
                            left -= chunk as u64;
                        }
                        let _ = stream.shutdown().await;
                        return;
                    }
                    _ => return,
                }
            }
        });
    }
}

/// The client config: `--certs DIR`, `--untrusted DIR`, or `None` for `--plain`.
fn config(args: &[String]) -> Result<Option<Arc<ClientConfig>>, Error> {
    let server = authorize::member_of(["example.org".parse()?]);
    if let Some(dir) = flag(args, "--certs") {
        let source = FileSource::open(FilePaths::fetch_layout(dir))?;
        return Ok(Some(Arc::new(tls::client_config(source, server).build()?)));
    }
    if let Some(dir) = flag(args, "--untrusted") {
        let ca = DevCa::new("example.org".parse()?, Duration::from_secs(3600))?;
        let svid = ca.issue(&SvidRequest::new(
            "spiffe://example.org/client".parse()?,
            Duration::from_secs(600),
        ))?;
        let pem = std::fs::read(std::path::Path::new(dir).join("bundle.0.pem"))?;
        let bundle = X509Bundle::parse("example.org".parse()?, &pem)?;
        let bundles: BundleSet = [bundle].into_iter().collect();
        let source = StaticSource::new(X509Context::new(vec![svid], bundles)?);
        return Ok(Some(Arc::new(tls::client_config(source, server).build()?)));
    }
    if args.iter().any(|a| a == "--plain") {
        return Ok(None);
    }
    Err("give --certs DIR, --untrusted DIR or --plain".into())
}

fn target(args: &[String]) -> Result<SocketAddr, Error> {
    Ok(args.get(1).ok_or("TARGET")?.parse()?)
}

/// Clock ticks (user + system) of `pid` so far.
fn cpu_ticks(pid: &str) -> Result<u64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').ok_or("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let utime: u64 = fields.get(11).ok_or("bad stat")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("bad stat")?.parse()?;
    Ok(utime + stime)
}

/// One exchange: connect, handshake, `P`, `pong\n`.
async fn once(target: SocketAddr, config: Option<&Arc<ClientConfig>>) -> Result<(), Error> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let mut reply = [0u8; 5];
    match config {
        None => {
            let mut tcp = tcp;
            tcp.write_all(b"P").await?;
            tcp.read_exact(&mut reply).await?;
        }
        Some(config) => {
            let name = ServerName::IpAddress(target.ip().into());
            let mut stream = net::connect(Arc::clone(config), name, tcp).await?;
            stream.write_all(b"P").await?;
            stream.read_exact(&mut reply).await?;
        }
    }
    if &reply != b"pong\n" {
        return Err("unexpected reply".into());
    }
    Ok(())
}

async fn handshakes(args: &[String]) -> Result<(), Error> {
    let target = target(args)?;
    let config = config(args)?;
    let conns: usize = flag(args, "--conns").unwrap_or("1").parse()?;
    let seconds: f64 = flag(args, "--seconds").unwrap_or("3").parse()?;
    let pids = flags(args, "--pid");
    let ticks_per_second: f64 = flag(args, "--clk-tck").unwrap_or("100").parse()?;
    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu_before: u64 = pids.iter().map(|p| cpu_ticks(p)).sum::<Result<u64, _>>()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns.max(1) {
        let (config, completed, failed) =
            (config.clone(), Arc::clone(&completed), Arc::clone(&failed));
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let result =
                    tokio::time::timeout(Duration::from_secs(5), once(target, config.as_ref()))
                        .await;
                match result {
                    Ok(Ok(())) => completed.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after: u64 = pids.iter().map(|p| cpu_ticks(p)).sum::<Result<u64, _>>()?;
    let completed = completed.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    let cpu_seconds = (cpu_after - cpu_before) as f64 / ticks_per_second;
    let cpu_ms = if completed > 0 && !pids.is_empty() {
        format!("{:.3}", cpu_seconds * 1e3 / completed as f64)
    } else {
        "null".to_owned()
    };
    println!(
        "{{\"conns\":{conns},\"completed\":{completed},\"failed\":{failed},\"seconds\":{elapsed:.2},\"per_second\":{:.0},\"server_cpu_seconds\":{cpu_seconds:.2},\"server_cpu_ms_per_handshake\":{cpu_ms}}}",
        completed as f64 / elapsed
    );
    Ok(())
}

async fn bulk(args: &[String]) -> Result<(), Error> {
    let target = target(args)?;
    let config = config(args)?;
    let bytes: u64 = flag(args, "--bytes").unwrap_or("67108864").parse()?;
    let repeat: usize = flag(args, "--repeat").unwrap_or("1").parse()?;
    let pids = flags(args, "--pid");
    let ticks_per_second: f64 = flag(args, "--clk-tck").unwrap_or("100").parse()?;
    let mut rates = Vec::new();
    let mut cpu_ticks_total = 0u64;
    for _ in 0..repeat.max(1) {
        let (seconds, ticks) = transfer(target, config.as_ref(), bytes, &pids).await?;
        rates.push(bytes as f64 / seconds / 1e6);
        cpu_ticks_total += ticks;
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let cpu_seconds = cpu_ticks_total as f64 / ticks_per_second / rates.len() as f64;
    println!(
        "{{\"bytes\":{bytes},\"transfers\":{},\"mb_per_s\":{median:.0},\"min_mb_per_s\":{:.0},\"max_mb_per_s\":{:.0},\"server_cpu_seconds\":{cpu_seconds:.3}}}",
        rates.len(),
        rates[0],
        rates[rates.len() - 1]
    );
    Ok(())
}

/// One transfer of `bytes` on a new connection, timed from the request (after the
/// handshake) to the last byte; also the CPU ticks of `pids` meanwhile.
async fn transfer(
    target: SocketAddr,
    config: Option<&Arc<ClientConfig>>,
    bytes: u64,
    pids: &[&str],
) -> Result<(f64, u64), Error> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let mut command = vec![b'B'];
    command.extend_from_slice(&bytes.to_le_bytes());
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    let cpu_before: u64;
    let started;
    match config {
        None => {
            let mut tcp = tcp;
            cpu_before = pids.iter().map(|p| cpu_ticks(p)).sum::<Result<u64, _>>()?;
            started = Instant::now();
            tcp.write_all(&command).await?;
            while received < bytes {
                let n = tcp.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                received += n as u64;
            }
        }
        Some(config) => {
            let name = ServerName::IpAddress(target.ip().into());
            // rustls reads the socket 4 KiB at a time; a buffer under it makes that one
            // large read per 256 KiB, so the client's own cost hides less of the server's.
            let tcp = tokio::io::BufReader::with_capacity(256 * 1024, tcp);
            let mut stream = net::connect(Arc::clone(config), name, tcp).await?;
            cpu_before = pids.iter().map(|p| cpu_ticks(p)).sum::<Result<u64, _>>()?;
            started = Instant::now();
            stream.write_all(&command).await?;
            while received < bytes {
                let n = stream.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                received += n as u64;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after: u64 = pids.iter().map(|p| cpu_ticks(p)).sum::<Result<u64, _>>()?;
    if received != bytes {
        return Err(format!("received {received} of {bytes} bytes").into());
    }
    Ok((seconds, cpu_after.saturating_sub(cpu_before)))
}
