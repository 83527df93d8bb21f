//! Session resumption that cannot bypass a check (issue 18): for each way a resumed session
//! could outlive what allowed it, a case that must fall back to a full handshake (and be
//! refused when the peer no longer passes), next to its good twin, a resumed session that
//! is still valid and resumes.
//!
//! The server-side cases use a stubborn client: this crate's client config with rustls' own
//! ticket cache, which offers every ticket it has whatever changed, so that the server's
//! checks are the ones on trial. The client-side cases use a stubborn server: this crate's
//! server config with rustls' own ticket sealer, which resumes every ticket it sealed.
#![cfg(all(unix, feature = "dev-server", feature = "net"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use spiffe_mtls::authorize::{self, Authorizer, WatchedPolicy};
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::rustls::client::Resumption;
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::rustls::{ClientConfig, HandshakeKind, ServerConfig};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::{BundleSet, X509Bundle, X509Svid, net, tls};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::common::capture::{Capture, Fields};

const SERVER: &str = "spiffe://example.org/server";
const CLIENT: &str = "spiffe://example.org/client";
const PARTNER: &str = "spiffe://partner.org/client";
const HOUR: Duration = Duration::from_secs(3600);
const LIFETIME: Duration = tls::DEFAULT_TICKET_LIFETIME;

struct Cas {
    example: DevCa,
    partner: DevCa,
}

impl Cas {
    fn new() -> Self {
        Self {
            example: DevCa::new("example.org".parse().unwrap(), HOUR).unwrap(),
            partner: DevCa::new("partner.org".parse().unwrap(), HOUR).unwrap(),
        }
    }

    fn svid(&self, id: &str, lifetime: Duration) -> X509Svid {
        let ca = if id.starts_with("spiffe://partner.org/") {
            &self.partner
        } else {
            &self.example
        };
        ca.issue(&SvidRequest::new(id.parse().unwrap(), lifetime))
            .unwrap()
    }

    /// An SVID of example.org that expires in 2 s.
    fn expiring_soon(&self, id: &str) -> X509Svid {
        let now = SystemTime::now();
        let request = SvidRequest::new(id.parse().unwrap(), HOUR)
            .valid_between(now - Duration::from_secs(60), now + Duration::from_secs(2));
        self.example.issue(&request).unwrap()
    }

    fn both(&self) -> BundleSet {
        [self.example.bundle(), self.partner.bundle()]
            .into_iter()
            .collect()
    }

    fn source(&self, svid: X509Svid, bundles: BundleSet) -> Arc<StaticSource> {
        Arc::new(StaticSource::new(
            X509Context::new(vec![svid], bundles).unwrap(),
        ))
    }
}

/// Serves `config` on a new port: each connection that completes its handshake (through
/// `net::accept`, as every server of the crate) gets a line naming its peer.
async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = Arc::clone(&config);
            tokio::spawn(async move {
                if let Ok(mut stream) = net::accept(config, tcp).await {
                    let line = format!("hello {}\n", stream.peer().spiffe_id());
                    let _ = stream.write_all(line.as_bytes()).await;
                    let _ = stream.flush().await;
                    let mut rest = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
                }
            });
        }
    });
    address
}

/// A resumption server of the crate.
async fn resuming_server(source: Arc<StaticSource>, authorizer: Authorizer) -> SocketAddr {
    let config = tls::server_config(source, authorizer)
        .resumption(LIFETIME)
        .build()
        .unwrap();
    serve(Arc::new(config)).await
}

/// The stubborn client: offers every ticket it got, whatever changed since.
fn stubborn_client(source: Arc<StaticSource>) -> Arc<ClientConfig> {
    let mut config = tls::client_config(source, authorize::any())
        .build()
        .unwrap();
    config.resumption = Resumption::in_memory_sessions(32);
    Arc::new(config)
}

/// Connects with a client config, reads the server's line; the handshake kind and the line,
/// or the error (a refused TLS 1.3 client hears of it at its first read).
async fn call(
    config: &Arc<ClientConfig>,
    address: SocketAddr,
) -> Result<(HandshakeKind, String), String> {
    let tcp = TcpStream::connect(address).await.unwrap();
    let connector = spiffe_mtls::tokio_rustls::TlsConnector::from(Arc::clone(config));
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|error| error.to_string())?;
    let kind = stream.get_ref().1.handshake_kind().unwrap();
    read_line(stream).await.map(|line| (kind, line))
}

async fn read_line(stream: impl tokio::io::AsyncRead + Unpin) -> Result<String, String> {
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stream).read_line(&mut line),
    )
    .await
    .map_err(|_| "timed out".to_owned())?;
    match read {
        Ok(0) => Err("the connection closed".into()),
        Ok(_) => Ok(line.trim_end().to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// The audit events recorded on this thread (the test's runtime is current-thread, so the
/// servers' events are recorded here too).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Fields>>>);

impl Events {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let events = self.clone();
        tracing::subscriber::set_default(Capture::for_this_thread(move |target, fields| {
            if target == tls::AUDIT_TARGET {
                events.0.lock().unwrap().push(fields);
            }
        }))
    }

    /// The reasons of the session re-check's refusals so far.
    fn declines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|event| {
                event.get("rule").map(String::as_str) == Some("resumed session re-checked")
                    && event.get("decision").map(String::as_str) == Some("denied")
            })
            .map(|event| event.get("reason").cloned().unwrap_or_default())
            .collect()
    }

    fn resumed_acceptances(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|event| {
                event.get("rule").map(String::as_str) == Some("resumed session re-checked")
                    && event.get("decision").map(String::as_str) == Some("accepted")
            })
            .count()
    }
}

/// A full handshake, then a ticket: the stubborn client's first call.
async fn first_call(client: &Arc<ClientConfig>, address: SocketAddr) {
    let (kind, line) = call(client, address).await.unwrap();
    assert_eq!(kind, HandshakeKind::Full);
    assert!(line.starts_with("hello spiffe://"), "{line}");
}

#[tokio::test]
async fn a_session_that_still_passes_resumes_and_is_recorded() {
    let events = Events::default();
    let _guard = events.install();
    let cas = Cas::new();
    let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
    let address = resuming_server(server, authorize::any()).await;
    let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));

    first_call(&client, address).await;
    for _ in 0..3 {
        let (kind, line) = call(&client, address).await.unwrap();
        assert_eq!(kind, HandshakeKind::Resumed);
        assert_eq!(line, format!("hello {CLIENT}"));
    }
    assert_eq!(events.resumed_acceptances(), 3);
    assert!(events.declines().is_empty(), "{:?}", events.declines());
}

#[tokio::test]
async fn resumption_is_off_unless_turned_on() {
    let cas = Cas::new();
    let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
    let config = tls::server_config(server, authorize::any())
        .build()
        .unwrap();
    let address = serve(Arc::new(config)).await;
    let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));
    for _ in 0..3 {
        let (kind, _) = call(&client, address).await.unwrap();
        assert_eq!(kind, HandshakeKind::Full);
    }
}

/// An authorizer whose answer changes with no policy reload (a rule of the caller's own):
/// only the re-check of the stored chain can see it.
#[tokio::test]
async fn an_authorizer_that_changed_its_answer_refuses_the_resumed_client() {
    let events = Events::default();
    let _guard = events.install();
    let cas = Cas::new();
    let allowed = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&allowed);
    let rule = authorize::custom("a client still allowed", move |_| {
        flag.load(Ordering::SeqCst)
    });
    let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
    let address = resuming_server(server, rule).await;
    let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));

    first_call(&client, address).await;
    assert_eq!(
        call(&client, address).await.unwrap().0,
        HandshakeKind::Resumed
    );
    allowed.store(false, Ordering::SeqCst);
    let refused = call(&client, address).await.unwrap_err();
    assert!(
        refused.contains("AccessDenied") || refused.contains("access_denied"),
        "{refused}"
    );
    let declines = events.declines();
    assert_eq!(declines.len(), 1, "{declines:?}");
    assert!(declines[0].contains("no longer passes"), "{declines:?}");
    assert!(
        declines[0].contains("a client still allowed"),
        "{declines:?}"
    );
}

fn policy_file(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A policy reload that drops the client (and one that revokes it): every ticket issued
/// before is retired, and the client's full handshake is refused; another client of the
/// same server still gets in.
#[tokio::test]
async fn a_reloaded_policy_that_drops_or_revokes_the_client_retires_its_tickets() {
    for edit in [
        "[connect]\nids = [\"spiffe://example.org/other\"]\n",
        "revoked = [\"spiffe://example.org/client\"]\n[connect]\ntrust_domains = [\"example.org\"]\n",
    ] {
        let events = Events::default();
        let _guard = events.install();
        let cas = Cas::new();
        let dir = tempfile::tempdir().unwrap();
        let path = policy_file(
            &dir,
            "[connect]\nids = [\"spiffe://example.org/client\", \"spiffe://example.org/other\"]\n",
        );
        let policy = WatchedPolicy::open(&path).unwrap();
        let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
        let address = resuming_server(server, policy.connect()).await;
        let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));
        let other =
            stubborn_client(cas.source(cas.svid("spiffe://example.org/other", HOUR), cas.both()));

        first_call(&client, address).await;
        first_call(&other, address).await;
        std::fs::write(&path, edit).unwrap();
        assert!(policy.reload().unwrap());

        assert!(call(&client, address).await.is_err(), "{edit}");
        let (kind, line) = call(&other, address).await.unwrap();
        assert_eq!(
            (kind, line.as_str()),
            (HandshakeKind::Full, "hello spiffe://example.org/other")
        );
        let declines = events.declines();
        assert_eq!(declines.len(), 2, "{declines:?}");
        assert!(
            declines
                .iter()
                .all(|reason| reason.contains("config changed")),
            "{declines:?}"
        );
    }
}

/// The bundle changes under a ticket: the client's CA leaves the bundle of its own trust
/// domain, or its federated trust domain is dropped. Tickets are retired; the full
/// handshake is refused.
#[tokio::test]
async fn a_ca_removed_from_the_bundle_or_a_defederation_refuses_the_resumed_client() {
    for client_id in [CLIENT, PARTNER] {
        let events = Events::default();
        let _guard = events.install();
        let cas = Cas::new();
        // example.org's bundle holds its old CA (the client's) and a new one (the server's).
        let new_ca = DevCa::new("example.org".parse().unwrap(), HOUR).unwrap();
        let both_cas = X509Bundle::new(
            "example.org".parse().unwrap(),
            [cas.example.root().clone(), new_ca.root().clone()],
        )
        .unwrap();
        let server_svid = new_ca
            .issue(&SvidRequest::new(SERVER.parse().unwrap(), HOUR))
            .unwrap();
        let before: BundleSet = [both_cas.clone(), cas.partner.bundle()]
            .into_iter()
            .collect();
        let server = cas.source(server_svid.clone(), before);
        let address = resuming_server(Arc::clone(&server), authorize::any()).await;
        let client_bundles: BundleSet = [new_ca.bundle(), cas.partner.bundle()]
            .into_iter()
            .collect();
        let client = stubborn_client(cas.source(cas.svid(client_id, HOUR), client_bundles));

        let (kind, line) = call(&client, address).await.unwrap();
        assert_eq!(
            (kind, line),
            (HandshakeKind::Full, format!("hello {client_id}"))
        );
        assert_eq!(
            call(&client, address).await.unwrap().0,
            HandshakeKind::Resumed
        );

        let after: BundleSet = if client_id == CLIENT {
            [new_ca.bundle(), cas.partner.bundle()]
                .into_iter()
                .collect()
        } else {
            [both_cas].into_iter().collect()
        };
        server.replace(X509Context::new(vec![server_svid], after).unwrap());
        let refused = call(&client, address).await;
        assert!(refused.is_err(), "{client_id}: {refused:?}");
        let declines = events.declines();
        assert_eq!(declines.len(), 1, "{client_id}: {declines:?}");
        assert!(declines[0].contains("config changed"), "{declines:?}");
    }
}

/// The client's certificate expires after its ticket was issued (no other change): the
/// re-check of the stored chain declines it, and the full handshake is refused.
#[tokio::test]
async fn a_client_certificate_that_expired_since_the_ticket_is_refused() {
    let events = Events::default();
    let _guard = events.install();
    let cas = Cas::new();
    let short = cas.expiring_soon(CLIENT);
    let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
    let address = resuming_server(server, authorize::any()).await;
    let client = stubborn_client(cas.source(short, cas.both()));

    first_call(&client, address).await;
    assert_eq!(
        call(&client, address).await.unwrap().0,
        HandshakeKind::Resumed
    );
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(call(&client, address).await.is_err());
    let declines = events.declines();
    assert_eq!(declines.len(), 1, "{declines:?}");
    assert!(declines[0].contains("no longer passes"), "{declines:?}");
    assert!(
        declines[0].to_lowercase().contains("expired"),
        "{declines:?}"
    );
}

/// A ticket of one server offered to another (same name, same source, same rule, a config
/// of its own), and to the first server once it was restarted with a new config: neither
/// opens it, and the client makes a full handshake, which passes.
#[tokio::test]
async fn a_ticket_from_another_server_or_config_does_not_resume() {
    let events = Events::default();
    let _guard = events.install();
    let cas = Cas::new();
    let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
    let first = resuming_server(Arc::clone(&server), authorize::any()).await;
    let second = resuming_server(Arc::clone(&server), authorize::any()).await;
    let client = || stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));

    // Another server (same name, source and rule; a config of its own).
    let holder = client();
    first_call(&holder, first).await;
    let (kind, line) = call(&holder, second).await.unwrap();
    assert_eq!(
        (kind, line),
        (HandshakeKind::Full, format!("hello {CLIENT}"))
    );

    // The good twin: the first server resumes its own ticket.
    let holder = client();
    first_call(&holder, first).await;
    assert_eq!(
        call(&holder, first).await.unwrap().0,
        HandshakeKind::Resumed
    );

    // Another config of the same server (rebuilt, as after a restart).
    let holder = client();
    first_call(&holder, first).await;
    let rebuilt = resuming_server(server, authorize::any()).await;
    assert_eq!(call(&holder, rebuilt).await.unwrap().0, HandshakeKind::Full);
    assert!(
        events.declines().is_empty(),
        "a foreign ticket does not even open"
    );
}

/// The server's SVID rotates after a ticket was issued: the ticket is retired, and the
/// client (still valid) makes a full handshake, which passes.
#[tokio::test]
async fn a_ticket_replayed_after_a_rotation_does_not_resume() {
    let events = Events::default();
    let _guard = events.install();
    let cas = Cas::new();
    let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
    let address = resuming_server(Arc::clone(&server), authorize::any()).await;
    let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));

    first_call(&client, address).await;
    server.replace(X509Context::new(vec![cas.svid(SERVER, HOUR)], cas.both()).unwrap());
    let (kind, line) = call(&client, address).await.unwrap();
    assert_eq!(
        (kind, line),
        (HandshakeKind::Full, format!("hello {CLIENT}"))
    );
    let declines = events.declines();
    assert_eq!(declines.len(), 1, "{declines:?}");
    assert!(declines[0].contains("config changed"), "{declines:?}");
    // Tickets of the new generation resume.
    assert_eq!(
        call(&client, address).await.unwrap().0,
        HandshakeKind::Resumed
    );
}

#[tokio::test]
async fn a_ticket_past_its_lifetime_does_not_resume() {
    let cas = Cas::new();
    let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
    let config = tls::server_config(server, authorize::any())
        .resumption(Duration::from_secs(1))
        .build()
        .unwrap();
    let address = serve(Arc::new(config)).await;
    let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));

    first_call(&client, address).await;
    assert_eq!(
        call(&client, address).await.unwrap().0,
        HandshakeKind::Resumed
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // rustls' client drops a ticket past the lifetime the server gave it too; the server's
    // own check is in the unit tests of `tls::resumption`.
    assert_eq!(call(&client, address).await.unwrap().0, HandshakeKind::Full);
}

#[test]
fn a_ticket_lifetime_out_of_range_is_refused_at_build() {
    let cas = Cas::new();
    let source = cas.source(cas.svid(SERVER, HOUR), cas.both());
    for lifetime in [
        Duration::ZERO,
        tls::MAX_TICKET_LIFETIME + Duration::from_secs(1),
    ] {
        let error = tls::server_config(Arc::clone(&source), authorize::any())
            .resumption(lifetime)
            .build()
            .unwrap_err();
        assert!(
            error.to_string().contains("between 1 s and 7 days"),
            "{error}"
        );
    }
}

// --- The client's side ---

/// The stubborn server: plain rustls with a fixed certificate (presented even once it has
/// expired) and rustls' own ticket sealer, which resumes every ticket it sealed.
async fn stubborn_server(svid: &X509Svid) -> SocketAddr {
    let provider = spiffe_mtls::crypto::default_provider().unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(spiffe_mtls::rustls::DEFAULT_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(svid.chain().to_vec(), svid.private_key().clone_key())
        .unwrap();
    #[cfg(feature = "aws-lc-rs")]
    let sealer = spiffe_mtls::rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    #[cfg(not(feature = "aws-lc-rs"))]
    let sealer = spiffe_mtls::rustls::crypto::ring::Ticketer::new().unwrap();
    config.ticketer = sealer;
    config.send_tls13_tickets = 2;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = spiffe_mtls::tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let _ = stream.write_all(b"hello from a stubborn server\n").await;
                    let _ = stream.flush().await;
                    let mut rest = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
                }
            });
        }
    });
    address
}

/// The crate's client with resumption, connecting through `net::connect`.
fn resuming_client(source: Arc<StaticSource>, authorizer: Authorizer) -> Arc<ClientConfig> {
    Arc::new(
        tls::client_config(source, authorizer)
            .resumption(LIFETIME)
            .build()
            .unwrap(),
    )
}

async fn connect(
    config: &Arc<ClientConfig>,
    address: SocketAddr,
) -> Result<(HandshakeKind, String), String> {
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = net::connect(Arc::clone(config), name, tcp)
        .await
        .map_err(|error| error.to_string())?;
    let kind = match stream.get_ref() {
        spiffe_mtls::tokio_rustls::TlsStream::Client(client) => client.get_ref().1.handshake_kind(),
        spiffe_mtls::tokio_rustls::TlsStream::Server(_) => None,
    };
    read_line(stream).await.map(|line| (kind.unwrap(), line))
}

/// Through `net::connect`: a full handshake, then one that resumes its ticket.
async fn full_then_resumed(client: &Arc<ClientConfig>, address: SocketAddr) {
    assert_eq!(
        connect(client, address).await.unwrap().0,
        HandshakeKind::Full
    );
    assert_eq!(
        connect(client, address).await.unwrap().0,
        HandshakeKind::Resumed
    );
}

#[tokio::test]
async fn the_crate_client_resumes_with_the_crate_server() {
    let events = Events::default();
    let _guard = events.install();
    let cas = Cas::new();
    let address = resuming_server(
        cas.source(cas.svid(SERVER, HOUR), cas.both()),
        authorize::any(),
    )
    .await;
    let client = resuming_client(
        cas.source(cas.svid(CLIENT, HOUR), cas.both()),
        authorize::id(SERVER.parse().unwrap()),
    );

    assert_eq!(
        connect(&client, address).await.unwrap().0,
        HandshakeKind::Full
    );
    let (kind, line) = connect(&client, address).await.unwrap();
    assert_eq!(
        (kind, line),
        (HandshakeKind::Resumed, format!("hello {CLIENT}"))
    );
    // One acceptance of the resumed session on each side.
    assert_eq!(events.resumed_acceptances(), 2);
}

/// The server's certificate expires after the client's ticket was issued, and a server that
/// resumes anything takes the ticket: `net::connect` refuses the connection before
/// returning it.
#[tokio::test]
async fn the_client_refuses_a_resumed_server_whose_certificate_expired() {
    let events = Events::default();
    let _guard = events.install();
    let cas = Cas::new();
    let short = cas.expiring_soon(SERVER);
    let address = stubborn_server(&short).await;
    let client = resuming_client(
        cas.source(cas.svid(CLIENT, HOUR), cas.both()),
        authorize::any(),
    );

    full_then_resumed(&client, address).await;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let refused = connect(&client, address).await.unwrap_err();
    assert!(
        refused.contains(
            "the resumed session was refused: the stored server certificate no longer passes"
        ) && refused.to_lowercase().contains("expired"),
        "{refused}"
    );
    assert_eq!(events.declines().len(), 1);
}

/// The client's rule changes its answer with no policy reload (a rule of the caller's own),
/// and a server that resumes anything takes the ticket: only the re-check of the stored
/// server chain can see it, and `net::connect` refuses the connection.
#[tokio::test]
async fn the_client_refuses_a_resumed_server_its_rule_no_longer_allows() {
    let cas = Cas::new();
    let address = stubborn_server(&cas.svid(SERVER, HOUR)).await;
    let allowed = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&allowed);
    let rule = authorize::custom("a server still allowed", move |_| {
        flag.load(Ordering::SeqCst)
    });
    let client = resuming_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()), rule);

    full_then_resumed(&client, address).await;
    allowed.store(false, Ordering::SeqCst);
    let refused = connect(&client, address).await.unwrap_err();
    assert!(
        refused.contains("the stored server certificate no longer passes")
            && refused.contains("a server still allowed"),
        "{refused}"
    );
}

/// A rustls client config of the caller's own (not built with `resumption`): a resumed
/// session is still checked by `net::connect`, for expiry.
#[tokio::test]
async fn a_foreign_client_config_is_checked_for_expiry() {
    let cas = Cas::new();
    let short = cas.expiring_soon(SERVER);
    let address = stubborn_server(&short).await;
    let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));
    full_then_resumed(&client, address).await;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let refused = connect(&client, address).await.unwrap_err();
    assert!(
        refused.contains("the resumed session was refused: the server's leaf certificate expired"),
        "{refused}"
    );
}

/// The client's bundle loses the server's CA, or its reloaded policy drops the server: its
/// tickets are dropped, so even a server that resumes anything gets a full handshake, which
/// the client refuses.
#[tokio::test]
async fn the_client_drops_its_tickets_when_its_bundle_or_policy_changes() {
    let cas = Cas::new();
    let address = stubborn_server(&cas.svid(SERVER, HOUR)).await;

    // The bundle.
    let source = cas.source(cas.svid(CLIENT, HOUR), cas.both());
    let client = resuming_client(Arc::clone(&source), authorize::any());
    full_then_resumed(&client, address).await;
    let other_ca = DevCa::new("example.org".parse().unwrap(), HOUR).unwrap();
    let without: BundleSet = [other_ca.bundle(), cas.partner.bundle()]
        .into_iter()
        .collect();
    source.replace(X509Context::new(vec![cas.svid(CLIENT, HOUR)], without).unwrap());
    let refused = connect(&client, address).await.unwrap_err();
    assert!(
        !refused.contains("resumed"),
        "a full handshake, refused: {refused}"
    );

    // The policy.
    let dir = tempfile::tempdir().unwrap();
    let path = policy_file(&dir, "[connect]\nids = [\"spiffe://example.org/server\"]\n");
    let policy = WatchedPolicy::open(&path).unwrap();
    let client = resuming_client(
        cas.source(cas.svid(CLIENT, HOUR), cas.both()),
        policy.connect(),
    );
    full_then_resumed(&client, address).await;
    std::fs::write(&path, "[connect]\nids = [\"spiffe://example.org/other\"]\n").unwrap();
    assert!(policy.reload().unwrap());
    let refused = connect(&client, address).await.unwrap_err();
    assert!(
        refused.contains("the server is not authorized"),
        "{refused}"
    );
}

/// Two client configs never share tickets: the second makes a full handshake.
#[tokio::test]
async fn a_ticket_of_another_client_config_is_not_offered() {
    let cas = Cas::new();
    let address = stubborn_server(&cas.svid(SERVER, HOUR)).await;
    let source = cas.source(cas.svid(CLIENT, HOUR), cas.both());
    let first = resuming_client(Arc::clone(&source), authorize::any());
    let second = resuming_client(source, authorize::any());
    assert_eq!(
        connect(&first, address).await.unwrap().0,
        HandshakeKind::Full
    );
    assert_eq!(
        connect(&second, address).await.unwrap().0,
        HandshakeKind::Full
    );
    assert_eq!(
        connect(&first, address).await.unwrap().0,
        HandshakeKind::Resumed
    );
}

// --- Hostile cases from an adversarial review: each asserts the documented guarantee. ---
mod hostile {
    use super::*;

    /// `net::connect` without reading: the server's NewSessionTickets are still in flight.
    async fn open(
        config: &Arc<ClientConfig>,
        address: SocketAddr,
    ) -> Result<net::MtlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(address).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        net::connect(Arc::clone(config), name, tcp)
            .await
            .map_err(|error| error.to_string())
    }

    fn kind(stream: &net::MtlsStream<TcpStream>) -> HandshakeKind {
        match stream.get_ref() {
            spiffe_mtls::tokio_rustls::TlsStream::Client(client) => {
                client.get_ref().1.handshake_kind().unwrap()
            }
            spiffe_mtls::tokio_rustls::TlsStream::Server(_) => unreachable!(),
        }
    }

    /// a ticket that reaches the client after its policy reload revoked the server is
    /// stored under the new generation and resumed: the revoked server gets in without any
    /// check of the server chain against the new policy.
    #[tokio::test]
    async fn a_ticket_arriving_after_the_client_revoked_the_server_is_not_resumed() {
        let cas = Cas::new();
        let address = resuming_server(
            cas.source(cas.svid(SERVER, HOUR), cas.both()),
            authorize::any(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = policy_file(&dir, "[connect]\ntrust_domains = [\"example.org\"]\n");
        let policy = WatchedPolicy::open(&path).unwrap();
        let client = resuming_client(
            cas.source(cas.svid(CLIENT, HOUR), cas.both()),
            policy.connect(),
        );

        // A full handshake, verified under the old policy; its tickets not yet read.
        let stream = open(&client, address).await.unwrap();
        assert_eq!(kind(&stream), HandshakeKind::Full);
        // The operator revokes the server.
        std::fs::write(
            &path,
            "revoked = [\"spiffe://example.org/server\"]\n[connect]\ntrust_domains = [\"example.org\"]\n",
        )
        .unwrap();
        assert!(policy.reload().unwrap());
        // The tickets arrive now (first read), after the reload.
        assert_eq!(read_line(stream).await.unwrap(), format!("hello {CLIENT}"));

        // The good twin: a fresh client config with the same policy is refused.
        let fresh = resuming_client(
            cas.source(cas.svid(CLIENT, HOUR), cas.both()),
            policy.connect(),
        );
        assert!(open(&fresh, address).await.is_err());

        // The bypass: the revoked server is accepted on a resumed session.
        match open(&client, address).await {
            Ok(stream) => panic!(
                "a revoked server accepted, handshake {:?}, peer {}",
                kind(&stream),
                stream.peer().spiffe_id()
            ),
            Err(error) => assert!(
                error.contains("not authorized") || error.contains("no longer passes"),
                "{error}"
            ),
        }
    }

    /// the server's CA leaves the client's bundle while the tickets of
    /// a connection made before are in flight.
    #[tokio::test]
    async fn a_ticket_arriving_after_the_client_bundle_changed_is_not_resumed() {
        let cas = Cas::new();
        let address = resuming_server(
            cas.source(cas.svid(SERVER, HOUR), cas.both()),
            authorize::any(),
        )
        .await;
        let source = cas.source(cas.svid(CLIENT, HOUR), cas.both());
        let client = resuming_client(Arc::clone(&source), authorize::any());

        let stream = open(&client, address).await.unwrap();
        assert_eq!(kind(&stream), HandshakeKind::Full);
        let other_ca = DevCa::new("example.org".parse().unwrap(), HOUR).unwrap();
        let without: BundleSet = [other_ca.bundle(), cas.partner.bundle()]
            .into_iter()
            .collect();
        source.replace(X509Context::new(vec![cas.svid(CLIENT, HOUR)], without).unwrap());
        let _ = read_line(stream).await;

        match open(&client, address).await {
            Ok(stream) => panic!(
                "a server of a removed CA accepted, handshake {:?}",
                kind(&stream)
            ),
            // Refused: by a full handshake, or by the re-check of a resumed one.
            Err(error) => assert!(
                !error.contains("resumed") || error.contains("no longer passes"),
                "{error}"
            ),
        }
    }

    /// the client records "the next handshakes are full", and the next
    /// handshake resumes.
    #[tokio::test]
    async fn the_client_audit_of_dropped_tickets_holds() {
        let events = Events::default();
        let _guard = events.install();
        let cas = Cas::new();
        let address = resuming_server(
            cas.source(cas.svid(SERVER, HOUR), cas.both()),
            authorize::any(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = policy_file(&dir, "[connect]\ntrust_domains = [\"example.org\"]\n");
        let policy = WatchedPolicy::open(&path).unwrap();
        let client = resuming_client(
            cas.source(cas.svid(CLIENT, HOUR), cas.both()),
            policy.connect(),
        );
        let first = open(&client, address).await.unwrap();
        let _ = read_line(first).await; // tickets stored: `issued` not empty
        let second = open(&client, address).await.unwrap();
        assert_eq!(kind(&second), HandshakeKind::Resumed);
        std::fs::write(
            &path,
            "revoked = [\"spiffe://example.org/server\"]\n[connect]\ntrust_domains = [\"example.org\"]\n",
        )
        .unwrap();
        assert!(policy.reload().unwrap());
        let _ = read_line(second).await;
        let said_full = events
            .declines()
            .iter()
            .any(|reason| reason.contains("they are dropped"));
        assert!(said_full, "{:?}", events.declines());
        let third = open(&client, address).await;
        assert!(
            third.is_err(),
            "the audit said the tickets were dropped, the next handshake resumed ({:?})",
            third.as_ref().map(kind)
        );
    }

    /// the client's rule changes its answer with no generation change (a custom rule,
    /// the twin of the server test `an_authorizer_that_changed_its_answer_...`): the client
    /// resumes with a server its rule now refuses, though `ClientConfigBuilder::resumption`
    /// says `net::connect` re-checks the server chain against the authorizer.
    #[tokio::test]
    async fn a_client_rule_change_is_rechecked_on_a_crate_server() {
        let cas = Cas::new();
        let address = resuming_server(
            cas.source(cas.svid(SERVER, HOUR), cas.both()),
            authorize::any(),
        )
        .await;
        let allowed = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&allowed);
        let rule = authorize::custom("a server still allowed", move |_| {
            flag.load(Ordering::SeqCst)
        });
        let client = resuming_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()), rule);
        assert_eq!(
            connect(&client, address).await.unwrap().0,
            HandshakeKind::Full
        );
        assert_eq!(
            connect(&client, address).await.unwrap().0,
            HandshakeKind::Resumed
        );
        allowed.store(false, Ordering::SeqCst);
        match connect(&client, address).await {
            Ok((kind, _)) => panic!("a server the rule refuses was accepted ({kind:?})"),
            Err(error) => assert!(
                error.contains("not authorized") || error.contains("no longer passes"),
                "{error}"
            ),
        }
    }

    static TLS12_ONLY: &[&spiffe_mtls::rustls::SupportedProtocolVersion] =
        &[&spiffe_mtls::rustls::version::TLS12];

    /// TLS 1.2 client (tickets and session IDs) against a resumption server whose rule
    /// flips: must not resume.
    #[tokio::test]
    async fn a_tls12_session_is_rechecked_too() {
        let events = Events::default();
        let _guard = events.install();
        let cas = Cas::new();
        let allowed = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&allowed);
        let rule = authorize::custom("a client still allowed", move |_| {
            flag.load(Ordering::SeqCst)
        });
        let address = resuming_server(cas.source(cas.svid(SERVER, HOUR), cas.both()), rule).await;
        let mut config = tls::client_config(
            cas.source(cas.svid(CLIENT, HOUR), cas.both()),
            authorize::any(),
        )
        .protocol_versions(TLS12_ONLY)
        .build()
        .unwrap();
        config.resumption = Resumption::in_memory_sessions(32);
        let client = Arc::new(config);
        first_call(&client, address).await;
        assert_eq!(
            call(&client, address).await.unwrap().0,
            HandshakeKind::Resumed
        );
        allowed.store(false, Ordering::SeqCst);
        assert!(call(&client, address).await.is_err());
        assert!(
            events
                .declines()
                .iter()
                .any(|r| r.contains("no longer passes")),
            "{:?}",
            events.declines()
        );
    }

    /// Anonymous sessions of a client_certificate_optional server: a ticket of an
    /// anonymous session cannot be turned into an authenticated one, and an authenticated
    /// client whose rule flips cannot resume.
    #[tokio::test]
    async fn an_optional_client_certificate_server_rechecks_certified_sessions() {
        let cas = Cas::new();
        let allowed = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&allowed);
        let rule = authorize::custom("a client still allowed", move |_| {
            flag.load(Ordering::SeqCst)
        });
        let config = tls::server_config(cas.source(cas.svid(SERVER, HOUR), cas.both()), rule)
            .client_certificate_optional()
            .resumption(LIFETIME)
            .build()
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = Arc::clone(&config);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let config = Arc::clone(&server);
                tokio::spawn(async move {
                    let acceptor = spiffe_mtls::tokio_rustls::TlsAcceptor::from(config);
                    if let Ok(mut stream) = acceptor.accept(tcp).await {
                        let peer = if stream.get_ref().1.peer_certificates().is_some() {
                            "certified"
                        } else {
                            "anonymous"
                        };
                        let _ = stream.write_all(format!("hello {peer}\n").as_bytes()).await;
                        let _ = stream.flush().await;
                        let mut rest = Vec::new();
                        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
                    }
                });
            }
        });
        // Authenticated client, then the rule refuses it.
        let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));
        assert_eq!(
            call(&client, address).await.unwrap(),
            (HandshakeKind::Full, "hello certified".to_owned())
        );
        assert_eq!(
            call(&client, address).await.unwrap().0,
            HandshakeKind::Resumed
        );
        allowed.store(false, Ordering::SeqCst);
        let after = call(&client, address).await;
        assert!(after.is_err(), "{after:?}");
    }

    /// Rewrites a ClientHello (one record, as rustls sends it) so that its pre_shared_key
    /// extension offers its first identity `copies` times.
    fn repeat_psk_identity(record: &[u8], copies: usize) -> Vec<u8> {
        assert_eq!(record[0], 0x16);
        let hs = &record[5..];
        assert_eq!(hs[0], 1);
        let body = &hs[4..];
        let mut at = 2 + 32;
        at += 1 + body[at] as usize;
        at += 2 + u16::from_be_bytes([body[at], body[at + 1]]) as usize;
        at += 1 + body[at] as usize;
        let extensions_at = at + 2;
        let mut ext = extensions_at;
        let mut psk_at = None;
        while ext < body.len() {
            let kind = u16::from_be_bytes([body[ext], body[ext + 1]]);
            let len = u16::from_be_bytes([body[ext + 2], body[ext + 3]]) as usize;
            if kind == 0x0029 {
                psk_at = Some(ext);
            }
            ext += 4 + len;
        }
        let psk_at = psk_at.expect("a PSK offer");
        let psk = &body[psk_at + 4..];
        let id_len = u16::from_be_bytes([psk[2], psk[3]]) as usize;
        let identity = &psk[2..2 + 2 + id_len + 4];
        let ids_len = u16::from_be_bytes([psk[0], psk[1]]) as usize;
        let binders = &psk[2 + ids_len..];
        let binder_len = binders[2] as usize;
        let binder = &binders[2..2 + 1 + binder_len];
        let mut ids = Vec::new();
        let mut bins = Vec::new();
        for _ in 0..copies {
            ids.extend_from_slice(identity);
            bins.extend_from_slice(binder);
        }
        let mut new_psk = Vec::new();
        new_psk.extend_from_slice(&(ids.len() as u16).to_be_bytes());
        new_psk.extend_from_slice(&ids);
        new_psk.extend_from_slice(&(bins.len() as u16).to_be_bytes());
        new_psk.extend_from_slice(&bins);
        let mut new_body = body[..psk_at].to_vec();
        new_body.extend_from_slice(&[0x00, 0x29]);
        new_body.extend_from_slice(&(new_psk.len() as u16).to_be_bytes());
        new_body.extend_from_slice(&new_psk);
        let ext_total = (new_body.len() - extensions_at) as u16;
        new_body[at..at + 2].copy_from_slice(&ext_total.to_be_bytes());
        let mut message = vec![1];
        let len = new_body.len();
        message.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
        message.extend_from_slice(&new_body);
        let mut out = Vec::new();
        for chunk in message.chunks(16384) {
            out.extend_from_slice(&[0x16, record[1], record[2]]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// one ClientHello that repeats one retired ticket N times makes the server open
    /// and re-check it N times, recording N `denied` audit events (and, for a ticket whose
    /// chain fails, N chain verifications). Any client that ever got a ticket can do it; on
    /// a client_certificate_optional server, anyone.
    #[tokio::test]
    async fn one_client_hello_repeating_a_ticket_is_declined_once() {
        let events = Events::default();
        let _guard = events.install();
        let cas = Cas::new();
        let server = cas.source(cas.svid(SERVER, HOUR), cas.both());
        let address = resuming_server(Arc::clone(&server), authorize::any()).await;
        let client = stubborn_client(cas.source(cas.svid(CLIENT, HOUR), cas.both()));
        first_call(&client, address).await;
        // Every ticket is retired (an SVID rotation of the server).
        server.replace(X509Context::new(vec![cas.svid(SERVER, HOUR)], cas.both()).unwrap());

        // A relay that rewrites the ClientHello.
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_address = relay.local_addr().unwrap();
        let copies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&copies);
        tokio::spawn(async move {
            let (mut from_client, _) = relay.accept().await.unwrap();
            let mut to_server = TcpStream::connect(address).await.unwrap();
            let mut header = [0u8; 5];
            tokio::io::AsyncReadExt::read_exact(&mut from_client, &mut header)
                .await
                .unwrap();
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            let mut record = header.to_vec();
            record.resize(5 + len, 0);
            tokio::io::AsyncReadExt::read_exact(&mut from_client, &mut record[5..])
                .await
                .unwrap();
            // As many copies as fit a handshake message of 64 KiB.
            let one = repeat_psk_identity(&record, 1).len();
            let two = repeat_psk_identity(&record, 2).len();
            let n = (60_000 - one) / (two - one) + 1;
            counted.store(n, Ordering::SeqCst);
            to_server
                .write_all(&repeat_psk_identity(&record, n))
                .await
                .unwrap();
            let _ = tokio::io::copy_bidirectional(&mut from_client, &mut to_server).await;
        });
        let _ = call(&client, relay_address).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = copies.load(Ordering::SeqCst);
        let declines = events.declines().len();
        assert!(
            declines <= 2,
            "one ClientHello ({n} copies of one ticket) made {declines} `denied` audit events"
        );
    }

    /// `net::reqwest_client` (and the A2A client built on it) takes a resumption config
    /// as it is: a resumed session to a server whose certificate expired is used and the
    /// request sent; only `net::connect` makes the client's last check.
    #[tokio::test]
    async fn the_reqwest_client_never_resumes() {
        let cas = Cas::new();
        let short = cas.expiring_soon(SERVER);
        // A stubborn HTTPS server: rustls' own sealer, an SVID it presents even expired.
        let provider = spiffe_mtls::crypto::default_provider().unwrap();
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(spiffe_mtls::rustls::DEFAULT_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(short.chain().to_vec(), short.private_key().clone_key())
            .unwrap();
        #[cfg(feature = "aws-lc-rs")]
        let sealer = spiffe_mtls::rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
        #[cfg(not(feature = "aws-lc-rs"))]
        let sealer = spiffe_mtls::rustls::crypto::ring::Ticketer::new().unwrap();
        config.ticketer = sealer;
        config.send_tls13_tickets = 2;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = spiffe_mtls::tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        let mut reader = BufReader::new(stream);
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n"
                            {
                                break;
                            }
                        }
                        let mut stream = reader.into_inner();
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                            )
                            .await;
                        let _ = stream.shutdown().await;
                    }
                });
            }
        });
        let client_config = || {
            tls::client_config(
                cas.source(cas.svid(CLIENT, HOUR), cas.both()),
                authorize::id(SERVER.parse().unwrap()),
            )
            .resumption(LIFETIME)
            .build()
            .unwrap()
        };
        let client = net::reqwest_builder(client_config())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = format!("https://localhost:{port}/");
        assert_eq!(
            client.get(&url).send().await.unwrap().text().await.unwrap(),
            "ok"
        );
        assert_eq!(
            client.get(&url).send().await.unwrap().text().await.unwrap(),
            "ok"
        );
        tokio::time::sleep(Duration::from_millis(3200)).await;
        // The good twin: a new client (full handshake) refuses the expired server.
        let fresh = net::reqwest_builder(client_config()).build().unwrap();
        assert!(fresh.get(&url).send().await.is_err());
        let resumed = client.get(&url).send().await;
        assert!(
            resumed.is_err(),
            "a request sent to a server whose certificate expired: {:?}",
            resumed.map(|r| r.status())
        );
    }
}
