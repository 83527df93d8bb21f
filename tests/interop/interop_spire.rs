//! The crate against a real SPIRE (v1.13.3, `spire-server` and `spire-agent` built by
//! `interop/build.sh`): the Workload API client, the sources, the hot-reloading rustls configs,
//! the CLI's `fetch --write` and `jwt validate`, federation, the A2A agents and the sidecar,
//! all on SPIRE-issued identities. The SPIRE processes live in `tests/spire_world`.
#![cfg(all(unix, feature = "cli", feature = "jwt", feature = "a2a"))]

use crate::interop_tools;
use crate::proxy_world;
use crate::spire_world;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spiffe_mtls::jwt::{JwtBundleSource, JwtSource, JwtSvidValidator};
use spiffe_mtls::net::{accept, connect};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{WorkloadApiSource, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Authorizer, TrustDomain, authorize, tls};
use spire_world::{Entry, Options, SpireWorld, federated_pair, run, run_status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLI: &str = env!("CARGO_BIN_EXE_spiffe-mtls");
const SERVER: &str = "spiffe://example.org/load/server";
const CLIENT: &str = "spiffe://example.org/load/client";

fn address(world: &SpireWorld) -> EndpointAddress {
    EndpointAddress::Unix(world.agent.socket.clone())
}

async fn source(world: &SpireWorld) -> Arc<WorkloadApiSource> {
    Arc::new(WorkloadApiSource::connect(address(world)).await.unwrap())
}

fn td(name: &str) -> TrustDomain {
    name.parse().unwrap()
}

/// The certificates of a PEM file, DER, in order.
fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    pem_blocks(path, "CERTIFICATE")
}

/// The DER of every `label` block of a PEM file.
fn pem_blocks(path: &Path, label: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after.find(&end).expect("a PEM end line");
        let b64: String = after[..stop].split_whitespace().collect();
        use base64::Engine as _;
        blocks.push(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        );
        rest = &after[stop + end.len()..];
    }
    blocks
}

/// The hex serial of a DER certificate.
fn serial(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    cert.raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The file names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `fetch --write`'s files hold, parsed, what `spire-agent api fetch x509 -write` writes:
/// the same SVID chain, the same PKCS#8 key, the same bundle, under the same names
/// (`svid.0.pem`, `svid.0.key` mode 0600, `bundle.0.pem`); and `WorkloadApiSource` holds the
/// same SVID and the server's bundle (`spire-server bundle show`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIRE built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn fetch_write_matches_spire_agent_fetch_write() {
    // No rotation during the test: the two fetches see the same SVID.
    let world = SpireWorld::start_with(&Options {
        ca_ttl: "24h".into(),
        x509_svid_ttl: "1h".into(),
        ..Options::default()
    });
    let id = "spiffe://example.org/workload";
    world.create(&Entry::uid(id));
    world.wait_served(id);

    let source = source(&world).await;
    let context = source.x509_context().unwrap();
    assert_eq!(context.svids().len(), 1, "{:?}", context.svids());
    let svid = context.default_svid().clone();
    assert_eq!(svid.spiffe_id().to_string(), id);
    let server_bundle = world.path("server-bundle.pem");
    std::fs::write(&server_bundle, world.server.bundle_pem()).unwrap();
    let roots: Vec<Vec<u8>> = context
        .bundles()
        .get(&td("example.org"))
        .unwrap()
        .roots()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(roots, pem_certs(&server_bundle));

    let ours = world.path("ours");
    let theirs = world.path("theirs");
    // spire-agent does not create the directory (`open DIR/svid.0.pem: no such file or
    // directory`); ours does.
    std::fs::create_dir(&theirs).unwrap();
    let out = run(
        Path::new(CLI),
        &[
            "fetch",
            "--socket",
            &world.socket(),
            "--write",
            ours.to_str().unwrap(),
        ],
    );
    assert!(out.contains(id), "{out}");
    world.agent.fetch_x509_write(&theirs);
    assert_eq!(names(&ours), ["bundle.0.pem", "svid.0.key", "svid.0.pem"]);
    assert_eq!(names(&ours), names(&theirs));
    for name in ["bundle.0.pem", "svid.0.pem"] {
        assert_eq!(
            pem_certs(&ours.join(name)),
            pem_certs(&theirs.join(name)),
            "{name}"
        );
    }
    assert_eq!(
        pem_blocks(&ours.join("svid.0.key"), "PRIVATE KEY"),
        pem_blocks(&theirs.join("svid.0.key"), "PRIVATE KEY")
    );
    let chain: Vec<Vec<u8>> = svid.chain().iter().map(|c| c.to_vec()).collect();
    assert_eq!(pem_certs(&ours.join("svid.0.pem")), chain);
    assert_eq!(pem_certs(&ours.join("bundle.0.pem")), roots);
    use std::os::unix::fs::PermissionsExt;
    for dir in [&ours, &theirs] {
        let mode = std::fs::metadata(dir.join("svid.0.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", dir.display());
    }
    source.shutdown().await;
}

/// Continuous handshakes between two `WorkloadApiSource`-backed configs while SPIRE rotates
/// both SVIDs (every ~5 s with a 10 s TTL) and its CA (`ca_ttl` 1 m): no handshake fails, and
/// every server SVID the source took over is presented by handshakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIRE built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn no_failed_handshake_while_spire_rotates() {
    let world = SpireWorld::start();
    world.register(&[
        Entry::uid(SERVER).hint("server"),
        Entry::uid(CLIENT).hint("client"),
    ]);
    let load = Load::start(&world).await;
    let run_for = Duration::from_secs(22);
    tokio::time::sleep(run_for).await;
    let report = load.stop().await;
    eprintln!(
        "SPIRE rotation: {} handshakes in {run_for:?}, server SVIDs held at (ms): {:?}, {} \
         client SVIDs seen by the server",
        report.handshakes, report.held_at, report.client_svids
    );
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    assert!(
        report.held.len() >= 4,
        "only {} server SVIDs in {run_for:?}",
        report.held.len()
    );
    assert!(
        report.client_svids >= 4,
        "the server saw only {} client SVIDs",
        report.client_svids
    );
    // Each SVID held after the first is presented by some handshake (the last one may have
    // arrived as the load stopped).
    for serial in &report.held[1..report.held.len() - 1] {
        assert!(
            report.presented.contains(serial),
            "serial {serial} never presented"
        );
    }
}

/// `spire-agent` killed and restarted under load: the sources keep serving the SVIDs they
/// hold (valid for a while yet), no handshake fails, and after the restart the source
/// reconnects and takes over the next rotation, which handshakes present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIRE built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn agent_killed_and_restarted_under_load() {
    let mut world = SpireWorld::start();
    world.register(&[
        Entry::uid(SERVER).hint("server"),
        Entry::uid(CLIENT).hint("client"),
    ]);
    let load = Load::start(&world).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    world.agent.kill();
    let killed = load.started.elapsed();
    let held_before = load.held.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.agent.restart();
    let restarted = load.started.elapsed();
    // The next rotation after the restart, seen by the server's source.
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.held.lock().unwrap().len() <= held_before {
        assert!(
            Instant::now() < deadline,
            "no new SVID after the agent restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let handshakes run on the new SVID.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    eprintln!(
        "agent killed at {killed:?}, restarted (healthy) at {restarted:?}; {} handshakes; \
         server SVIDs held at (ms): {:?}",
        report.handshakes, report.held_at
    );
    assert!(
        report.failures.is_empty(),
        "failures: {:?}",
        report.failures
    );
    let (taken_at, _) = report.held_at.last().unwrap();
    assert!(
        *taken_at > killed.as_millis(),
        "no SVID taken after the agent was killed: {:?}",
        report.held_at
    );
    let newest = report.held.last().unwrap();
    assert!(
        report.presented.contains(newest),
        "the SVID taken after the restart was never presented"
    );
}

/// Continuous handshakes (client and server configs over two `WorkloadApiSource`s, hints
/// `server` and `client`), recording every server SVID the server's source held.
struct Load {
    started: Instant,
    held: Arc<Mutex<Vec<(Duration, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    driver: tokio::task::JoinHandle<(usize, Vec<String>, HashSet<String>)>,
    server_failures: Arc<Mutex<Vec<String>>>,
    /// The client SVIDs (serials) the server saw.
    client_serials: Arc<Mutex<HashSet<String>>>,
    sources: Vec<Arc<WorkloadApiSource>>,
}

struct LoadReport {
    handshakes: usize,
    failures: Vec<String>,
    held: Vec<String>,
    /// (milliseconds since the start, the serial's first hex digits)
    held_at: Vec<(u128, String)>,
    presented: HashSet<String>,
    /// Distinct client SVIDs the server saw.
    client_svids: usize,
}

fn leaf_serial(source: &WorkloadApiSource, hint: &str) -> String {
    serial(
        source
            .x509_context()
            .unwrap()
            .svid_by_hint(hint)
            .unwrap()
            .leaf(),
    )
}

impl Load {
    async fn start(world: &SpireWorld) -> Self {
        let server_source = source(world).await;
        let client_source = source(world).await;
        let started = Instant::now();
        let held = Arc::new(Mutex::new(vec![(
            Duration::ZERO,
            leaf_serial(&server_source, "server"),
        )]));
        let recorder = {
            let (source, held) = (Arc::clone(&server_source), Arc::clone(&held));
            tokio::spawn(async move {
                let mut updates = source.updates();
                while updates.changed().await.is_ok() {
                    let serial = leaf_serial(&source, "server");
                    let mut held = held.lock().unwrap();
                    if held.last().is_none_or(|(_, last)| *last != serial) {
                        held.push((started.elapsed(), serial));
                    }
                }
            })
        };
        let server_config = Arc::new(
            tls::server_config(
                Arc::clone(&server_source),
                authorize::id(CLIENT.parse().unwrap()),
            )
            .svid_hint("server")
            .build()
            .unwrap(),
        );
        let client_config = Arc::new(
            tls::client_config(
                Arc::clone(&client_source),
                authorize::id(SERVER.parse().unwrap()),
            )
            .svid_hint("client")
            .build()
            .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_address = listener.local_addr().unwrap();
        let server_failures = Arc::new(Mutex::new(Vec::new()));
        let client_serials = Arc::new(Mutex::new(HashSet::new()));
        let server = {
            let failures = Arc::clone(&server_failures);
            let seen = Arc::clone(&client_serials);
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let (config, failures) = (Arc::clone(&server_config), Arc::clone(&failures));
                    let seen = Arc::clone(&seen);
                    tokio::spawn(async move {
                        match accept(config, tcp).await {
                            Ok(mut stream) => {
                                seen.lock()
                                    .unwrap()
                                    .insert(serial(&stream.peer().chain()[0]));
                                let mut byte = [0u8; 1];
                                if stream.read_exact(&mut byte).await.is_ok() {
                                    let _ = stream.write_all(&byte).await;
                                }
                            }
                            Err(error) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{:?}: {error}", started.elapsed())),
                        }
                    });
                }
            })
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let driver = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let (mut count, mut failures, mut presented) = (0, Vec::new(), HashSet::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let tcp = tokio::net::TcpStream::connect(server_address)
                        .await
                        .unwrap();
                    let name = ServerName::IpAddress(server_address.ip().into());
                    match connect(Arc::clone(&client_config), name, tcp).await {
                        Ok(mut stream) => {
                            presented.insert(serial(&stream.peer().chain()[0]));
                            stream.write_all(b"x").await.unwrap();
                            let mut echo = [0u8; 1];
                            if let Err(error) = stream.read_exact(&mut echo).await {
                                failures
                                    .push(format!("{:?}: round trip: {error}", started.elapsed()));
                            }
                            count += 1;
                        }
                        Err(error) => failures.push(format!("{:?}: {error}", started.elapsed())),
                    }
                }
                (count, failures, presented)
            })
        };
        Self {
            started,
            held,
            stop,
            tasks: vec![recorder, server],
            driver,
            server_failures,
            client_serials,
            sources: vec![server_source, client_source],
        }
    }

    async fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (handshakes, mut failures, presented) = self.driver.await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for task in &self.tasks {
            task.abort();
        }
        failures.extend(self.server_failures.lock().unwrap().iter().cloned());
        for source in &self.sources {
            source.shutdown().await;
        }
        let held_list = self.held.lock().unwrap().clone();
        LoadReport {
            handshakes,
            failures,
            held: held_list.iter().map(|(_, s)| s.clone()).collect(),
            held_at: held_list
                .iter()
                .map(|(at, s)| (at.as_millis(), s[..8.min(s.len())].to_owned()))
                .collect(),
            presented,
            client_svids: self.client_serials.lock().unwrap().len(),
        }
    }
}

/// The token in `spire-agent api fetch jwt` output (the line after `token(ID):`).
fn spire_token(output: &str) -> String {
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("token(") {
            return lines.next().unwrap().trim().to_owned();
        }
    }
    panic!("no token in {output:?}")
}

/// JWT-SVIDs: `JwtSource` gets the agent's JWT bundles and a token; SPIRE's own token
/// (`spire-agent api fetch jwt`) and ours pass our validator and `spiffe-mtls jwt validate`
/// with the agent's JWT bundle (`jwt bundles --write`) and with the server's SPIFFE bundle
/// document; a token for another audience is refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIRE built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn jwt_svids_from_spire_validate_and_other_audiences_are_refused() {
    let world = SpireWorld::start();
    let id = "spiffe://example.org/jwt/workload";
    world.create(&Entry::uid(id));
    world.wait_served(id);
    let audience = "spiffe://example.org/reports";
    let other = "spiffe://example.org/billing";

    let source = JwtSource::connect(address(&world)).await.unwrap();
    let bundles = source.jwt_bundles().unwrap();
    assert!(bundles.get(&td("example.org")).is_some());
    let ours = source.fetch_svid(&[audience.to_owned()]).await.unwrap();
    assert_eq!(ours.spiffe_id().to_string(), id);
    let validator = JwtSvidValidator::new().unwrap();

    let output = run(
        &interop_tools::tool("spire-agent"),
        &[
            "api",
            "fetch",
            "jwt",
            "-audience",
            audience,
            "-socketPath",
            world.agent.socket.to_str().unwrap(),
        ],
    );
    let theirs = spire_token(&output);

    let jwks_dir = world.path("jwks");
    run(
        Path::new(CLI),
        &[
            "jwt",
            "bundles",
            "--socket",
            &world.socket(),
            "--write",
            jwks_dir.to_str().unwrap(),
        ],
    );
    let jwks = jwks_dir.join("example.org.jwks");
    let spiffe_doc = world.path("bundle.spiffe.json");
    std::fs::write(&spiffe_doc, world.server.bundle_spiffe()).unwrap();

    for token in [ours.token(), theirs.as_str()] {
        let svid = validator.validate(token, audience, &bundles).unwrap();
        assert_eq!(svid.spiffe_id().to_string(), id);
        let error = validator.validate(token, other, &bundles).unwrap_err();
        assert!(error.to_string().contains(other), "{error}");

        let file = world.path("token");
        std::fs::write(&file, token).unwrap();
        for bundle in [&jwks, &spiffe_doc] {
            let bundle_arg = format!("example.org={}", bundle.display());
            let args = |aud: &'static str| {
                vec![
                    "jwt".to_owned(),
                    "validate".into(),
                    "--token".into(),
                    file.display().to_string(),
                    "--audience".into(),
                    aud.into(),
                    "--bundle".into(),
                    bundle_arg.clone(),
                ]
            };
            let ok = args(audience);
            let ok: Vec<&str> = ok.iter().map(String::as_str).collect();
            assert_eq!(run(Path::new(CLI), &ok).trim(), id);
            let refused = args(other);
            let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
            let output = run_status(Path::new(CLI), &refused);
            assert_eq!(output.status.code(), Some(1));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("invalid JWT-SVID"), "{stderr}");
        }
    }
    source.shutdown();
}

/// Whether a handshake between `client` (authorizing `server_rule`) and a server on `server`
/// (authorizing `client_rule`) completes; the error otherwise.
async fn handshake(
    server: &Arc<WorkloadApiSource>,
    server_hint: Option<&str>,
    client_rule: Authorizer,
    client: &Arc<WorkloadApiSource>,
    server_rule: Authorizer,
) -> Result<String, String> {
    let mut server_builder = tls::server_config(Arc::clone(server), client_rule);
    if let Some(hint) = server_hint {
        server_builder = server_builder.svid_hint(hint);
    }
    let server_config = Arc::new(server_builder.build().unwrap());
    let client_config = Arc::new(
        tls::client_config(Arc::clone(client), server_rule)
            .build()
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match accept(server_config, tcp).await {
            Ok(mut stream) => {
                let peer = stream.peer().spiffe_id().to_string();
                let mut byte = [0u8; 1];
                let _ = stream.read_exact(&mut byte).await;
                let _ = stream.write_all(&byte).await;
                Ok(peer)
            }
            Err(error) => Err(error.to_string()),
        }
    });
    let tcp = tokio::net::TcpStream::connect(at).await.unwrap();
    let client_side = connect(client_config, ServerName::IpAddress(at.ip().into()), tcp).await;
    let client_result = match client_side {
        Ok(mut stream) => {
            let _ = stream.write_all(b"x").await;
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .await
                .map(|_| stream.peer().spiffe_id().to_string())
                .map_err(|e| e.to_string())
        }
        Err(error) => Err(error.to_string()),
    };
    let server_result = tokio::time::timeout(Duration::from_secs(10), accepted)
        .await
        .unwrap()
        .unwrap();
    server_result.and_then(|peer| client_result.map(|_| peer))
}

/// Federation: two SPIRE servers (`example.org`, `partner.org`) fetch each other's bundle from
/// their bundle endpoints (`https_spiffe`); entries federate with the other domain. The
/// crate trusts a partner SVID only where asked (`authorize::member_of([partner.org])`, the
/// proxy's `--allow-td partner.org`); a rule for `example.org` refuses it, and a workload
/// without `-federatesWith` (the Workload API sends federated bundles per workload, the union
/// of its entries' `-federatesWith`) has no partner bundle and refuses it in the chain check
/// even under `--allow-td partner.org`. The
/// federated bundle files of `fetch --write` hold what SPIRE's hold (under our names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIRE built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
async fn federated_spire_servers_trust_partner_svids_only_where_asked() {
    let (ours, partner) = federated_pair();
    let our_id = "spiffe://example.org/fed/server";
    let partner_id = "spiffe://partner.org/fed/client";
    let proxy_server_exe = ours.copy_binary(Path::new(CLI), "proxy-server");
    let proxy_lonely_exe = ours.copy_binary(Path::new(CLI), "proxy-lonely");
    let proxy_client_exe = partner.copy_binary(Path::new(CLI), "proxy-client");
    // Each program its own entry by path (a process matching two entries would get two SVIDs):
    // this test's executable, spire-agent (for `api fetch`), the proxies.
    let me = std::env::current_exe().unwrap();
    ours.register(&[
        Entry::path(our_id, &me)
            .hint("server")
            .federates_with("partner.org"),
        Entry::path(
            "spiffe://example.org/fed/spire-agent",
            &interop_tools::tool("spire-agent"),
        )
        .federates_with("partner.org"),
        Entry::path("spiffe://example.org/fed/proxy-server", &proxy_server_exe)
            .federates_with("partner.org"),
        Entry::path("spiffe://example.org/fed/proxy-lonely", &proxy_lonely_exe),
    ]);
    partner.register(&[
        Entry::path(partner_id, &me).federates_with("example.org"),
        Entry::path("spiffe://partner.org/fed/proxy-client", &proxy_client_exe)
            .federates_with("example.org"),
    ]);
    let our_source = source(&ours).await;
    let partner_source = source(&partner).await;
    // Bundles reach the agents at their next sync.
    let deadline = Instant::now() + spire_world::PATIENCE;
    while our_source
        .x509_context()
        .unwrap()
        .bundles()
        .get(&td("partner.org"))
        .is_none()
        || partner_source
            .x509_context()
            .unwrap()
            .bundles()
            .get(&td("example.org"))
            .is_none()
    {
        assert!(Instant::now() < deadline, "no federated bundles");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let member = |t: &str| authorize::member_of([td(t)]);

    // Asked to trust partner.org: the partner's SVID is accepted, and it accepts ours.
    let peer = handshake(
        &our_source,
        Some("server"),
        member("partner.org"),
        &partner_source,
        authorize::id(our_id.parse().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(peer, partner_id);
    // Asked to trust example.org only: the partner's SVID is refused.
    let error = handshake(
        &our_source,
        Some("server"),
        member("example.org"),
        &partner_source,
        authorize::id(our_id.parse().unwrap()),
    )
    .await
    .unwrap_err();
    assert!(error.contains(partner_id), "{error}");
    // fetch --write (as the proxy-server program): the federated bundle under our name holds
    // what SPIRE's file holds.
    let ours_dir = ours.path("ours");
    let theirs_dir = ours.path("theirs");
    std::fs::create_dir(&theirs_dir).unwrap();
    run(
        &proxy_server_exe,
        &[
            "fetch",
            "--socket",
            &ours.socket(),
            "--write",
            ours_dir.to_str().unwrap(),
        ],
    );
    ours.agent.fetch_x509_write(&theirs_dir);
    let federated = |dir: &Path| -> BTreeMap<String, Vec<Vec<u8>>> {
        names(dir)
            .into_iter()
            .filter(|n| n.starts_with("federated_bundle."))
            .map(|n| (n.clone(), pem_certs(&dir.join(&n))))
            .collect()
    };
    let (ours_files, theirs_files) = (federated(&ours_dir), federated(&theirs_dir));
    eprintln!(
        "federated files: ours {:?}, SPIRE's {:?}",
        ours_files.keys().collect::<Vec<_>>(),
        theirs_files.keys().collect::<Vec<_>>()
    );
    assert!(!theirs_files.is_empty());
    let contents = |files: &BTreeMap<String, Vec<Vec<u8>>>| -> Vec<Vec<Vec<u8>>> {
        // spire-agent has one more SVID (the harness's probe) and writes the response's
        // federated bundles for each SVID: compare the distinct contents.
        let mut all: Vec<_> = files.values().cloned().collect();
        all.sort();
        all.dedup();
        all
    };
    assert_eq!(contents(&ours_files), contents(&theirs_files));

    // The sidecar: --allow-td partner.org lets the partner's client in; --allow-td
    // example.org does not.
    let backend = proxy_world::echo_backend();
    let start_server = |exe: &PathBuf, allow: &str| {
        proxy_world::Proc::start(
            exe.to_str().unwrap(),
            &[
                "proxy",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--target",
                &backend,
                "--socket",
                &ours.socket(),
                "--allow-td",
                allow,
            ],
            "listening on",
        )
    };
    let client_to = |server: &proxy_world::Proc, id: &str| {
        proxy_world::Proc::start(
            proxy_client_exe.to_str().unwrap(),
            &[
                "proxy",
                "client",
                "--listen",
                "127.0.0.1:0",
                "--target",
                &server.listen,
                "--server-id",
                id,
                "--socket",
                &partner.socket(),
            ],
            "listening on",
        )
    };
    let allowing = start_server(&proxy_server_exe, "partner.org");
    let client = client_to(&allowing, "spiffe://example.org/fed/proxy-server");
    proxy_world::echo(&mut proxy_world::connect(&client.listen), b"federated");
    allowing.audit_line(&[
        "decision=accepted",
        "peer=spiffe://partner.org/fed/proxy-client",
    ]);

    let refusing = start_server(&proxy_server_exe, "example.org");
    let client = client_to(&refusing, "spiffe://example.org/fed/proxy-server");
    assert_relay_refused(&client.listen);
    let line = refusing.audit_line(&[
        "decision=denied",
        "peer=spiffe://partner.org/fed/proxy-client",
    ]);
    eprintln!("refused by --allow-td example.org: {line}");

    // A workload whose entry does not federate gets no partner bundle: the chain is refused.
    let lonely = start_server(&proxy_lonely_exe, "partner.org");
    let client = client_to(&lonely, "spiffe://example.org/fed/proxy-lonely");
    assert_relay_refused(&client.listen);
    let line = lonely.audit_line(&["decision=denied"]);
    assert!(line.contains("UnknownIssuer"), "{line}");
    our_source.shutdown().await;
    partner_source.shutdown().await;
}

/// A relay through `listen` that never echoes (the mTLS side refused).
fn assert_relay_refused(listen: &str) {
    use std::io::{Read, Write};
    let mut stream = proxy_world::connect(listen);
    let _ = stream.write_all(b"hello");
    let mut buf = [0u8; 5];
    let read = stream.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the refused relay answered {read:?}"
    );
}

/// `target/<profile>/examples/<name>`, built by `cargo test` beside this test.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    let path = profile.join("examples").join(name);
    assert!(path.exists(), "{} is not built", path.display());
    path.canonicalize().unwrap()
}

/// The A2A agents (`examples/agent_server`, `agent_client`) on SPIRE-issued identities,
/// attested by their executables' paths: a call allowed, the `secret` skill refused with the
/// JSON-RPC error naming the caller, a client expecting another server ID refused before any
/// request; and the sidecar (`proxy server` / `proxy client`, copies of the binary with their
/// own entries) relaying for the allowed client and refusing another workload.
#[test]
#[ignore = "needs SPIRE built by interop/build.sh (Go); .ci/run builds it and runs these with --ignored"]
fn agents_and_sidecar_on_spire_identities() {
    let world = SpireWorld::start();
    let (server_exe, client_exe) = (example("agent_server"), example("agent_client"));
    let proxy_server = world.copy_binary(Path::new(CLI), "proxy-server");
    let proxy_client = world.copy_binary(Path::new(CLI), "proxy-client");
    let proxy_intruder = world.copy_binary(Path::new(CLI), "proxy-intruder");
    world.register(&[
        Entry::path("spiffe://example.org/agent/server", &server_exe).dns("localhost"),
        Entry::path("spiffe://example.org/agent/client", &client_exe),
        Entry::path("spiffe://example.org/server", &proxy_server),
        Entry::path("spiffe://example.org/client", &proxy_client),
        Entry::path("spiffe://example.org/intruder", &proxy_intruder),
    ]);
    let socket = world.socket();

    let policy = world.path("policy.toml");
    std::fs::write(
        &policy,
        "[connect]\ntrust_domains = [\"example.org\"]\n[routes.echo]\ntrust_domains = [\"example.org\"]\n[routes.secret]\nids = [\"spiffe://example.org/agent/boss\"]\n",
    )
    .unwrap();
    let agent = proxy_world::Proc::start(
        server_exe.to_str().unwrap(),
        &[
            "--socket",
            &socket,
            "--listen",
            "127.0.0.1:0",
            "--policy",
            policy.to_str().unwrap(),
        ],
        " on ",
    );
    // "agent server ID on URL (card ...)": Proc took the word after " on ".
    let base = agent.listen.clone();
    assert!(base.starts_with("https://"), "{base}");
    let call = |server_id: &str, extra: &[&str]| {
        let mut args = vec![
            "--socket",
            &socket,
            "--server",
            &base,
            "--server-id",
            server_id,
        ];
        args.extend_from_slice(extra);
        run_status(&client_exe, &args)
    };
    let out = call("spiffe://example.org/agent/server", &["--text", "hello"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "hello", "{stderr}");

    let out = call(
        "spiffe://example.org/agent/server",
        &["--text", "hi", "--skill", "secret"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "skill \"secret\" does not allow spiffe://example.org/agent/client (code -32600)"
        ),
        "{stderr}"
    );

    let out = call("spiffe://example.org/agent/other", &["--text", "hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "the server is not authorized: expected the ID spiffe://example.org/agent/other, \
             presented spiffe://example.org/agent/server"
        ),
        "{stderr}"
    );

    // The sidecar.
    let backend = proxy_world::echo_backend();
    let server = proxy_world::Proc::start(
        proxy_server.to_str().unwrap(),
        &[
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &backend,
            "--socket",
            &socket,
            "--allow-id",
            "spiffe://example.org/client",
        ],
        "listening on",
    );
    let client_as = |exe: &PathBuf| {
        proxy_world::Proc::start(
            exe.to_str().unwrap(),
            &[
                "proxy",
                "client",
                "--listen",
                "127.0.0.1:0",
                "--target",
                &server.listen,
                "--server-id",
                "spiffe://example.org/server",
                "--socket",
                &socket,
            ],
            "listening on",
        )
    };
    let client = client_as(&proxy_client);
    proxy_world::echo(&mut proxy_world::connect(&client.listen), b"through SPIRE");
    server.audit_line(&["decision=accepted", "peer=spiffe://example.org/client"]);
    let intruder = client_as(&proxy_intruder);
    assert_relay_refused(&intruder.listen);
    server.audit_line(&["decision=denied", "peer=spiffe://example.org/intruder"]);
}

/// go-spiffe v2.9.0 and this crate on SPIRE-issued identities, both directions: the Go peer's
/// client (`tlsconfig.MTLSClientConfig`, `AuthorizeID`) and our server read each other's ID,
/// and so do our client and the Go peer's server; each program is told apart by its
/// executable's path (`unix:path`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SPIRE and go-spiffe-peer built by interop/build.sh (Go); .ci/run builds them and runs these with --ignored"]
async fn go_spiffe_and_the_crate_on_spire_identities() {
    const RUST: &str = "spiffe://example.org/interop/rust";
    const GO: &str = "spiffe://example.org/interop/go";
    let world = SpireWorld::start();
    let go = world.copy_binary(&interop_tools::tool("go-spiffe-peer"), "go-spiffe-peer");
    let me = std::env::current_exe().unwrap();
    world.register(&[Entry::path(RUST, &me), Entry::path(GO, &go)]);
    let ours = source(&world).await;
    let socket = world.socket();

    // The Go client against our server.
    let config = Arc::new(
        tls::server_config(Arc::clone(&ours), authorize::id(GO.parse().unwrap()))
            .build()
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap().to_string();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = accept(config, tcp).await.map_err(|e| e.to_string())?;
        let peer = stream.peer().spiffe_id().to_string();
        let mut stream = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut stream, &mut line)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.get_mut().flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let go_for_client = go.clone();
    let socket_for_client = socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_status(
            &go_for_client,
            &[
                "client",
                "-socket",
                &socket_for_client,
                "-addr",
                &at,
                "-authorize-id",
                RUST,
                "-line",
                "over SPIRE",
            ],
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, format!("peer {RUST}\necho over SPIRE\n"));
    let peer = tokio::time::timeout(Duration::from_secs(20), served)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer, Ok(GO.to_owned()));

    // Our client against the Go server.
    let mut server = std::process::Command::new(&go)
        .args([
            "server",
            "-socket",
            &socket,
            "-authorize-id",
            RUST,
            "-conns",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(server.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    let at: std::net::SocketAddr = first.strip_prefix("listening ").unwrap().parse().unwrap();
    let config = Arc::new(
        tls::client_config(Arc::clone(&ours), authorize::id(GO.parse().unwrap()))
            .build()
            .unwrap(),
    );
    let tcp = tokio::net::TcpStream::connect(at).await.unwrap();
    let mut stream = connect(config, ServerName::IpAddress(at.ip().into()), tcp)
        .await
        .unwrap();
    assert_eq!(stream.peer().spiffe_id().to_string(), GO);
    stream.write_all(b"to go\n").await.unwrap();
    stream.flush().await.unwrap();
    let mut echo = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echo, "to go\n");
    let said = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(said, format!("peer {RUST}"));
    let _ = server.kill();
    let _ = server.wait();
    ours.shutdown().await;
}
