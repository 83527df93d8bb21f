//! The dev server against hostile local clients and unsafe setups: HPACK bombs and malformed
//! header blocks through the `:authority` shim, socket directory and file permissions, TCP
//! beyond loopback, entries without selectors, and attestation over TCP. Each attack has its
//! good twin: the server keeps serving a normal client, the safe setup works.
#![cfg(all(
    unix,
    feature = "cli",
    feature = "dev-server",
    feature = "workload-api",
    feature = "grpc"
))]

mod common;

use common::my_uid;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spiffe_mtls::dev_server::{
    DevServer, DevServerConfig, DevServerError, DevServerOptions, Entry, Selector,
    ensure_private_dir,
};
use spiffe_mtls::workload::proto::{X509svidRequest, X509svidResponse};
use spiffe_mtls::workload::{EndpointAddress, WorkloadClient, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::{Code, Streaming};

const BIN: &str = env!("CARGO_BIN_EXE_spiffe-mtls");
const ID: &str = "spiffe://example.org/agent/server";
const RSS_LIMIT_KB: u64 = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// harness

/// Panics anywhere in this test process (the server runs in it), counted by a hook.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn one_identity() -> DevServerConfig {
    DevServerConfig::one_identity(
        "example.org".parse().unwrap(),
        ID.parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap()
}

async fn start_in(dir: &Path, options: DevServerOptions) -> DevServer {
    DevServer::start(
        one_identity(),
        EndpointAddress::Unix(dir.join("agent.sock")),
        options,
    )
    .await
    .unwrap()
}

async fn open_stream(
    address: &EndpointAddress,
) -> Result<Streaming<X509svidResponse>, tonic::Status> {
    Ok(WorkloadClient::connect(address)
        .await
        .unwrap()
        .into_raw()
        .fetch_x509svid(request(X509svidRequest {}))
        .await?
        .into_inner())
}

/// A normal Workload API client fetches its SVID.
async fn fetch_svid(address: &EndpointAddress) -> String {
    let mut stream = open_stream(address).await.expect("stream opened");
    let response = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a response within 5 s")
        .expect("no error")
        .expect("a message");
    response.svids[0].spiffe_id.clone()
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// The client preface and an empty SETTINGS frame.
fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, b""));
    out
}

/// An HPACK integer with an `n`-bit prefix, `flags` in the first byte's other bits.
fn hpack_integer(flags: u8, n: u32, mut value: usize) -> Vec<u8> {
    let max = (1usize << n) - 1;
    if value < max {
        return vec![flags | value as u8];
    }
    let mut out = vec![flags | max as u8];
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
    out
}

/// A literal field with incremental indexing (enters the dynamic table).
fn indexed_literal(name: &[u8], value_len: usize) -> Vec<u8> {
    let mut out = vec![0x40];
    out.extend(hpack_integer(0, 7, name.len()));
    out.extend_from_slice(name);
    out.extend(hpack_integer(0, 7, value_len));
    out.extend(std::iter::repeat_n(b'a', value_len));
    out
}

/// A header block in a HEADERS frame and as many CONTINUATION frames as 16 KiB frames need.
fn header_block(stream: u32, block: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let flags = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        out.extend(frame(kind, flags, stream, chunk));
    }
    out
}

/// Sends `bytes` on a raw connection and waits until the server closes it (end of file or a
/// reset); panics when it stays open 5 s.
async fn send_and_expect_close(path: &Path, bytes: Vec<u8>) {
    let stream = UnixStream::connect(path).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // the server may close before everything is written: write errors are expected
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        write
    });
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    let _ = writer.await;
}

/// The resident set size of this process, and its peak so far, in KiB.
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Samples VmRSS every 5 ms while `work` runs; returns the highest sample.
async fn max_rss_during(work: impl std::future::Future<Output = ()>) -> u64 {
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let max = std::sync::Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, max) = (done.clone(), max.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                max.fetch_max(rss_kb().0, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    work.await;
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    max.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// 1. the :authority shim

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpack_bomb_closes_its_connection_and_memory_stays_bounded() {
    count_panics();
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), DevServerOptions::default()).await;
    let EndpointAddress::Unix(path) = server.address().clone() else {
        unreachable!()
    };
    // a client already streaming before the attack
    let mut bystander = open_stream(server.address()).await.unwrap();
    bystander.message().await.unwrap().unwrap();
    let (rss_before, _) = rss_kb();
    let started = Instant::now();

    let peak = max_rss_during(async {
        // As reported: a table size update to 2 MiB, a 1 MiB literal entering the dynamic
        // table, then a block referencing it 3,000 times; eight connections at once.
        let mut reported = preface();
        let mut block = hpack_integer(0x20, 5, 2 << 20);
        block.extend(indexed_literal(b"x-bomb", 1 << 20));
        reported.extend(header_block(1, &block));
        reported.extend(header_block(3, &[0x80 | 62; 3000]));
        // Within the caps: the largest entry the 4096-byte table keeps (4,000 bytes), then
        // 3,000 references (12 MB if expanded), and 300 (1.2 MB, over the 16 KiB list cap).
        let capped = |references: usize| {
            let mut bytes = preface();
            bytes.extend(header_block(1, &indexed_literal(b"x-bomb", 4000)));
            bytes.extend(header_block(3, &vec![0x80 | 62; references]));
            bytes
        };
        let mut attacks = Vec::new();
        for i in 0..8 {
            let bytes = match i % 3 {
                0 => reported.clone(),
                1 => capped(3000),
                _ => capped(300),
            };
            let path = path.clone();
            attacks.push(tokio::spawn(async move {
                send_and_expect_close(&path, bytes).await;
            }));
        }
        for attack in attacks {
            attack.await.unwrap();
        }
    })
    .await;
    let (rss_after, high_water) = rss_kb();
    eprintln!(
        "RSS before {rss_before} KiB, peak sampled {peak} KiB, after {rss_after} KiB, \
         high-water mark {high_water} KiB; attacks closed in {:?}",
        started.elapsed()
    );
    assert!(peak < RSS_LIMIT_KB, "RSS reached {peak} KiB");
    assert!(high_water < RSS_LIMIT_KB, "RSS high-water {high_water} KiB");
    assert!(started.elapsed() < Duration::from_secs(5));

    // the good twin: the server still serves, new clients and the stream opened before
    assert_eq!(fetch_svid(server.address()).await, ID);
    server.rotate_svids().await;
    let pushed = tokio::time::timeout(Duration::from_secs(5), bystander.message())
        .await
        .expect("a push within 5 s");
    assert!(matches!(pushed, Ok(Some(_))), "{pushed:?}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic happened");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_table_size_update_closes_its_connection_without_a_panic() {
    count_panics();
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), DevServerOptions::default()).await;
    let EndpointAddress::Unix(path) = server.address().clone() else {
        unreachable!()
    };
    for block in [
        &[0x3f][..],
        &[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x3f, 0xe1],
    ] {
        let mut bytes = preface();
        bytes.extend(frame(HEADERS, END_HEADERS, 1, block));
        send_and_expect_close(&path, bytes).await;
    }
    // a CONTINUATION flood and a frame over 16 KiB are refused too
    let mut flood = preface();
    flood.extend(frame(HEADERS, 0, 1, &[0x82]));
    for _ in 0..1000 {
        flood.extend(frame(CONTINUATION, 0, 1, b""));
    }
    send_and_expect_close(&path, flood).await;
    let mut oversized = preface();
    oversized.extend(frame(0x0, 0, 1, &vec![0; 1 << 20]));
    send_and_expect_close(&path, oversized).await;

    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic happened");
    assert_eq!(fetch_svid(server.address()).await, ID);
    server.shutdown().await;
}

#[test]
fn the_fuzzing_entry_point_refuses_the_same_inputs() {
    let mut bytes = preface();
    bytes.extend(frame(HEADERS, END_HEADERS, 1, &[0x3f]));
    let error = spiffe_mtls::dev_server::rewrite_client_bytes(&bytes).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        error.to_string().contains("incomplete HPACK integer"),
        "{error}"
    );
    // good twin: a request with a socket path as :authority is rewritten, not refused
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.push(0x01); // :authority, literal without indexing, name index 1
    block.extend(hpack_integer(0, 7, 16));
    block.extend_from_slice(b"tmp%2Fagent.sock");
    let mut good = preface();
    good.extend(frame(HEADERS, END_HEADERS, 1, &block));
    let out = spiffe_mtls::dev_server::rewrite_client_bytes(&good).unwrap();
    assert!(out.windows(9).any(|w| w == b"localhost"));
    assert!(!out.windows(16).any(|w| w == b"tmp%2Fagent.sock"));
}

// ---------------------------------------------------------------------------------------------
// 2. sockets, TCP, entries, attestation

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_socket_file_is_0600_unless_another_mode_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), DevServerOptions::default()).await;
    assert_eq!(mode_of(&dir.path().join("agent.sock")), 0o600);
    server.shutdown().await;
    let server = start_in(
        dir.path(),
        DevServerOptions::default().with_socket_mode(0o660),
    )
    .await;
    assert_eq!(mode_of(&dir.path().join("agent.sock")), 0o660);
    assert_eq!(fetch_svid(server.address()).await, ID);
    server.shutdown().await;
    let bad = DevServer::start(
        one_identity(),
        EndpointAddress::Unix(dir.path().join("agent.sock")),
        DevServerOptions::default().with_socket_mode(0o4777),
    )
    .await;
    assert!(
        matches!(bad, Err(DevServerError::SocketMode(0o4777))),
        "{bad:?}"
    );
}

#[tokio::test]
async fn missing_parents_are_created_private_existing_ones_left_alone() {
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = base.path().join("a/b/agent.sock");
    let server = DevServer::start(
        one_identity(),
        EndpointAddress::Unix(socket.clone()),
        DevServerOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(mode_of(&base.path().join("a")), 0o700);
    assert_eq!(mode_of(&base.path().join("a/b")), 0o700);
    assert_eq!(
        mode_of(base.path()),
        0o755,
        "an existing directory is not changed"
    );
    assert_eq!(mode_of(&socket), 0o600);
    server.shutdown().await;
}

#[test]
fn the_default_socket_dir_is_created_private_or_refused() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("spiffe-mtls");
    ensure_private_dir(&dir).unwrap();
    assert_eq!(mode_of(&dir), 0o700);
    ensure_private_dir(&dir).expect("accepted again");

    let loose = base.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = ensure_private_dir(&loose).unwrap_err().to_string();
    assert!(error.contains("has mode 0755"), "{error}");
    assert!(error.contains(&loose.display().to_string()), "{error}");
}

#[test]
fn a_socket_dir_owned_by_another_user_is_refused() {
    if my_uid() != 0 {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("spiffe-mtls");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let error = ensure_private_dir(&dir).unwrap_err().to_string();
    assert!(
        error.contains("is owned by uid 65534, not by this user (uid 0)"),
        "{error}"
    );
}

#[tokio::test]
async fn tcp_beyond_loopback_is_refused_without_the_option() {
    let anywhere: EndpointAddress = "tcp://0.0.0.0:0".parse().unwrap();
    let refused = DevServer::start(
        one_identity(),
        anywhere.clone(),
        DevServerOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, DevServerError::RemoteTcp { .. }),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .starts_with("refusing to listen on 0.0.0.0:0: not a loopback address"),
        "{refused}"
    );
    let allowed = DevServerOptions::default().with_allow_remote_tcp(true);
    let v6_any: EndpointAddress = "tcp://[::]:0".parse().unwrap();
    for address in [&anywhere, &v6_any] {
        assert!(DevServerOptions::default().check_address(address).is_err());
        // checked only at the option level: nothing is bound beyond loopback in tests
        assert!(allowed.check_address(address).is_ok());
    }
    for loopback in ["tcp://127.0.0.1:0", "tcp://[::1]:0", "tcp://127.0.0.2:0"] {
        let address = loopback.parse().unwrap();
        assert!(DevServerOptions::default().check_address(&address).is_ok());
    }
}

#[tokio::test]
async fn tcp_callers_are_attested_by_the_owner_of_their_socket() {
    let entries = |uid: u32| {
        DevServerConfig::from_toml(&format!(
            "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"{ID}\"\nselectors = [\"unix:uid:{uid}\"]\n"
        ))
        .unwrap()
    };
    let tcp = "tcp://127.0.0.1:0".parse().unwrap();
    let mine = DevServer::start(entries(my_uid()), tcp, DevServerOptions::default())
        .await
        .unwrap();
    assert_eq!(fetch_svid(mine.address()).await, ID);
    mine.shutdown().await;
    // the twin: an entry for another uid matches no TCP caller of ours
    let tcp = "tcp://127.0.0.1:0".parse().unwrap();
    let theirs = DevServer::start(entries(my_uid() + 1), tcp, DevServerOptions::default())
        .await
        .unwrap();
    let status = open_stream(theirs.address()).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    theirs.shutdown().await;
}

#[tokio::test]
async fn an_entry_without_selectors_is_refused_everywhere() {
    let text = "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/a\"\nselectors = []\n";
    let error = DevServerConfig::from_toml(text).unwrap_err().to_string();
    assert!(
        error.starts_with("config line 4: entry #1 (spiffe://example.org/a, line 2): an entry needs at least one selector"),
        "{error}"
    );
    // through the handle: refused, and the old entries stay
    let dir = tempfile::tempdir().unwrap();
    let server = start_in(dir.path(), DevServerOptions::default()).await;
    let mut bare = Entry::new(
        "spiffe://example.org/b".parse().unwrap(),
        Selector::Uid(my_uid()),
        Duration::from_secs(60),
    );
    bare.selectors.clear();
    let error = server
        .replace_entries(vec![bare.clone()])
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("at least one selector"),
        "{error}"
    );
    assert_eq!(fetch_svid(server.address()).await, ID);
    server.shutdown().await;
    // at start, for a configuration edited after it was built
    let mut config = one_identity();
    config.entries.push(bare);
    let started = DevServer::start(
        config,
        EndpointAddress::Unix(dir.path().join("other.sock")),
        DevServerOptions::default(),
    )
    .await;
    assert!(
        matches!(started, Err(DevServerError::Config(_))),
        "{started:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// the CLI flags

/// A dev-server process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `dev-server ARGS` with `XDG_RUNTIME_DIR=runtime`: the first stdout line and the
/// process, or the exit code and stderr when it exits.
fn dev_server(runtime: &Path, args: &[&str]) -> Result<(String, Process), (Option<i32>, String)> {
    let mut child = Command::new(BIN)
        .arg("dev-server")
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) => {
            std::thread::spawn(move || for _ in lines {});
            Ok((line, Process(child)))
        }
        _ => {
            let output = child.wait_with_output().unwrap();
            Err((
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
    }
}

const ONE_IDENTITY: [&str; 4] = ["--trust-domain", "example.org", "--id", ID];

#[test]
fn cli_default_socket_in_a_private_dir() {
    let runtime = tempfile::tempdir().unwrap();
    let (line, _server) = dev_server(runtime.path(), &ONE_IDENTITY).unwrap();
    let dir = runtime.path().join("spiffe-mtls");
    let socket: PathBuf = dir.join("agent.sock");
    assert!(
        line.ends_with(&format!("listening on unix://{}", socket.display())),
        "{line}"
    );
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), my_uid());
    assert_eq!(mode_of(&socket), 0o600);
}

#[test]
fn cli_refuses_a_loose_default_dir() {
    let runtime = tempfile::tempdir().unwrap();
    let dir = runtime.path().join("spiffe-mtls");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let Err((code, stderr)) = dev_server(runtime.path(), &ONE_IDENTITY) else {
        panic!("started in a 0755 directory");
    };
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("socket directory {} has mode 0755", dir.display())),
        "{stderr}"
    );
    assert!(!dir.join("agent.sock").exists());
}

#[test]
fn cli_socket_mode() {
    let runtime = tempfile::tempdir().unwrap();
    let socket = runtime.path().join("shared/agent.sock");
    let socket_arg = format!("unix://{}", socket.display());
    let mut args = vec!["--socket", &socket_arg, "--socket-mode", "0660"];
    args.extend(ONE_IDENTITY);
    let (_, server) = dev_server(runtime.path(), &args).unwrap();
    assert_eq!(mode_of(&socket), 0o660);
    assert_eq!(mode_of(&runtime.path().join("shared")), 0o700);
    drop(server);
    let mut args = vec!["--socket", &socket_arg, "--socket-mode", "0999"];
    args.extend(ONE_IDENTITY);
    let Err((code, stderr)) = dev_server(runtime.path(), &args) else {
        panic!("accepted mode 0999");
    };
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not an octal permission mode"), "{stderr}");
}

#[test]
fn cli_tcp_beyond_loopback_needs_the_flag() {
    let runtime = tempfile::tempdir().unwrap();
    let mut args = vec!["--socket", "tcp://0.0.0.0:0"];
    args.extend(ONE_IDENTITY);
    let Err((code, stderr)) = dev_server(runtime.path(), &args) else {
        panic!("listened on 0.0.0.0 without --allow-remote-tcp");
    };
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0: not a loopback address"),
        "{stderr}"
    );
    // the flag is accepted (shown on loopback: tests never listen beyond it)
    let mut args = vec!["--socket", "tcp://127.0.0.1:0", "--allow-remote-tcp"];
    args.extend(ONE_IDENTITY);
    let (line, _server) = dev_server(runtime.path(), &args).unwrap();
    assert!(line.contains("listening on tcp://127.0.0.1:"), "{line}");
}

#[test]
fn cli_refuses_an_entry_without_selectors() {
    let runtime = tempfile::tempdir().unwrap();
    let config = runtime.path().join("entries.toml");
    std::fs::write(
        &config,
        "trust_domain = \"example.org\"\n\n[[entry]]\nspiffe_id = \"spiffe://example.org/x\"\nselectors = []\n",
    )
    .unwrap();
    let Err((code, stderr)) = dev_server(runtime.path(), &["--config", config.to_str().unwrap()])
    else {
        panic!("started with an entry without selectors");
    };
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("config line 5: entry #1 (spiffe://example.org/x, line 3): an entry needs at least one selector"),
        "{stderr}"
    );
}
