//! Mutual TLS with the hot-reloading configs: who gets in, who is refused, and what each side
//! learns about the other.
#![cfg(all(unix, feature = "dev-server", feature = "grpc"))]

use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::net::{MtlsStream, accept, connect};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::{Authorizer, BundleSet, X509Bundle, X509Svid, authorize, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
const HOUR: Duration = Duration::from_secs(3600);

fn ca(trust_domain: &str) -> DevCa {
    DevCa::new(trust_domain.parse().unwrap(), HOUR).unwrap()
}

fn issue(ca: &DevCa, id: &str) -> X509Svid {
    ca.issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
        .unwrap()
}

fn source(svid: X509Svid, bundles: &[X509Bundle]) -> Arc<StaticSource> {
    let bundles: BundleSet = bundles.iter().cloned().collect();
    Arc::new(StaticSource::new(
        X509Context::new(vec![svid], bundles).unwrap(),
    ))
}

fn name() -> ServerName<'static> {
    ServerName::try_from("server.example.org").unwrap()
}

/// Both ends of a handshake over an in-memory pipe.
async fn handshake(
    server: Arc<spiffe_mtls::rustls::ServerConfig>,
    client: Arc<spiffe_mtls::rustls::ClientConfig>,
) -> (
    std::io::Result<MtlsStream<DuplexStream>>,
    std::io::Result<MtlsStream<DuplexStream>>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    tokio::join!(accept(server, a), connect(client, name(), b))
}

struct Pair {
    server: Arc<spiffe_mtls::rustls::ServerConfig>,
    client: Arc<spiffe_mtls::rustls::ClientConfig>,
}

fn pair(
    server_source: Arc<StaticSource>,
    server_rule: Authorizer,
    client_source: Arc<StaticSource>,
    client_rule: Authorizer,
) -> Pair {
    Pair {
        server: Arc::new(
            tls::server_config(server_source, server_rule)
                .build()
                .unwrap(),
        ),
        client: Arc::new(
            tls::client_config(client_source, client_rule)
                .build()
                .unwrap(),
        ),
    }
}

fn id(value: &str) -> Authorizer {
    authorize::id(value.parse().unwrap())
}

#[tokio::test]
async fn both_sides_learn_the_verified_peer() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let pair = pair(
        source(issue(&authority, SERVER), std::slice::from_ref(&bundle)),
        id(CLIENT),
        source(issue(&authority, CLIENT), &[bundle]),
        id(SERVER),
    );
    let (server, client) = handshake(pair.server, pair.client).await;
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    assert_eq!(server.peer().spiffe_id().to_string(), CLIENT);
    assert_eq!(client.peer().spiffe_id().to_string(), SERVER);
    assert_eq!(client.peer().chain().len(), 1);
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn a_client_with_the_wrong_id_is_refused() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let pair = pair(
        source(issue(&authority, SERVER), std::slice::from_ref(&bundle)),
        id(CLIENT),
        source(
            issue(&authority, "spiffe://example.org/agent/rogue"),
            &[bundle],
        ),
        id(SERVER),
    );
    let (server, client) = handshake(pair.server, pair.client).await;
    let error = server.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
    assert_eq!(
        error.to_string(),
        "the client is not authorized: expected the ID spiffe://example.org/agent/client, \
         presented spiffe://example.org/agent/rogue"
    );
    // TLS 1.3: the client learns of the refusal on its first read at the latest, in words.
    let refused = "the server refused our certificate (TLS alert access_denied): it does not \
                   authorize spiffe://example.org/agent/rogue (our ID)";
    match client {
        Ok(mut client) => {
            let mut buf = [0u8; 1];
            let error = client.read(&mut buf).await.unwrap_err();
            assert_eq!(error.to_string(), refused);
            assert!(spiffe_mtls::net::HandshakeRefusal::find(&error).is_some());
        }
        Err(error) => assert_eq!(error.to_string(), refused),
    }
}

#[tokio::test]
async fn a_server_with_the_wrong_id_is_refused_by_the_client() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let pair = pair(
        source(
            issue(&authority, "spiffe://example.org/impostor"),
            std::slice::from_ref(&bundle),
        ),
        authorize::any(),
        source(issue(&authority, CLIENT), &[bundle]),
        id(SERVER),
    );
    let (_, client) = handshake(pair.server, pair.client).await;
    let error = client.unwrap_err().to_string();
    assert_eq!(
        error,
        "the server is not authorized: expected the ID spiffe://example.org/agent/server, \
         presented spiffe://example.org/impostor"
    );
}

#[tokio::test]
async fn a_peer_of_another_trust_domain_is_refused() {
    let authority = ca("example.org");
    let partner = ca("partner.org");
    // The partner's bundle is trusted, but the rule admits example.org members only.
    let pair = pair(
        source(
            issue(&authority, SERVER),
            &[authority.bundle(), partner.bundle()],
        ),
        authorize::member_of(["example.org".parse().unwrap()]),
        source(
            issue(&partner, "spiffe://partner.org/agent"),
            &[authority.bundle(), partner.bundle()],
        ),
        id(SERVER),
    );
    let (server, _) = handshake(pair.server, pair.client).await;
    assert_eq!(
        server.unwrap_err().to_string(),
        "the client is not authorized: expected a member of example.org, presented \
         spiffe://partner.org/agent"
    );

    // Without the partner's bundle the chain does not verify at all.
    let pair = pair_untrusted(&authority, &partner);
    let (server, _) = handshake(pair.server, pair.client).await;
    let error = server.unwrap_err().to_string();
    assert!(
        error.contains("UnknownIssuer") || error.contains("no bundle"),
        "{error}"
    );
}

fn pair_untrusted(authority: &DevCa, partner: &DevCa) -> Pair {
    pair(
        source(issue(authority, SERVER), &[authority.bundle()]),
        authorize::any(),
        source(
            issue(partner, "spiffe://partner.org/agent"),
            &[authority.bundle(), partner.bundle()],
        ),
        authorize::any(),
    )
}

#[tokio::test]
async fn a_cross_trust_domain_chain_is_refused() {
    let authority = ca("example.org");
    let partner = ca("partner.org");
    // partner.org's CA signs an example.org ID: its bundle is trusted, but not for example.org.
    let forged = partner
        .issue(&SvidRequest::new(CLIENT.parse().unwrap(), HOUR))
        .unwrap();
    let bundles = [authority.bundle(), partner.bundle()];
    let pair = pair(
        source(issue(&authority, SERVER), &bundles),
        authorize::any(),
        source(forged, &bundles),
        authorize::any(),
    );
    let (server, _) = handshake(pair.server, pair.client).await;
    let error = server.unwrap_err().to_string();
    assert!(
        error.contains("UnknownIssuer") || error.contains("BadSignature"),
        "{error}"
    );
}

#[tokio::test]
async fn a_federated_peer_is_accepted() {
    let authority = ca("example.org");
    let partner = ca("partner.org");
    let bundles = [authority.bundle(), partner.bundle()];
    let pair = pair(
        source(issue(&authority, SERVER), &bundles),
        id("spiffe://partner.org/agent"),
        source(issue(&partner, "spiffe://partner.org/agent"), &bundles),
        id(SERVER),
    );
    let (server, client) = handshake(pair.server, pair.client).await;
    assert_eq!(
        server.unwrap().peer().trust_domain().as_str(),
        "partner.org"
    );
    client.unwrap();
}

#[tokio::test]
async fn a_uri_only_server_svid_dialed_by_ip() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let server_svid = issue(&authority, SERVER);
    let pair = pair(
        source(server_svid, std::slice::from_ref(&bundle)),
        id(CLIENT),
        source(issue(&authority, CLIENT), &[bundle]),
        id(SERVER),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept(pair.server, tcp).await.map(|s| s.peer().clone())
    });
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let ip = ServerName::IpAddress(address.ip().into());
    let client = connect(pair.client, ip, tcp).await.unwrap();
    assert_eq!(client.peer().spiffe_id().to_string(), SERVER);
    assert_eq!(
        server.await.unwrap().unwrap().spiffe_id().to_string(),
        CLIENT
    );
}

#[tokio::test]
async fn the_next_handshake_presents_a_replaced_svid() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let server_source = source(issue(&authority, SERVER), std::slice::from_ref(&bundle));
    let pair = pair(
        Arc::clone(&server_source),
        id(CLIENT),
        source(issue(&authority, CLIENT), std::slice::from_ref(&bundle)),
        id(SERVER),
    );
    let (_, first) = handshake(Arc::clone(&pair.server), Arc::clone(&pair.client)).await;
    let first = first.unwrap().peer().chain()[0].clone();
    let rotated = issue(&authority, SERVER);
    let expected = rotated.leaf().clone();
    server_source.replace(X509Context::new(vec![rotated], [bundle].into_iter().collect()).unwrap());
    let (_, second) = handshake(pair.server, pair.client).await;
    let second = second.unwrap().peer().chain()[0].clone();
    assert_ne!(first, second);
    assert_eq!(second, expected);
}

#[tokio::test]
async fn tls12_and_alpn() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    static TLS12_ONLY: &[&spiffe_mtls::rustls::SupportedProtocolVersion] =
        &[&spiffe_mtls::rustls::version::TLS12];
    let versions = TLS12_ONLY;
    let server = tls::server_config(
        source(issue(&authority, SERVER), std::slice::from_ref(&bundle)),
        id(CLIENT),
    )
    .protocol_versions(versions)
    .alpn_protocols([b"h2".to_vec()])
    .build()
    .unwrap();
    let client = tls::client_config(source(issue(&authority, CLIENT), &[bundle]), id(SERVER))
        .protocol_versions(versions)
        .alpn_protocols([b"h2".to_vec()])
        .build()
        .unwrap();
    let (server, client) = handshake(Arc::new(server), Arc::new(client)).await;
    let client = client.unwrap();
    let (_, connection) = match client.get_ref() {
        spiffe_mtls::tokio_rustls::TlsStream::Client(stream) => stream.get_ref(),
        spiffe_mtls::tokio_rustls::TlsStream::Server(_) => unreachable!(),
    };
    assert_eq!(
        connection.protocol_version(),
        Some(spiffe_mtls::rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(connection.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(server.unwrap().peer().spiffe_id().to_string(), CLIENT);
}

#[tokio::test]
async fn resumption_is_off() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let server = tls::server_config(
        source(issue(&authority, SERVER), std::slice::from_ref(&bundle)),
        id(CLIENT),
    )
    .build()
    .unwrap();
    let client = tls::client_config(source(issue(&authority, CLIENT), &[bundle]), id(SERVER))
        .build()
        .unwrap();
    assert_eq!(server.send_tls13_tickets, 0);
    assert!(!server.session_storage.can_cache());
    let (server, client) = (Arc::new(server), Arc::new(client));
    for _ in 0..2 {
        let (_, client) = handshake(Arc::clone(&server), Arc::clone(&client)).await;
        let client = client.unwrap();
        let spiffe_mtls::tokio_rustls::TlsStream::Client(stream) = client.get_ref() else {
            unreachable!()
        };
        assert_eq!(
            stream.get_ref().1.handshake_kind(),
            Some(spiffe_mtls::rustls::HandshakeKind::Full)
        );
    }
}

#[tokio::test]
async fn a_verified_chain_is_refused_once_its_root_leaves_the_bundle() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let server_svid = issue(&authority, SERVER);
    let server_source = source(server_svid.clone(), std::slice::from_ref(&bundle));
    let pair = pair(
        Arc::clone(&server_source),
        id(CLIENT),
        source(issue(&authority, CLIENT), std::slice::from_ref(&bundle)),
        id(SERVER),
    );
    // Twice: the second handshake is served from the verification cache.
    for _ in 0..2 {
        let (server, _) = handshake(Arc::clone(&pair.server), Arc::clone(&pair.client)).await;
        server.unwrap();
    }
    // The server now trusts another CA only: the client's chain no longer verifies.
    let other = ca("example.org");
    server_source.replace(
        X509Context::new(vec![server_svid], [other.bundle()].into_iter().collect()).unwrap(),
    );
    let (server, _) = handshake(pair.server, pair.client).await;
    let error = server.unwrap_err().to_string();
    assert!(
        error.contains("UnknownIssuer") || error.contains("BadSignature"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_whose_svid_expired_presents_nothing() {
    let authority = ca("example.org");
    let now = std::time::SystemTime::now();
    let expired = authority
        .issue(
            &SvidRequest::new(SERVER.parse().unwrap(), HOUR)
                .valid_between(now - HOUR, now - Duration::from_secs(60)),
        )
        .unwrap();
    let bundle = authority.bundle();
    let pair = pair(
        source(expired, std::slice::from_ref(&bundle)),
        authorize::any(),
        source(issue(&authority, CLIENT), &[bundle]),
        id(SERVER),
    );
    let (server, client) = handshake(pair.server, pair.client).await;
    assert!(server.is_err());
    assert!(client.is_err());
}

#[tokio::test]
async fn a_missing_svid_hint_fails_the_handshake() {
    let authority = ca("example.org");
    let bundle = authority.bundle();
    let server = tls::server_config(
        source(issue(&authority, SERVER), std::slice::from_ref(&bundle)),
        authorize::any(),
    )
    .svid_hint("no-such-hint")
    .build()
    .unwrap();
    let client = tls::client_config(source(issue(&authority, CLIENT), &[bundle]), id(SERVER))
        .build()
        .unwrap();
    let (server, client) = handshake(Arc::new(server), Arc::new(client)).await;
    assert!(server.is_err());
    assert!(client.is_err());
}

#[tokio::test]
async fn a_grpc_uri_needs_host_and_port() {
    let authority = ca("example.org");
    let config = tls::client_config(
        source(issue(&authority, CLIENT), &[authority.bundle()]),
        id(SERVER),
    )
    .build()
    .unwrap();
    for uri in ["https://localhost", "not a uri", "/path/only"] {
        let error = spiffe_mtls::net::grpc_channel(uri, &config)
            .await
            .unwrap_err();
        assert!(
            matches!(error, spiffe_mtls::net::GrpcChannelError::Uri(_)),
            "{uri}: {error}"
        );
    }
}
