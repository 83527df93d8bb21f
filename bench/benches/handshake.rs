//! Full mutual TLS handshakes in memory (no sockets): TLS 1.3, ECDSA P-256, resumption off,
//! the same certificates for every contender, in one run.
//!
//! Run: `cargo bench --bench handshake`. Group `handshake`:
//! - `rustls_static`: plain rustls with static certificates, a WebPki client verifier and a
//!   chain-only server verifier (webpki, no name check): the floor;
//! - `spiffe_mtls`: this crate's configs fed by a static source;
//! - `spiffe_rustls`: the spiffe-rustls crate's configs fed by the dev server;
//! - `spiffe_mtls_uncached`: this crate with its verification cache off, every chain verified
//!   in full (what the first connection of a peer costs).
//!
//! Group `handshake_1000_peers`: a server config of each contender (`rustls_static`,
//! `spiffe_mtls`, `spiffe_rustls`, `spiffe_mtls_uncached`) facing 1,000 distinct clients, each
//! a plain rustls client with its own SVID (`spiffe://example.org/bench/peer/N`) from the same
//! dev-server CA, taken in turn: every handshake comes from another peer than the one before,
//! and each peer comes back after 999 others (a mesh reconnecting). The servers let in the
//! trust domain `example.org` (the floor: any chain to its root).
//!
//! Group `resumption`: reconnecting peers (each connection ends with the server's new session
//! tickets delivered to the client, as its first read would), TLS 1.3, X25519 (ring):
//! - `rustls_full`, `spiffe_mtls_full`: full handshakes (resumption off), plain rustls and
//!   this crate;
//! - `spiffe_mtls_resumed`: this crate's configs with `resumption` on both sides: every
//!   connection resumes, its ticket opened and bound to the config generation, the stored
//!   client chain re-checked (verification cache on, as by default);
//! - `spiffe_mtls_resumed_uncached`: the same with the verification cache off: the re-check
//!   verifies the stored chain in full;
//! - `rustls_resumed`: plain rustls resuming with its own ticketer and cache, no re-check.
//!   `spiffe_mtls_resumed` minus `rustls_resumed` is the cost of the checks a resumed
//!   handshake keeps.
//!
//! Group `key_exchange`: this crate's configs (static source, cache on) with one key-exchange
//! group forced on both sides, per provider: `ring_x25519`, `ring_p256`, `ring_p384`,
//! `aws_lc_rs_x25519mlkem768` (post-quantum hybrid), `aws_lc_rs_x25519`, `aws_lc_rs_p256`,
//! `aws_lc_rs_p384`; the aws-lc-rs rows load the SVID keys with aws-lc-rs too. `ring_default`
//! and `aws_lc_rs_default` are the configs as built with no key-exchange setting (the crate's
//! order); `plain_rustls_ring_default` is plain rustls on ring's provider as it comes, the
//! order the resolved rustls release chose (X25519 first in 0.23.46, P-384 in 0.23.48).
//!
//! Group `rotation`: the time from the dev server pushing a rotated SVID to the first
//! handshake presenting it, a server of each contender on its own Workload API source and the
//! same client: `push_to_handshake` (this crate; no handshake may fail) and
//! `push_to_handshake_spiffe_rustls` (its failed handshakes are counted and printed). Only
//! the measured contender's sources are connected while it runs (another source would take
//! its turn on the runtime's thread at every push).
//!
//! The certificates come from the dev server (one CA, SVIDs for a server and a client entry),
//! so all three contenders present and verify exactly the same chains.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use spiffe_mtls::rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use spiffe_mtls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use spiffe_mtls::rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use spiffe_mtls::rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme,
};
use spiffe_mtls::source::{StaticSource, WorkloadApiSource, X509Context, X509Source};
use spiffe_mtls::svid::X509Svid;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{authorize, rustls, tls};

const SERVER: &str = "spiffe://example.org/bench/server";
const CLIENT: &str = "spiffe://example.org/bench/client";
/// The distinct clients of `handshake_1000_peers`.
const PEERS: usize = 1000;

// rustls 0.23.48 deprecates ring's provider (it has no post-quantum group): still measured.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn aws_lc_rs() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// One full handshake between fresh connections; panics if it fails.
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> Vec<u8> {
    try_handshake(server, client).expect("handshake")
}

/// One full handshake between fresh connections: the server's leaf, or why a side failed.
fn try_handshake(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
) -> Result<Vec<u8>, rustls::Error> {
    let (mut server, mut client) = connections(server, client);
    drive(&mut server, &mut client)?;
    Ok(client.peer_certificates().expect("server certificate")[0].to_vec())
}

fn connections(
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
) -> (ServerConnection, ClientConnection) {
    let name = ServerName::try_from("server.example.org").expect("name");
    let client = ClientConnection::new(Arc::clone(client), name).expect("client");
    let server = ServerConnection::new(Arc::clone(server)).expect("server");
    (server, client)
}

/// Moves what `from` has to send into `to`.
fn transfer(
    from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    buffer: &mut Vec<u8>,
) {
    buffer.clear();
    while from.wants_write() {
        from.write_tls(buffer).expect("write");
    }
    let mut input = &buffer[..];
    while !input.is_empty() {
        to.read_tls(&mut input).expect("read");
    }
}

/// Runs the handshake between two fresh connections to its end.
fn drive(
    server: &mut ServerConnection,
    client: &mut ClientConnection,
) -> Result<(), rustls::Error> {
    let mut buffer = Vec::with_capacity(8192);
    while client.is_handshaking() || server.is_handshaking() {
        transfer(client, server, &mut buffer);
        server.process_new_packets()?;
        transfer(server, client, &mut buffer);
        client.process_new_packets()?;
    }
    Ok(())
}

/// A reconnection: a handshake that resumes when the client has a ticket, then the server's
/// new tickets delivered to the client (as its first read would); the handshake's kind.
fn reconnect(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> HandshakeKind {
    let (mut server, mut client) = connections(server, client);
    drive(&mut server, &mut client).expect("handshake");
    let mut buffer = Vec::with_capacity(1024);
    transfer(&mut server, &mut client, &mut buffer);
    client.process_new_packets().expect("tickets");
    client.handshake_kind().expect("kind")
}

/// The floor's server verifier: webpki chain validation to the root, no name check (SPIFFE
/// SVIDs need not carry DNS names).
#[derive(Debug)]
struct ChainOnly {
    roots: RootCertStore,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn roots(context: &X509Context) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for bundle in context.bundles().iter() {
        for root in bundle.roots() {
            roots.add(root.clone()).expect("root");
        }
    }
    roots
}

/// Plain rustls server with a WebPki client verifier, resumption off.
fn rustls_static_server(context: &X509Context) -> Arc<ServerConfig> {
    let provider = provider();
    let server_svid = context.svid_by_hint("server").expect("server SVID");
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(context)), provider.clone())
            .build()
            .expect("client verifier");
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(TLS13)
        .expect("versions")
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(
            server_svid.chain().to_vec(),
            server_svid.private_key().clone_key(),
        )
        .expect("server config");
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    Arc::new(server)
}

/// Plain rustls client presenting `svid`, verifying the server's chain only, resumption off.
fn rustls_static_client(context: &X509Context, svid: &X509Svid) -> Arc<ClientConfig> {
    let provider = provider();
    let mut client = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(TLS13)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly {
            roots: roots(context),
            algorithms: provider.signature_verification_algorithms,
        }))
        .with_client_auth_cert(svid.chain().to_vec(), svid.private_key().clone_key())
        .expect("client config");
    client.resumption = rustls::client::Resumption::disabled();
    Arc::new(client)
}

fn rustls_static(context: &X509Context) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let client_svid = context.svid_by_hint("client").expect("client SVID");
    (
        rustls_static_server(context),
        rustls_static_client(context, client_svid),
    )
}

fn spiffe_mtls_server(
    source: impl X509Source + 'static,
    authorizer: authorize::Authorizer,
    cache: bool,
) -> Arc<ServerConfig> {
    let server = tls::server_config(source, authorizer)
        .verification_cache(cache)
        .crypto_provider(provider())
        .protocol_versions(TLS13)
        .svid_hint("server")
        .build()
        .expect("server config");
    Arc::new(server)
}

fn spiffe_mtls_configs(
    server_source: impl X509Source + 'static,
    client_source: impl X509Source + 'static,
    cache: bool,
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let server = spiffe_mtls_server(
        server_source,
        authorize::id(CLIENT.parse().expect("id")),
        cache,
    );
    let client = tls::client_config(client_source, authorize::id(SERVER.parse().expect("id")))
        .verification_cache(cache)
        .crypto_provider(provider())
        .protocol_versions(TLS13)
        .svid_hint("client")
        .build()
        .expect("client config");
    (server, Arc::new(client))
}

/// Picks the SVID with a hint, for spiffe-rustls.
#[derive(Debug)]
struct Hint(&'static str);

impl spiffe::x509_source::SvidPicker for Hint {
    fn pick_svid(&self, svids: &[Arc<spiffe::X509Svid>]) -> Option<usize> {
        svids.iter().position(|svid| svid.hint() == Some(self.0))
    }
}

async fn spiffe_source(socket: &str, hint: &'static str) -> spiffe::X509Source {
    spiffe::X509Source::builder()
        .endpoint(socket)
        .picker(Hint(hint))
        .build()
        .await
        .expect("spiffe source")
}

async fn spiffe_rustls_server(
    socket: &str,
    authorizer: impl spiffe_rustls::authorizer::Authorizer,
) -> (Arc<ServerConfig>, spiffe::X509Source) {
    let source = spiffe_source(socket, "server").await;
    let server = spiffe_rustls::mtls_server(source.clone())
        .authorize(authorizer)
        .with_config_customizer(|config: &mut ServerConfig| {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        })
        .build()
        .expect("spiffe-rustls server");
    (Arc::new(server), source)
}

/// spiffe-rustls configs, and their sources (to shut down when done).
async fn spiffe_rustls_configs(
    socket: &str,
) -> (
    Arc<ServerConfig>,
    Arc<ClientConfig>,
    Vec<spiffe::X509Source>,
) {
    let (server, server_source) = spiffe_rustls_server(
        socket,
        spiffe_rustls::authorizer::exact([CLIENT]).expect("authorizer"),
    )
    .await;
    let client_source = spiffe_source(socket, "client").await;
    let client = spiffe_rustls::mtls_client(client_source.clone())
        .authorize(spiffe_rustls::authorizer::exact([SERVER]).expect("authorizer"))
        .with_config_customizer(|config: &mut ClientConfig| {
            config.resumption = rustls::client::Resumption::disabled();
        })
        .build()
        .expect("spiffe-rustls client");
    (server, Arc::new(client), vec![server_source, client_source])
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: DevServer,
    socket: String,
    _dir: tempfile::TempDir,
}

/// A dev server with the `server` and `client` entries for this process, and `peers` more
/// entries that no process matches (the dev server issues their SVIDs all the same; the
/// bench takes them from its handle).
fn fixture(peers: usize) -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.sock");
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir.path()).expect("metadata").uid()
    };
    let config = DevServerConfig::from_toml(&format!(
        r#"
        trust_domain = "example.org"
        svid_ttl = "1h"
        [[entry]]
        spiffe_id = "{SERVER}"
        selectors = ["unix:uid:{uid}"]
        hint = "server"
        [[entry]]
        spiffe_id = "{CLIENT}"
        selectors = ["unix:uid:{uid}"]
        hint = "client"
        {}
        "#,
        (0..peers)
            .map(|n| format!(
                "[[entry]]\nspiffe_id = \"spiffe://example.org/bench/peer/{n}\"\n\
                 selectors = [\"unix:path:/nonexistent/bench-peer\"]\n"
            ))
            .collect::<String>()
    ))
    .expect("config");
    let server = runtime
        .block_on(DevServer::start(
            config,
            EndpointAddress::Unix(path.clone()),
            DevServerOptions::default(),
        ))
        .expect("dev server");
    Fixture {
        runtime,
        server,
        socket: format!("unix://{}", path.display()),
        _dir: dir,
    }
}

fn bench_handshake(c: &mut Criterion) {
    let fixture = fixture(0);
    let source = fixture
        .runtime
        .block_on(WorkloadApiSource::connect(
            fixture.socket.parse().expect("address"),
        ))
        .expect("source");
    let context = source.x509_context().expect("context");
    fixture.runtime.block_on(source.shutdown());
    let static_source = Arc::new(StaticSource::new((*context).clone()));

    let floor = rustls_static(&context);
    let ours = spiffe_mtls_configs(Arc::clone(&static_source), Arc::clone(&static_source), true);
    let ours_uncached = spiffe_mtls_configs(Arc::clone(&static_source), static_source, false);
    let (theirs_server, theirs_client, theirs_sources) = fixture
        .runtime
        .block_on(spiffe_rustls_configs(&fixture.socket));
    let theirs = (theirs_server, theirs_client);
    // Same chains everywhere: each contender's client sees the same server leaf.
    let leaf = handshake(&floor.0, &floor.1);
    assert_eq!(handshake(&ours.0, &ours.1), leaf);
    assert_eq!(handshake(&ours_uncached.0, &ours_uncached.1), leaf);
    assert_eq!(handshake(&theirs.0, &theirs.1), leaf);

    let mut group = c.benchmark_group("handshake");
    group.bench_function("rustls_static", |b| {
        b.iter(|| handshake(&floor.0, &floor.1))
    });
    group.bench_function("spiffe_mtls", |b| b.iter(|| handshake(&ours.0, &ours.1)));
    group.bench_function("spiffe_rustls", |b| {
        b.iter(|| handshake(&theirs.0, &theirs.1))
    });
    group.bench_function("spiffe_mtls_uncached", |b| {
        b.iter(|| handshake(&ours_uncached.0, &ours_uncached.1));
    });
    group.finish();
    // Their sources stay connected no longer: at every push of the rotation group each
    // connected source takes its turn on the runtime's thread.
    for source in theirs_sources {
        fixture.runtime.block_on(source.shutdown());
    }

    bench_key_exchange(c, &context);
    bench_rotation(c, &fixture, &context);
    fixture.runtime.block_on(fixture.server.shutdown());
}

/// The handshake with one key-exchange group forced on both sides, per provider.
fn bench_key_exchange(c: &mut Criterion, context: &X509Context) {
    use rustls::crypto::{SupportedKxGroup, aws_lc_rs, ring};
    use rustls::{NamedGroup, ServerConnection};

    // The same SVIDs with their keys loaded by aws-lc-rs, for the aws-lc-rs rows.
    let aws_svids = context
        .svids()
        .iter()
        .map(|svid| {
            let reloaded = X509Svid::from_der_with_provider(
                svid.chain().to_vec(),
                svid.private_key().clone_key(),
                &aws_lc_rs(),
            )
            .expect("SVID");
            match svid.hint() {
                Some(hint) => reloaded.with_hint(hint),
                None => reloaded,
            }
        })
        .collect();
    let aws_context = X509Context::new(aws_svids, context.bundles().clone()).expect("context");
    let ring_source = Arc::new(StaticSource::new(context.clone()));
    let aws_source = Arc::new(StaticSource::new(aws_context));

    let configs = |provider: Arc<CryptoProvider>,
                   source: &Arc<StaticSource>,
                   group: Option<&'static dyn SupportedKxGroup>| {
        let server = tls::server_config(
            Arc::clone(source),
            authorize::id(CLIENT.parse().expect("id")),
        )
        .crypto_provider(Arc::clone(&provider))
        .protocol_versions(TLS13)
        .svid_hint("server");
        let client = tls::client_config(
            Arc::clone(source),
            authorize::id(SERVER.parse().expect("id")),
        )
        .crypto_provider(provider)
        .protocol_versions(TLS13)
        .svid_hint("client");
        let (server, client) = match group {
            Some(group) => (
                server.key_exchange_groups([group]),
                client.key_exchange_groups([group]),
            ),
            None => (server, client),
        };
        (
            Arc::new(server.build().expect("server config")),
            Arc::new(client.build().expect("client config")),
        )
    };
    let contenders = [
        ("ring_default", configs(provider(), &ring_source, None)),
        (
            "ring_x25519",
            configs(provider(), &ring_source, Some(ring::kx_group::X25519)),
        ),
        (
            "ring_p256",
            configs(provider(), &ring_source, Some(ring::kx_group::SECP256R1)),
        ),
        (
            "ring_p384",
            configs(provider(), &ring_source, Some(ring::kx_group::SECP384R1)),
        ),
        ("aws_lc_rs_default", configs(aws_lc_rs(), &aws_source, None)),
        (
            "aws_lc_rs_x25519mlkem768",
            configs(
                aws_lc_rs(),
                &aws_source,
                Some(aws_lc_rs::kx_group::X25519MLKEM768),
            ),
        ),
        (
            "aws_lc_rs_x25519",
            configs(aws_lc_rs(), &aws_source, Some(aws_lc_rs::kx_group::X25519)),
        ),
        (
            "aws_lc_rs_p256",
            configs(
                aws_lc_rs(),
                &aws_source,
                Some(aws_lc_rs::kx_group::SECP256R1),
            ),
        ),
        (
            "aws_lc_rs_p384",
            configs(
                aws_lc_rs(),
                &aws_source,
                Some(aws_lc_rs::kx_group::SECP384R1),
            ),
        ),
        ("plain_rustls_ring_default", rustls_static(context)),
    ];
    // Each contender negotiates the group its name says (the defaults: this crate's order,
    // and for plain rustls whatever the provider puts first).
    let negotiated = |(server, client): &(Arc<ServerConfig>, Arc<ClientConfig>)| {
        let name = ServerName::try_from("server.example.org").expect("name");
        let mut client = ClientConnection::new(Arc::clone(client), name).expect("client");
        let mut server = ServerConnection::new(Arc::clone(server)).expect("server");
        let mut buffer = Vec::new();
        while client.is_handshaking() || server.is_handshaking() {
            buffer.clear();
            while client.wants_write() {
                client.write_tls(&mut buffer).expect("client write");
            }
            server.read_tls(&mut &buffer[..]).expect("server read");
            server.process_new_packets().expect("server handshake");
            buffer.clear();
            while server.wants_write() {
                server.write_tls(&mut buffer).expect("server write");
            }
            client.read_tls(&mut &buffer[..]).expect("client read");
            client.process_new_packets().expect("client handshake");
        }
        client
            .negotiated_key_exchange_group()
            .expect("group")
            .name()
    };
    let expected = [
        Some(NamedGroup::X25519),
        Some(NamedGroup::X25519),
        Some(NamedGroup::secp256r1),
        Some(NamedGroup::secp384r1),
        Some(NamedGroup::X25519MLKEM768),
        Some(NamedGroup::X25519MLKEM768),
        Some(NamedGroup::X25519),
        Some(NamedGroup::secp256r1),
        Some(NamedGroup::secp384r1),
        None,
    ];
    for ((name, configs), expected) in contenders.iter().zip(expected) {
        let group = negotiated(configs);
        if let Some(expected) = expected {
            assert_eq!(group, expected, "{name}");
        } else {
            eprintln!("key_exchange/{name}: negotiates {group:?}");
        }
    }

    let mut group = c.benchmark_group("key_exchange");
    for (name, (server, client)) in &contenders {
        group.bench_function(*name, |b| b.iter(|| handshake(server, client)));
    }
    group.finish();
}

/// Push to first use of a rotated SVID: the time from `rotate_svids` returning to the end of
/// the first handshake that presents the new server SVID. A handshake that fails meanwhile
/// is counted in `failed` (spiffe-rustls fails some while it converts an update) and tried
/// again.
fn push_to_handshake(
    fixture: &Fixture,
    server: &Arc<ServerConfig>,
    client: &Arc<ClientConfig>,
    iterations: u64,
    failed: &mut Counts,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let before = handshake(server, client);
        fixture.runtime.block_on(fixture.server.rotate_svids());
        let pushed = Instant::now();
        loop {
            assert!(
                pushed.elapsed() < Duration::from_secs(5),
                "rotation not seen"
            );
            match try_handshake(server, client) {
                Ok(leaf) if leaf != before => break,
                Ok(_) => {}
                Err(_) => failed.handshakes += 1,
            }
        }
        total += pushed.elapsed();
        failed.rotations += 1;
    }
    total
}

/// Rotations measured, and the handshakes that failed across them.
#[derive(Default)]
struct Counts {
    rotations: u64,
    handshakes: u64,
}

fn bench_rotation(c: &mut Criterion, fixture: &Fixture, context: &X509Context) {
    let client = tls::client_config(
        Arc::new(StaticSource::new(context.clone())),
        authorize::id(SERVER.parse().expect("id")),
    )
    .crypto_provider(provider())
    .protocol_versions(TLS13)
    .svid_hint("client")
    .build()
    .expect("client config");
    let client = Arc::new(client);
    let mut group = c.benchmark_group("rotation");
    group.sample_size(20);

    let ours = fixture
        .runtime
        .block_on(WorkloadApiSource::connect(
            fixture.socket.parse().expect("address"),
        ))
        .expect("source");
    let ours = Arc::new(ours);
    let server = spiffe_mtls_server(
        Arc::clone(&ours),
        authorize::id(CLIENT.parse().expect("id")),
        true,
    );
    let mut failed = Counts::default();
    group.bench_function("push_to_handshake", |b| {
        b.iter_custom(|iterations| {
            push_to_handshake(fixture, &server, &client, iterations, &mut failed)
        });
    });
    assert_eq!(failed.handshakes, 0, "a handshake failed across rotations");
    fixture.runtime.block_on(ours.shutdown());

    let (server, theirs) = fixture.runtime.block_on(spiffe_rustls_server(
        &fixture.socket,
        spiffe_rustls::authorizer::exact([CLIENT]).expect("authorizer"),
    ));
    let mut failed = Counts::default();
    group.bench_function("push_to_handshake_spiffe_rustls", |b| {
        b.iter_custom(|iterations| {
            push_to_handshake(fixture, &server, &client, iterations, &mut failed)
        });
    });
    eprintln!(
        "rotation/push_to_handshake_spiffe_rustls: {} failed handshakes across {} rotations",
        failed.handshakes, failed.rotations
    );
    fixture.runtime.block_on(theirs.shutdown());
    group.finish();
}

/// One handshake of the next peer in turn; panics if it fails.
fn next_peer(server: &Arc<ServerConfig>, peers: &[Arc<ClientConfig>], next: &mut usize) -> Vec<u8> {
    let leaf = handshake(server, &peers[*next]);
    *next = (*next + 1) % peers.len();
    leaf
}

fn bench_1000_peers(c: &mut Criterion) {
    let started = Instant::now();
    let fixture = fixture(PEERS);
    let source = fixture
        .runtime
        .block_on(WorkloadApiSource::connect(
            fixture.socket.parse().expect("address"),
        ))
        .expect("source");
    let context = source.x509_context().expect("context");
    // Entry order: server, client, then the peers.
    let peer_svids = fixture.server.svids().split_off(2);
    assert_eq!(peer_svids.len(), PEERS);
    let peers: Vec<Arc<ClientConfig>> = peer_svids
        .iter()
        .map(|svid| rustls_static_client(&context, svid))
        .collect();
    let static_source = Arc::new(StaticSource::new((*context).clone()));
    let members = || authorize::member_of(["example.org".parse().expect("trust domain")]);

    let contenders = [
        ("rustls_static", rustls_static_server(&context)),
        (
            "spiffe_mtls",
            spiffe_mtls_server(Arc::clone(&static_source), members(), true),
        ),
        (
            "spiffe_rustls",
            fixture
                .runtime
                .block_on(spiffe_rustls_server(
                    &fixture.socket,
                    spiffe_rustls::authorizer::trust_domains(["example.org"]).expect("authorizer"),
                ))
                .0,
        ),
        (
            "spiffe_mtls_uncached",
            spiffe_mtls_server(static_source, members(), false),
        ),
    ];
    // Every contender lets every peer in and presents the same server leaf.
    let leaf = handshake(&contenders[0].1, &peers[0]);
    for (_, server) in &contenders {
        assert_eq!(handshake(server, &peers[0]), leaf);
        assert_eq!(handshake(server, &peers[PEERS - 1]), leaf);
    }
    eprintln!(
        "handshake_1000_peers: {PEERS} peer SVIDs and clients set up in {:.2?}",
        started.elapsed()
    );

    let mut group = c.benchmark_group("handshake_1000_peers");
    for (name, server) in &contenders {
        let mut next = 0;
        group.bench_function(*name, |b| b.iter(|| next_peer(server, &peers, &mut next)));
    }
    group.finish();
    fixture.runtime.block_on(fixture.server.shutdown());
}

criterion_group!(benches, bench_handshake, bench_resumption, bench_1000_peers);
criterion_main!(benches);

/// Reconnecting peers with resumption against full handshakes; see the module docs.
fn bench_resumption(c: &mut Criterion) {
    let fixture = fixture(0);
    let source = fixture
        .runtime
        .block_on(WorkloadApiSource::connect(
            fixture.socket.parse().expect("address"),
        ))
        .expect("source");
    let context = source.x509_context().expect("context");
    fixture.runtime.block_on(source.shutdown());
    fixture.runtime.block_on(fixture.server.shutdown());
    let static_source = Arc::new(StaticSource::new((*context).clone()));

    let floor = rustls_static(&context);
    let ours = spiffe_mtls_configs(Arc::clone(&static_source), Arc::clone(&static_source), true);
    let resuming = |cache: bool| {
        let server = tls::server_config(
            Arc::clone(&static_source),
            authorize::id(CLIENT.parse().expect("id")),
        )
        .verification_cache(cache)
        .crypto_provider(provider())
        .protocol_versions(TLS13)
        .svid_hint("server")
        .resumption(tls::DEFAULT_TICKET_LIFETIME)
        .build()
        .expect("server config");
        let client = tls::client_config(
            Arc::clone(&static_source),
            authorize::id(SERVER.parse().expect("id")),
        )
        .verification_cache(cache)
        .crypto_provider(provider())
        .protocol_versions(TLS13)
        .svid_hint("client")
        .resumption(tls::DEFAULT_TICKET_LIFETIME)
        .build()
        .expect("client config");
        (Arc::new(server), Arc::new(client))
    };
    let ours_resumed = resuming(true);
    let ours_resumed_uncached = resuming(false);
    let plain_resumed = {
        let mut server = ServerConfig::clone(&floor.0);
        server.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
        server.send_tls13_tickets = 2;
        let mut client = ClientConfig::clone(&floor.1);
        client.resumption = rustls::client::Resumption::in_memory_sessions(256);
        (Arc::new(server), Arc::new(client))
    };
    // Every contender does what its name says: the resuming ones resume from the second
    // connection on, the full ones never do.
    for (name, (server, client), kinds) in [
        ("rustls_full", &floor, [HandshakeKind::Full; 3]),
        ("spiffe_mtls_full", &ours, [HandshakeKind::Full; 3]),
        (
            "spiffe_mtls_resumed",
            &ours_resumed,
            [
                HandshakeKind::Full,
                HandshakeKind::Resumed,
                HandshakeKind::Resumed,
            ],
        ),
        (
            "spiffe_mtls_resumed_uncached",
            &ours_resumed_uncached,
            [
                HandshakeKind::Full,
                HandshakeKind::Resumed,
                HandshakeKind::Resumed,
            ],
        ),
        (
            "rustls_resumed",
            &plain_resumed,
            [
                HandshakeKind::Full,
                HandshakeKind::Resumed,
                HandshakeKind::Resumed,
            ],
        ),
    ] {
        for kind in kinds {
            assert_eq!(reconnect(server, client), kind, "{name}");
        }
    }

    let mut group = c.benchmark_group("resumption");
    group.bench_function("rustls_full", |b| b.iter(|| reconnect(&floor.0, &floor.1)));
    group.bench_function("spiffe_mtls_full", |b| {
        b.iter(|| reconnect(&ours.0, &ours.1))
    });
    group.bench_function("spiffe_mtls_resumed", |b| {
        b.iter(|| reconnect(&ours_resumed.0, &ours_resumed.1))
    });
    group.bench_function("spiffe_mtls_resumed_uncached", |b| {
        b.iter(|| reconnect(&ours_resumed_uncached.0, &ours_resumed_uncached.1))
    });
    group.bench_function("rustls_resumed", |b| {
        b.iter(|| reconnect(&plain_resumed.0, &plain_resumed.1))
    });
    group.finish();
}
