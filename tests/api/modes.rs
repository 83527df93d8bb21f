//! The modes beyond mutual TLS: each one handshakes with the right peer, and refuses its
//! adversarial twin.
#![cfg(all(unix, feature = "dev-server"))]

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe_mtls::rustls::sign::CertifiedKey;
use spiffe_mtls::rustls::{
    self, ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::{Authorizer, X509Svid, authorize, tls};

/// The SPIFFE ID in the URI SAN of the peer's leaf, read from the connection (the tests'
/// own reading: `PeerIdentity` is made only by the crate's `net` functions).
fn peer_id(connection: &spiffe_mtls::rustls::CommonState) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let leaf = connection.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
        _ => None,
    })
}

const SERVER: &str = "spiffe://example.org/server";
const CLIENT: &str = "spiffe://example.org/client";
const HOUR: Duration = Duration::from_secs(3600);

fn ca() -> DevCa {
    DevCa::new("example.org".parse().unwrap(), HOUR).unwrap()
}

fn issue(ca: &DevCa, id: &str) -> X509Svid {
    ca.issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
        .unwrap()
}

fn source(ca: &DevCa, id: &str) -> StaticSource {
    let bundles = [ca.bundle()].into_iter().collect();
    StaticSource::new(X509Context::new(vec![issue(ca, id)], bundles).unwrap())
}

fn id(value: &str) -> Authorizer {
    authorize::id(value.parse().unwrap())
}

/// A small web PKI: a CA and server certificates it signs.
struct WebCa {
    root: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl WebCa {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let root = params.self_signed(&key).unwrap().der().clone();
        Self {
            root,
            issuer: Issuer::new(params, key),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        roots
    }

    /// A server certificate for `name`, with its key.
    fn server(&self, name: &str) -> CertifiedKey {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        let leaf = params.signed_by(&key, &self.issuer).unwrap().der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = spiffe_mtls::crypto::default_provider().unwrap();
        CertifiedKey::from_der(vec![leaf, self.root.clone()], key, &provider).unwrap()
    }
}

/// What each side of an in-memory handshake ended with.
struct Outcome {
    client: Result<ClientConnection, rustls::Error>,
    server: Result<ServerConnection, rustls::Error>,
}

/// Moves `from`'s pending records to `to` and processes them; the first error sticks.
fn pump(from: &mut Connection, to: &mut Connection, failed: &mut Option<rustls::Error>) {
    let mut bytes = Vec::new();
    while from.wants_write() {
        if from.write_tls(&mut bytes).is_err() {
            break;
        }
    }
    let mut input = &bytes[..];
    while !input.is_empty() && failed.is_none() {
        match to.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Err(error) = to.process_new_packets() {
            *failed = Some(error);
        }
    }
}

/// Both sides of a handshake, with the server's alert delivered to the client (TLS 1.3: a
/// client finishes before the server checks its certificate).
fn handshake(server: ServerConfig, client: ClientConfig, name: &str) -> Outcome {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut client = Connection::from(ClientConnection::new(Arc::new(client), name).unwrap());
    let mut server = Connection::from(ServerConnection::new(Arc::new(server)).unwrap());
    let (mut client_error, mut server_error) = (None, None);
    for _ in 0..10 {
        pump(&mut client, &mut server, &mut server_error);
        pump(&mut server, &mut client, &mut client_error);
        let done = |c: &Connection, e: &Option<rustls::Error>| e.is_some() || !c.is_handshaking();
        if done(&client, &client_error) && done(&server, &server_error) {
            // One more round delivers a late alert.
            pump(&mut client, &mut server, &mut server_error);
            pump(&mut server, &mut client, &mut client_error);
            break;
        }
    }
    let (Connection::Client(client), Connection::Server(server)) = (client, server) else {
        unreachable!()
    };
    let finish = |handshaking: bool| {
        if handshaking {
            Err(rustls::Error::General("handshake did not finish".into()))
        } else {
            Ok(())
        }
    };
    Outcome {
        client: match client_error {
            Some(error) => Err(error),
            None => finish(client.is_handshaking()).map(|()| client),
        },
        server: match server_error {
            Some(error) => Err(error),
            None => finish(server.is_handshaking()).map(|()| server),
        },
    }
}

fn error_text<T>(result: Result<T, rustls::Error>) -> String {
    match result {
        Ok(_) => panic!("the handshake succeeded"),
        Err(error) => format!("{error:?}"),
    }
}

/// A plain web-PKI client without a certificate.
fn anonymous_web_client(roots: RootCertStore) -> ClientConfig {
    let provider = spiffe_mtls::crypto::default_provider().unwrap();
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

// --- TLS-only client -------------------------------------------------------------------------

#[test]
fn tls_client_verifies_the_server_id_and_presents_nothing() {
    let ca = ca();
    let server = tls::tls_server_config(source(&ca, SERVER)).build().unwrap();
    let client = tls::tls_client_config(source(&ca, CLIENT), id(SERVER))
        .build()
        .unwrap();
    let outcome = handshake(server, client, "anything");
    let client = outcome.client.unwrap();
    let server = outcome.server.unwrap();
    let peer = peer_id(&client).unwrap();
    assert_eq!(peer, SERVER);
    assert!(
        server.peer_certificates().is_none(),
        "no client certificate"
    );
}

#[test]
fn tls_client_refuses_a_server_with_the_wrong_id() {
    let ca = ca();
    let server = tls::tls_server_config(source(&ca, "spiffe://example.org/impostor"))
        .build()
        .unwrap();
    let client = tls::tls_client_config(source(&ca, CLIENT), id(SERVER))
        .build()
        .unwrap();
    let error = handshake(server, client, "anything").client.unwrap_err();
    // The client's own error says what it expected and what the server presented (rustls
    // shows its payload with Debug).
    assert_eq!(
        error.to_string(),
        "invalid peer certificate: Other(OtherError(the server is not authorized: expected the \
         ID spiffe://example.org/server, presented spiffe://example.org/impostor))"
    );
}

#[test]
fn tls_client_refuses_a_server_of_an_untrusted_ca() {
    let (ca, other) = (ca(), self::ca());
    let server = tls::tls_server_config(source(&other, SERVER))
        .build()
        .unwrap();
    let client = tls::tls_client_config(source(&ca, CLIENT), authorize::any())
        .build()
        .unwrap();
    let error = error_text(handshake(server, client, "anything").client);
    // The other CA has the same subject: its signature does not verify under our root.
    assert!(
        error.contains("UnknownIssuer") || error.contains("BadSignature"),
        "{error}"
    );
}

#[test]
fn tls_client_is_refused_by_a_server_that_requires_a_client_svid() {
    let ca = ca();
    let server = tls::server_config(source(&ca, SERVER), authorize::any())
        .build()
        .unwrap();
    let client = tls::tls_client_config(source(&ca, CLIENT), id(SERVER))
        .build()
        .unwrap();
    let error = error_text(handshake(server, client, "anything").server);
    assert!(error.contains("NoCertificatesPresented"), "{error}");
}

// --- Optional client certificate -------------------------------------------------------------

/// A server that asks for a client SVID but lets clients in without one.
fn optional_client_server(ca: &DevCa) -> ServerConfig {
    tls::server_config(source(ca, SERVER), id(CLIENT))
        .client_certificate_optional()
        .build()
        .unwrap()
}

#[test]
fn optional_client_certificate_admits_a_client_without_one_anonymously() {
    let ca = ca();
    let client = tls::tls_client_config(source(&ca, CLIENT), id(SERVER))
        .build()
        .unwrap();
    let outcome = handshake(optional_client_server(&ca), client, "anything");
    let server = outcome.server.unwrap();
    assert_eq!(peer_id(&server), None);
    assert_eq!(peer_id(&outcome.client.unwrap()).as_deref(), Some(SERVER));
}

#[test]
fn optional_client_certificate_still_verifies_and_authorizes_a_presented_one() {
    let ca = ca();
    // The authorized client: its ID reaches the server.
    let client = tls::client_config(source(&ca, CLIENT), id(SERVER))
        .build()
        .unwrap();
    let server = handshake(optional_client_server(&ca), client, "anything")
        .server
        .unwrap();
    assert_eq!(peer_id(&server).as_deref(), Some(CLIENT));
    // Another ID of the same trust domain: refused, not downgraded to anonymous.
    let other = tls::client_config(source(&ca, "spiffe://example.org/other"), id(SERVER))
        .build()
        .unwrap();
    let error = error_text(handshake(optional_client_server(&ca), other, "anything").server);
    assert!(!error.contains("NoCertificatesPresented"), "{error}");
    // The authorized ID in an SVID of a CA the server does not trust (the client trusts the
    // server's CA): refused by the server, not taken as anonymous.
    let stranger = self::ca();
    let forged_svid = issue(&stranger, CLIENT);
    let forged_source = StaticSource::new(
        X509Context::new(vec![forged_svid], [ca.bundle()].into_iter().collect()).unwrap(),
    );
    let forged = tls::client_config(forged_source, id(SERVER))
        .build()
        .unwrap();
    let outcome = handshake(optional_client_server(&ca), forged, "anything");
    let error = error_text(outcome.server);
    assert!(
        error.contains("InvalidCertificate"),
        "the server refused it itself: {error}"
    );
}

// --- TLS-only server -------------------------------------------------------------------------

#[test]
fn tls_server_presents_its_svid_to_an_mtls_client() {
    let ca = ca();
    let server = tls::tls_server_config(source(&ca, SERVER)).build().unwrap();
    let client = tls::client_config(source(&ca, CLIENT), id(SERVER))
        .build()
        .unwrap();
    let outcome = handshake(server, client, "anything");
    let peer = peer_id(&outcome.client.unwrap()).unwrap();
    assert_eq!(peer, SERVER);
    // The server asked for no certificate, so the client's SVID was never sent.
    assert!(outcome.server.unwrap().peer_certificates().is_none());
}

#[test]
fn tls_server_neither_asks_for_nor_verifies_a_client_certificate() {
    let (ca, untrusted) = (ca(), self::ca());
    let server = tls::tls_server_config(source(&ca, SERVER)).build().unwrap();
    // A client whose SVID the server could not verify (another CA): not asked, not sent, so
    // not refused either; the connection is anonymous on the server side.
    let bundles = [ca.bundle()].into_iter().collect();
    let rogue = StaticSource::new(
        X509Context::new(
            vec![issue(&untrusted, "spiffe://example.org/rogue")],
            bundles,
        )
        .unwrap(),
    );
    let client = tls::client_config(rogue, id(SERVER)).build().unwrap();
    let outcome = handshake(server, client, "anything");
    assert!(outcome.client.is_ok());
    let server = outcome.server.unwrap();
    assert!(server.peer_certificates().is_none());
    assert!(peer_id(&server).is_none());
}

// --- mTLS web server -------------------------------------------------------------------------

#[test]
fn mtls_web_server_presents_its_web_certificate_and_admits_an_authorized_svid() {
    let (ca, web) = (ca(), WebCa::new("web CA"));
    let server =
        tls::mtls_web_server_config(web.server("localhost"), source(&ca, SERVER), id(CLIENT))
            .build()
            .unwrap();
    let client = tls::mtls_web_client_config(source(&ca, CLIENT), web.roots())
        .build()
        .unwrap();
    let outcome = handshake(server, client, "localhost");
    assert!(outcome.client.is_ok());
    let peer = peer_id(&outcome.server.unwrap()).unwrap();
    assert_eq!(peer, CLIENT);
}

#[test]
fn mtls_web_server_refuses_a_client_without_an_svid() {
    let (ca, web) = (ca(), WebCa::new("web CA"));
    let server = tls::mtls_web_server_config(
        web.server("localhost"),
        source(&ca, SERVER),
        authorize::any(),
    )
    .build()
    .unwrap();
    let error =
        error_text(handshake(server, anonymous_web_client(web.roots()), "localhost").server);
    assert!(error.contains("NoCertificatesPresented"), "{error}");
}

#[test]
fn mtls_web_server_refuses_an_unauthorized_client_id() {
    let (ca, web) = (ca(), WebCa::new("web CA"));
    let server =
        tls::mtls_web_server_config(web.server("localhost"), source(&ca, SERVER), id(CLIENT))
            .build()
            .unwrap();
    let client =
        tls::mtls_web_client_config(source(&ca, "spiffe://example.org/rogue"), web.roots())
            .build()
            .unwrap();
    let outcome = handshake(server, client, "localhost");
    let error = error_text(outcome.server);
    assert!(error.contains("ApplicationVerificationFailure"), "{error}");
    assert!(outcome.client.is_err(), "the client hears the refusal");
}

#[test]
fn mtls_web_server_refuses_a_client_svid_of_an_untrusted_ca() {
    let (ca, untrusted, web) = (ca(), self::ca(), WebCa::new("web CA"));
    let server = tls::mtls_web_server_config(
        web.server("localhost"),
        source(&ca, SERVER),
        authorize::any(),
    )
    .build()
    .unwrap();
    let client = tls::mtls_web_client_config(source(&untrusted, CLIENT), web.roots())
        .build()
        .unwrap();
    let error = error_text(handshake(server, client, "localhost").server);
    assert!(
        error.contains("UnknownIssuer") || error.contains("BadSignature"),
        "{error}"
    );
}

// --- mTLS web client -------------------------------------------------------------------------

#[test]
fn mtls_web_client_refuses_a_server_not_under_its_roots() {
    let (ca, web, other) = (ca(), WebCa::new("web CA"), WebCa::new("other CA"));
    let server = tls::mtls_web_server_config(
        other.server("localhost"),
        source(&ca, SERVER),
        authorize::any(),
    )
    .build()
    .unwrap();
    let client = tls::mtls_web_client_config(source(&ca, CLIENT), web.roots())
        .build()
        .unwrap();
    let error = error_text(handshake(server, client, "localhost").client);
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[test]
fn mtls_web_client_refuses_a_server_certificate_for_another_name() {
    let (ca, web) = (ca(), WebCa::new("web CA"));
    let server = tls::mtls_web_server_config(
        web.server("localhost"),
        source(&ca, SERVER),
        authorize::any(),
    )
    .build()
    .unwrap();
    let client = tls::mtls_web_client_config(source(&ca, CLIENT), web.roots())
        .build()
        .unwrap();
    let error = error_text(handshake(server, client, "api.example.com").client);
    assert!(error.contains("NotValidForName"), "{error}");
}

#[test]
fn mtls_web_client_refuses_a_spiffe_server_whose_svid_is_not_web_pki() {
    let (ca, web) = (ca(), WebCa::new("web CA"));
    let server = tls::server_config(source(&ca, SERVER), authorize::any())
        .build()
        .unwrap();
    let client = tls::mtls_web_client_config(source(&ca, CLIENT), web.roots())
        .build()
        .unwrap();
    let error = error_text(handshake(server, client, "localhost").client);
    assert!(error.contains("UnknownIssuer"), "{error}");
}

#[test]
fn mtls_web_client_needs_a_root() {
    let ca = ca();
    let error = tls::mtls_web_client_config(source(&ca, CLIENT), RootCertStore::empty())
        .build()
        .unwrap_err();
    assert!(matches!(error, tls::TlsConfigError::WebPki(_)), "{error}");
}

#[test]
fn every_mode_keeps_resumption_off() {
    let (ca, web) = (ca(), WebCa::new("web CA"));
    let servers = [
        tls::tls_server_config(source(&ca, SERVER)).build().unwrap(),
        tls::mtls_web_server_config(
            web.server("localhost"),
            source(&ca, SERVER),
            authorize::any(),
        )
        .build()
        .unwrap(),
    ];
    for server in servers {
        assert_eq!(server.send_tls13_tickets, 0);
        assert!(!server.session_storage.can_cache());
    }
    let clients = [
        tls::tls_client_config(source(&ca, CLIENT), authorize::any())
            .build()
            .unwrap(),
        tls::mtls_web_client_config(source(&ca, CLIENT), web.roots())
            .build()
            .unwrap(),
    ];
    for client in clients {
        let disabled = format!("{:?}", rustls::client::Resumption::disabled());
        assert_eq!(format!("{:?}", client.resumption), disabled);
    }
}
