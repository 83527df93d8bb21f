//! go-spiffe v2.9.0, the SPIFFE project's Go library, against this crate, through our own Go
//! program `go-spiffe-peer` (interop/go/peer): mutual TLS both ways with go-spiffe's
//! `tlsconfig` authorizers, go-spiffe's Workload API client against our dev server, and
//! JWT-SVIDs validated both ways.
//!
//! Each program gets its own identity from the dev server by its executable's path: the test
//! binary is `spiffe://example.org/rust`, the Go peer `spiffe://example.org/go`.
//!
//! A plain `cargo test` lists these tests as ignored: they need `go-spiffe-peer`, built by
//! `interop/build.sh` (Go). `.ci/run` builds it and runs them with `--ignored`.
#![cfg(all(unix, feature = "dev-server", feature = "net", feature = "jwt"))]

use crate::interop_tools;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::dev_server::{DevCa, DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::JwtSvidValidator;
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::tls::Side;
use spiffe_mtls::workload::{EndpointAddress, WorkloadClient};
use spiffe_mtls::{authorize, net, tls};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const RUST_ID: &str = "spiffe://example.org/rust";
const GO_ID: &str = "spiffe://example.org/go";
const OTHER_ID: &str = "spiffe://example.org/other";
const AUDIENCE: &str = "spiffe://example.org/audience";
const WAIT: Duration = Duration::from_secs(30);

/// A dev server with an entry for this test binary and one for a copy of the Go peer, both
/// federating with `partner.org`.
struct World {
    dir: tempfile::TempDir,
    server: DevServer,
    go: PathBuf,
}

impl World {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go-spiffe-peer");
        std::fs::copy(interop_tools::tool("go-spiffe-peer"), &go).unwrap();
        let go = go.canonicalize().unwrap();
        let me = std::env::current_exe().unwrap().canonicalize().unwrap();
        let uid = spiffe_mtls::dev_server::effective_uid().unwrap();
        let config = DevServerConfig::from_toml(&format!(
            "trust_domain = \"example.org\"\n\
             [[entry]]\nspiffe_id = \"{RUST_ID}\"\n\
             selectors = [\"unix:uid:{uid}\", \"unix:path:{}\"]\n\
             federates_with = [\"partner.org\"]\n\
             [[entry]]\nspiffe_id = \"{GO_ID}\"\n\
             selectors = [\"unix:uid:{uid}\", \"unix:path:{}\"]\n\
             federates_with = [\"partner.org\"]\n",
            me.display(),
            go.display()
        ))
        .unwrap();
        let partner =
            DevCa::new("partner.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let server = DevServer::start(
            config,
            EndpointAddress::Unix(dir.path().join("agent.sock")),
            DevServerOptions::default().with_federated(partner.bundle()),
        )
        .await
        .unwrap();
        Self { dir, server, go }
    }

    fn socket(&self) -> String {
        format!("unix://{}", self.dir.path().join("agent.sock").display())
    }

    /// Runs the Go peer in `mode` with `args` (and `-socket`), bounded.
    async fn go(&self, mode: &str, args: &[&str]) -> Output {
        let run = tokio::process::Command::new(&self.go)
            .arg(mode)
            .args(["-socket", &self.socket(), "-timeout", "20s"])
            .args(args)
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(WAIT, run)
            .await
            .expect("go-spiffe-peer timed out")
            .unwrap()
    }

    async fn source(&self) -> Arc<WorkloadApiSource> {
        let address = EndpointAddress::Unix(self.dir.path().join("agent.sock"));
        Arc::new(WorkloadApiSource::connect(address).await.unwrap())
    }

    async fn client(&self) -> WorkloadClient {
        let address = EndpointAddress::Unix(self.dir.path().join("agent.sock"));
        WorkloadClient::connect(&address).await.unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn id(text: &str) -> spiffe_mtls::SpiffeId {
    text.parse().unwrap()
}

/// Our mTLS server, one connection at a time: each reports the peer's ID (and echoes a line)
/// or the error that refused it.
async fn our_server(
    source: Arc<WorkloadApiSource>,
    allowed: &str,
) -> (String, mpsc::UnboundedReceiver<Result<String, String>>) {
    let config = Arc::new(
        tls::server_config(source, authorize::id(id(allowed)))
            .build()
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (report, reports) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            match net::accept(Arc::clone(&config), tcp).await {
                Err(error) => {
                    let _ = report.send(Err(net::describe_error(
                        &error,
                        Side::Server,
                        Some(&id(RUST_ID)),
                    )));
                }
                Ok(stream) => {
                    let peer = stream.peer().spiffe_id().to_string();
                    let mut stream = BufReader::new(stream);
                    let mut line = String::new();
                    match stream.read_line(&mut line).await {
                        Ok(n) if n > 0 => {
                            let _ = stream.get_mut().write_all(line.as_bytes()).await;
                            let _ = stream.get_mut().shutdown().await;
                            let _ = report.send(Ok(peer));
                        }
                        Ok(_) => {
                            let _ = report.send(Err(format!("{peer} sent nothing")));
                        }
                        Err(error) => {
                            let _ = report.send(Err(net::describe_error(
                                &error,
                                Side::Server,
                                Some(&id(RUST_ID)),
                            )));
                        }
                    }
                }
            }
        }
    });
    (address, reports)
}

async fn next_report(
    reports: &mut mpsc::UnboundedReceiver<Result<String, String>>,
) -> Result<String, String> {
    tokio::time::timeout(WAIT, reports.recv())
        .await
        .expect("our server reported nothing")
        .expect("our server stopped")
}

/// go-spiffe's client (`tlsconfig.MTLSClientConfig` with `AuthorizeID`) and our server each
/// read the other's ID; a go-spiffe client expecting another ID refuses our server, and our
/// server refuses the Go client when it expects another ID, each saying so.
#[tokio::test]
#[ignore = "needs go-spiffe-peer built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn go_spiffe_client_and_our_server_read_each_others_id() {
    let world = World::start().await;
    let source = world.source().await;

    let (address, mut reports) = our_server(Arc::clone(&source), GO_ID).await;
    let out = world
        .go(
            "client",
            &["-addr", &address, "-authorize-id", RUST_ID, "-line", "hi"],
        )
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("peer {RUST_ID}\necho hi\n"));
    assert_eq!(next_report(&mut reports).await, Ok(GO_ID.to_owned()));

    // go-spiffe refuses our server when it expects another ID.
    let out = world
        .go("client", &["-addr", &address, "-authorize-id", OTHER_ID])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    // go-spiffe's AuthorizeID names what was presented only.
    assert!(
        stderr.contains(&format!("unexpected ID \"{RUST_ID}\"")),
        "{stderr}"
    );
    assert!(next_report(&mut reports).await.is_err());

    // Our server refuses the Go client when it expects another ID.
    let (address, mut reports) = our_server(source, OTHER_ID).await;
    let out = world
        .go("client", &["-addr", &address, "-authorize-id", RUST_ID])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let refusal = next_report(&mut reports).await.unwrap_err();
    assert!(
        refusal.contains(&format!("expected the ID {OTHER_ID}, presented {GO_ID}")),
        "{refusal}"
    );
    world.server.shutdown().await;
}

/// The Go peer's server, started; its stdout lines, from "listening ADDR" on.
struct GoServer {
    _child: tokio::process::Child,
    address: String,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl GoServer {
    async fn start(world: &World, allowed: &str) -> Self {
        let mut child = tokio::process::Command::new(&world.go)
            .args([
                "server",
                "-socket",
                &world.socket(),
                "-authorize-id",
                allowed,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = Self::line_of(&mut lines).await;
        let address = first
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("{first}"))
            .to_owned();
        Self {
            _child: child,
            address,
            lines,
        }
    }

    async fn line_of(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) -> String {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the Go server said nothing")
            .unwrap()
            .expect("the Go server ended")
    }

    async fn line(&mut self) -> String {
        Self::line_of(&mut self.lines).await
    }
}

/// Our client through the crate's config, to `address`: the echo of a line, or the error.
async fn our_client(
    source: Arc<WorkloadApiSource>,
    address: &str,
    allowed: &str,
) -> Result<String, String> {
    let config = Arc::new(
        tls::client_config(source, authorize::id(id(allowed)))
            .build()
            .unwrap(),
    );
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::IpAddress(tcp.peer_addr().unwrap().ip().into());
    let mut stream = net::connect(config, name, tcp)
        .await
        .map_err(|e| net::describe_error(&e, Side::Client, Some(&id(RUST_ID))))?;
    assert_eq!(stream.peer().spiffe_id().to_string(), GO_ID);
    let sent = async {
        stream.write_all(b"hello go\n").await?;
        stream.flush().await
    };
    sent.await
        .map_err(|e| net::describe_error(&e, Side::Client, Some(&id(RUST_ID))))?;
    let mut echo = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut echo))
        .await
        .expect("no echo in time")
        .map_err(|e| net::describe_error(&e, Side::Client, Some(&id(RUST_ID))))?;
    Ok(echo)
}

/// Our client and go-spiffe's server (`tlsconfig.MTLSServerConfig` with `AuthorizeID`) each
/// read the other's ID; our client refuses a server with another ID than it expects, and the
/// Go server refuses our client when it expects another ID.
#[tokio::test]
#[ignore = "needs go-spiffe-peer built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn our_client_and_go_spiffe_server_read_each_others_id() {
    let world = World::start().await;
    let source = world.source().await;

    let mut go = GoServer::start(&world, RUST_ID).await;
    let echo = our_client(Arc::clone(&source), &go.address, GO_ID).await;
    assert_eq!(echo, Ok("hello go\n".to_owned()));
    assert_eq!(go.line().await, format!("peer {RUST_ID}"));

    // Our client refuses the Go server when it expects another ID.
    let refused = our_client(Arc::clone(&source), &go.address, OTHER_ID).await;
    let refusal = refused.unwrap_err();
    assert!(
        refusal.contains(&format!("expected the ID {OTHER_ID}, presented {GO_ID}")),
        "{refusal}"
    );
    assert!(go.line().await.starts_with("refused: "));

    // The Go server refuses our client when it expects another ID.
    let mut go = GoServer::start(&world, OTHER_ID).await;
    let refused = our_client(source, &go.address, GO_ID).await;
    assert!(refused.is_err(), "{refused:?}");
    let line = go.line().await;
    assert!(
        line.starts_with("refused: ") && line.contains(RUST_ID),
        "{line}"
    );
    world.server.shutdown().await;
}

/// The serials of each JSON line the Go peer's `x509` mode printed.
fn x509_report(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// go-spiffe's Workload API client against our dev server: the X.509 context (the Go peer's
/// own SVID, the local and the federated bundle), and `WatchX509Context` seeing 3 rotations,
/// each with a new serial.
#[tokio::test]
#[ignore = "needs go-spiffe-peer built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn go_spiffe_workload_client_fetches_and_watches_the_dev_server() {
    let world = World::start().await;
    let out = world.go("x509", &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = x509_report(text(&out.stdout).trim());
    assert_eq!(report["svids"][0]["id"], GO_ID, "{report}");
    assert_eq!(report["svids"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(
        report["bundles"],
        serde_json::json!(["spiffe://example.org", "spiffe://partner.org"])
    );

    let mut child = tokio::process::Command::new(&world.go)
        .args([
            "x509",
            "-socket",
            &world.socket(),
            "-watch",
            "4",
            "-timeout",
            "30s",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut serials = Vec::new();
    for rotation in 0..4 {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("no update in time")
            .unwrap()
            .expect("the watch ended early");
        serials.push(
            x509_report(&line)["svids"][0]["serial"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        if rotation < 3 {
            world.server.rotate_svids().await;
        }
    }
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let mut distinct = serials.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{serials:?}");
    world.server.shutdown().await;
}

/// JWT-SVIDs both ways: a token go-spiffe fetched from our dev server passes our validator
/// (with our client's JWT bundles) and is refused for another audience; a token we fetched
/// passes go-spiffe's `jwtsvid.ParseAndValidate` (with the bundles it fetched itself, and with
/// the JWKS we write) and the dev server's `ValidateJWTSVID` through go-spiffe, and both refuse
/// it for another audience. go-spiffe's `FetchJWTBundles` lists the same key IDs as ours.
#[tokio::test]
#[ignore = "needs go-spiffe-peer built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn jwt_svids_are_validated_both_ways() {
    let world = World::start().await;
    let mut client = world.client().await;
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let validator = JwtSvidValidator::new().unwrap();

    // Theirs, validated by us.
    let out = world.go("jwt-fetch", &["-audience", AUDIENCE]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let theirs = text(&out.stdout).trim().to_owned();
    let svid = validator.validate(&theirs, AUDIENCE, &bundles).unwrap();
    assert_eq!(svid.spiffe_id().to_string(), GO_ID);
    let refused = validator
        .validate(&theirs, OTHER_ID, &bundles)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("audience"), "{refused}");

    // The JWT bundles as go-spiffe sees them: the same key IDs.
    let out = world.go("jwt-bundles", &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local = bundles.get(&"example.org".parse().unwrap()).unwrap();
    let ours: Vec<String> = {
        let jwks = local.to_jwks();
        let mut kids: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    };
    assert_eq!(
        listed["spiffe://example.org"],
        serde_json::json!(ours),
        "{listed}"
    );

    // Ours, validated by go-spiffe three ways, and refused for another audience.
    let token = client
        .fetch_jwt_svids(&[AUDIENCE.to_owned()], None)
        .await
        .unwrap()[0]
        .token()
        .to_owned();
    let jwks = world.dir.path().join("example.org.jwks");
    std::fs::write(&jwks, local.to_jwks().to_string()).unwrap();
    let jwks = jwks.to_str().unwrap();
    let from_file = ["-jwks", jwks, "-trust-domain", "example.org"];
    for (mode, extra) in [
        ("jwt-parse", &[][..]),
        ("jwt-parse", &from_file[..]),
        ("jwt-validate", &[][..]),
    ] {
        let mut args = vec!["-token", &token, "-audience", AUDIENCE];
        args.extend_from_slice(extra);
        let out = world.go(mode, &args).await;
        assert!(
            out.status.success(),
            "{mode} {extra:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout),
            format!("{RUST_ID}\n"),
            "{mode} {extra:?}"
        );

        let mut args = vec!["-token", &token, "-audience", OTHER_ID];
        args.extend_from_slice(extra);
        let out = world.go(mode, &args).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{mode} {extra:?}: {}",
            text(&out.stdout)
        );
    }
    world.server.shutdown().await;
}
