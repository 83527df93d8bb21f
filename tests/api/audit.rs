//! One audit event per authentication decision, with the peer, its trust domain, the decision,
//! the rule and, for a denial, the reason, and nothing else; `accepted` only once the peer's
//! handshake signature verified.
#![cfg(all(unix, feature = "dev-server"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::rustls::client::ResolvesClientCert;
use spiffe_mtls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use spiffe_mtls::rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use spiffe_mtls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use spiffe_mtls::rustls::server::{ClientHello, ResolvesServerCert};
use spiffe_mtls::rustls::sign::CertifiedKey;
use spiffe_mtls::rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
    SignatureScheme, SupportedProtocolVersion,
};
use spiffe_mtls::source::{SourceError, StaticSource, Updates, X509Context, X509Source};
use spiffe_mtls::tls::AUDIT_TARGET;
use spiffe_mtls::{Authorizer, X509Bundle, X509Svid, authorize, rustls, tls};

use crate::common;
use common::capture::{Capture, Fields};

/// The target of this file's own markers (source reads, handshake steps).
const MARK: &str = "audit_test";

/// Keeps the fields of every audit event, and the order of audit events and markers.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Fields>>>,
    trail: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// Records an event of the audit target or of this file's markers.
    fn record(&self, target: &str, fields: Fields) {
        if target == MARK {
            self.trail
                .lock()
                .unwrap()
                .push(field(&fields, "message").to_owned());
        } else if target == AUDIT_TARGET {
            self.trail.lock().unwrap().push(format!(
                "{} {}",
                field(&fields, "side"),
                field(&fields, "decision")
            ));
            self.events.lock().unwrap().push(fields);
        }
    }

    /// Runs `f` with this recorder as the thread's subscriber; the events and the trail.
    fn capture<T>(&self, f: impl FnOnce() -> T) -> (T, Vec<Fields>, Vec<String>) {
        let recorder = self.clone();
        let subscriber =
            Capture::for_this_thread(move |target, fields| recorder.record(target, fields));
        let out = tracing::subscriber::with_default(subscriber, f);
        let events = std::mem::take(&mut *self.events.lock().unwrap());
        let trail = std::mem::take(&mut *self.trail.lock().unwrap());
        (out, events, trail)
    }
}

/// A source that marks each read in the trail: the verifier reads its source exactly once per
/// certificate check, so a read marks the moment the check ran.
#[derive(Debug)]
pub(crate) struct Marked {
    side: &'static str,
    inner: StaticSource,
}

impl X509Source for Marked {
    fn x509_context(&self) -> Result<Arc<X509Context>, SourceError> {
        tracing::info!(target: MARK, "{} source read", self.side);
        self.inner.x509_context()
    }

    fn updates(&self) -> Updates {
        self.inner.updates()
    }
}

const SERVER: &str = "spiffe://example.org/server";
const CLIENT: &str = "spiffe://example.org/client";
const ATTACKER: &str = "spiffe://example.org/attacker";

pub(crate) const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

pub(crate) fn ca(trust_domain: &str) -> DevCa {
    DevCa::new(trust_domain.parse().unwrap(), Duration::from_secs(3600)).unwrap()
}

pub(crate) fn svid(ca: &DevCa, id: &str) -> X509Svid {
    ca.issue(&SvidRequest::new(
        id.parse().unwrap(),
        Duration::from_secs(600),
    ))
    .unwrap()
}

pub(crate) fn source(side: &'static str, svid: X509Svid, bundles: &[X509Bundle]) -> Marked {
    let context = X509Context::new(vec![svid], bundles.iter().cloned().collect()).unwrap();
    Marked {
        side,
        inner: StaticSource::new(context),
    }
}

fn server_config(
    ca: &DevCa,
    rule: Authorizer,
    versions: &'static [&'static SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    let config = tls::server_config(source("server", svid(ca, SERVER), &[ca.bundle()]), rule)
        .protocol_versions(versions)
        .build()
        .unwrap();
    Arc::new(config)
}

fn client_config(
    ca: &DevCa,
    svid: X509Svid,
    versions: &'static [&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let config = tls::client_config(
        source("client", svid, &[ca.bundle()]),
        authorize::id(SERVER.parse().unwrap()),
    )
    .protocol_versions(versions)
    .build()
    .unwrap();
    Arc::new(config)
}

/// The TLS records at the start of `bytes`, whole.
fn records(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = 5 + usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        let (record, rest) = bytes.split_at(len.min(bytes.len()));
        out.push(record);
        bytes = rest;
    }
    out
}

/// A handshake in memory, on this thread; whether it completed. The client's messages reach
/// the server one TLS record at a time, each record marked in the trail; with a small client
/// `max_fragment_size` the client's Certificate and CertificateVerify arrive in different
/// records, so the trail shows which one a server-side event followed.
pub(crate) fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> bool {
    let name = ServerName::try_from("server").unwrap();
    let mut client = ClientConnection::new(Arc::clone(client), name).unwrap();
    let mut server = ServerConnection::new(Arc::clone(server)).unwrap();
    let mut buffer = Vec::new();
    for _ in 0..10 {
        buffer.clear();
        while client.wants_write() {
            client.write_tls(&mut buffer).unwrap();
        }
        for record in records(&buffer) {
            tracing::info!(target: MARK, "record to server");
            let mut input = record;
            while !input.is_empty() {
                server.read_tls(&mut input).unwrap();
            }
            if server.process_new_packets().is_err() {
                return false;
            }
        }
        buffer.clear();
        while server.wants_write() {
            server.write_tls(&mut buffer).unwrap();
        }
        let mut input = &buffer[..];
        while !input.is_empty() {
            client.read_tls(&mut input).unwrap();
        }
        if client.process_new_packets().is_err() {
            return false;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return true;
        }
    }
    false
}

/// The client's messages in records of at most 64 bytes.
fn fragmented(config: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = (**config).clone();
    config.max_fragment_size = Some(64);
    Arc::new(config)
}

fn field<'a>(event: &'a Fields, name: &str) -> &'a str {
    event.get(name).map(String::as_str).unwrap_or_default()
}

fn of_side<'a>(events: &'a [Fields], side: &str) -> Vec<&'a Fields> {
    events.iter().filter(|e| field(e, "side") == side).collect()
}

const ACCEPTED_FIELDS: [&str; 6] = [
    "decision",
    "message",
    "peer",
    "rule",
    "side",
    "trust_domain",
];

/// An event has exactly the fields of its decision: a denial adds the reason.
fn exact_fields(event: &Fields) {
    let mut expected: Vec<&str> = ACCEPTED_FIELDS.to_vec();
    if field(event, "decision") == "denied" {
        expected.push("reason");
        assert!(!field(event, "reason").is_empty(), "{event:?}");
    } else {
        assert_eq!(field(event, "decision"), "accepted", "{event:?}");
    }
    expected.sort_unstable();
    let names: Vec<&str> = event.keys().map(String::as_str).collect();
    assert_eq!(names, expected, "{event:?}");
}

/// The one event of `side`; it has exactly the fields of its decision.
fn one_event<'a>(events: &'a [Fields], side: &str) -> &'a Fields {
    let events_of_side = of_side(events, side);
    assert_eq!(events_of_side.len(), 1, "one {side} event: {events:?}");
    exact_fields(events_of_side[0]);
    events_of_side[0]
}

/// Asserts that the server recorded its acceptance while a later client record than the
/// certificate check's was processed: after the signature, not with the certificate.
fn server_accepted_after_a_later_record(trail: &[String]) {
    let accepted = trail
        .iter()
        .position(|m| m == "server accepted")
        .unwrap_or_else(|| panic!("no server acceptance: {trail:?}"));
    let check = trail[..accepted]
        .iter()
        .rposition(|m| m == "server source read")
        .unwrap_or_else(|| panic!("no certificate check before the acceptance: {trail:?}"));
    assert!(
        trail[check..accepted]
            .iter()
            .any(|m| m == "record to server"),
        "accepted in the same record as the certificate check: {trail:?}"
    );
}

fn accepted_once_per_side_after_the_signature(
    events: &[Fields],
    trail: &[String],
    client_id: &str,
) {
    let server_side = one_event(events, "server");
    assert_eq!(field(server_side, "decision"), "accepted");
    assert_eq!(field(server_side, "peer"), client_id);
    assert_eq!(field(server_side, "trust_domain"), "example.org");
    assert_eq!(field(server_side, "rule"), format!("the ID {client_id}"));
    let client_side = one_event(events, "client");
    assert_eq!(field(client_side, "decision"), "accepted");
    assert_eq!(field(client_side, "peer"), SERVER);
    assert_eq!(field(client_side, "trust_domain"), "example.org");
    assert_eq!(field(client_side, "rule"), format!("the ID {SERVER}"));
    server_accepted_after_a_later_record(trail);
}

#[test]
fn an_accepted_handshake_records_one_acceptance_per_side_after_the_signature() {
    for versions in [TLS13, TLS12] {
        let ca = ca("example.org");
        let server = server_config(&ca, authorize::id(CLIENT.parse().unwrap()), versions);
        let client = fragmented(&client_config(&ca, svid(&ca, CLIENT), versions));
        let (done, events, trail) = Recorder::default().capture(|| handshake(&server, &client));
        assert!(done, "{versions:?}");
        assert_eq!(events.len(), 2, "{versions:?}: {events:?}");
        accepted_once_per_side_after_the_signature(&events, &trail, CLIENT);
    }
}

#[test]
fn a_cache_hit_still_records_one_acceptance_per_handshake_after_the_signature() {
    // The same configs again and again: from the second round on, each side's verifier sees
    // the same chain against the same unchanged source, a verification cache hit.
    for versions in [TLS13, TLS12] {
        let ca = ca("example.org");
        let server = server_config(&ca, authorize::id(CLIENT.parse().unwrap()), versions);
        let client = fragmented(&client_config(&ca, svid(&ca, CLIENT), versions));
        let recorder = Recorder::default();
        for round in 0..3 {
            let (done, events, trail) = recorder.capture(|| handshake(&server, &client));
            assert!(done, "{versions:?} round {round}");
            assert_eq!(events.len(), 2, "{versions:?} round {round}: {events:?}");
            accepted_once_per_side_after_the_signature(&events, &trail, CLIENT);
        }
    }
}

#[test]
fn a_refused_id_records_one_denial_with_the_rule() {
    let ca = ca("example.org");
    let server = server_config(&ca, authorize::id(CLIENT.parse().unwrap()), TLS13);
    let client = client_config(&ca, svid(&ca, "spiffe://example.org/rogue"), TLS13);
    let (done, events, _) = Recorder::default().capture(|| handshake(&server, &client));
    assert!(!done);
    let refusal = one_event(&events, "server");
    assert_eq!(field(refusal, "peer"), "spiffe://example.org/rogue");
    assert_eq!(field(refusal, "trust_domain"), "example.org");
    assert_eq!(field(refusal, "decision"), "denied");
    assert_eq!(field(refusal, "rule"), format!("the ID {CLIENT}"));
    assert_eq!(
        field(refusal, "reason"),
        "the rule does not allow this SPIFFE ID"
    );
    // The client's decision about the server took effect: it accepted.
    assert_eq!(field(one_event(&events, "client"), "decision"), "accepted");
}

#[test]
fn a_refused_certificate_records_one_denial_with_the_reason() {
    // A chain of a CA the server does not trust, and a trust domain it holds no bundle for.
    let stranger = ca("example.org");
    let foreign = ca("other.org");
    for (issuer, id, reason) in [
        (&stranger, CLIENT, "does not verify with its issuer's key"),
        (
            &foreign,
            "spiffe://other.org/client",
            "no bundle for trust domain other.org",
        ),
    ] {
        let ca = ca("example.org");
        let server = server_config(&ca, authorize::any(), TLS13);
        let client = client_config(&ca, svid(issuer, id), TLS13);
        let (done, events, _) = Recorder::default().capture(|| handshake(&server, &client));
        assert!(!done);
        let refusal = one_event(&events, "server");
        assert_eq!(field(refusal, "peer"), "-");
        assert_eq!(field(refusal, "trust_domain"), "-");
        assert_eq!(field(refusal, "decision"), "denied");
        assert_eq!(field(refusal, "rule"), "X.509-SVID verification");
        assert!(field(refusal, "reason").contains(reason), "{refusal:?}");
    }
}

/// A server verifier that accepts any chain but checks signatures: the attacker's own end,
/// which records nothing.
#[derive(Debug)]
struct AnyServer(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Presents a victim's public chain with the attacker's private key. rustls checks that a
/// certificate and a key match only when asked (`CertifiedKey::keys_match`); this does not ask.
#[derive(Debug)]
pub(crate) struct Replay(Arc<CertifiedKey>);

impl Replay {
    pub(crate) fn new(victim: &X509Svid, attacker: &X509Svid) -> Arc<Self> {
        let key = Arc::clone(&attacker.certified_key().key);
        Arc::new(Self(Arc::new(CertifiedKey::new(
            victim.chain().to_vec(),
            key,
        ))))
    }
}

impl ResolvesClientCert for Replay {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Replay {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

#[allow(deprecated)] // rustls 0.23.48: ring has no post-quantum group
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn replaying_client(
    replay: Arc<Replay>,
    versions: &'static [&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(algorithms)))
        .with_client_cert_resolver(replay);
    config.max_fragment_size = Some(64);
    Arc::new(config)
}

fn replaying_server(
    replay: Arc<Replay>,
    versions: &'static [&'static SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(replay);
    Arc::new(config)
}

/// The one event of `side` is a denial of the victim for its handshake signature.
fn denied_for_the_signature(events: &[Fields], side: &str, victim: &str) {
    let denial = one_event(events, side);
    assert_eq!(field(denial, "decision"), "denied", "{denial:?}");
    assert_eq!(field(denial, "peer"), victim);
    assert_eq!(field(denial, "trust_domain"), "example.org");
    assert_eq!(field(denial, "rule"), "handshake signature");
    assert!(
        field(denial, "reason").starts_with("handshake signature did not verify: "),
        "{denial:?}"
    );
    assert!(
        events.iter().all(|e| field(e, "decision") != "accepted"),
        "{events:?}"
    );
}

#[test]
fn a_client_replaying_a_victims_chain_with_another_key_is_denied_never_accepted() {
    for versions in [TLS13, TLS12] {
        let ca = ca("example.org");
        let victim = svid(&ca, CLIENT);
        let attacker = svid(&ca, ATTACKER);
        // The server allows the victim: the certificate check passes, the signature cannot.
        let server = server_config(&ca, authorize::id(CLIENT.parse().unwrap()), versions);
        let client = replaying_client(Replay::new(&victim, &attacker), versions);
        let (done, events, trail) = Recorder::default().capture(|| handshake(&server, &client));
        assert!(!done, "{versions:?}");
        assert!(
            trail.iter().any(|m| m == "server source read"),
            "the certificate was checked: {trail:?}"
        );
        denied_for_the_signature(&events, "server", CLIENT);
        assert!(of_side(&events, "client").is_empty(), "{events:?}");
    }
}

#[test]
fn a_server_replaying_a_victims_chain_with_another_key_is_denied_never_accepted() {
    for versions in [TLS13, TLS12] {
        let ca = ca("example.org");
        let victim = svid(&ca, SERVER);
        let attacker = svid(&ca, ATTACKER);
        let server = replaying_server(Replay::new(&victim, &attacker), versions);
        let client = client_config(&ca, svid(&ca, CLIENT), versions);
        let (done, events, _) = Recorder::default().capture(|| handshake(&server, &client));
        assert!(!done, "{versions:?}");
        denied_for_the_signature(&events, "client", SERVER);
        assert!(of_side(&events, "server").is_empty(), "{events:?}");
    }
}

#[test]
fn a_replayed_chain_the_cache_holds_is_still_denied() {
    // The victim connects first, so its chain is in the server's verification cache; the
    // replay hits the cache and still cannot sign.
    for versions in [TLS13, TLS12] {
        let ca = ca("example.org");
        let victim = svid(&ca, CLIENT);
        let attacker = svid(&ca, ATTACKER);
        let server = server_config(&ca, authorize::id(CLIENT.parse().unwrap()), versions);
        let honest = fragmented(&client_config(&ca, victim.clone(), versions));
        let recorder = Recorder::default();
        let (done, events, trail) = recorder.capture(|| handshake(&server, &honest));
        assert!(done, "{versions:?}");
        accepted_once_per_side_after_the_signature(&events, &trail, CLIENT);

        let client = replaying_client(Replay::new(&victim, &attacker), versions);
        let (done, events, _) = recorder.capture(|| handshake(&server, &client));
        assert!(!done, "{versions:?}");
        denied_for_the_signature(&events, "server", CLIENT);

        let (done, events, trail) = recorder.capture(|| handshake(&server, &honest));
        assert!(done, "{versions:?}: the victim still gets in");
        accepted_once_per_side_after_the_signature(&events, &trail, CLIENT);
    }
}

/// A web-PKI chain for the name "server" (the name `handshake` dials), and its root.
fn web_certificate(ca_name: &str) -> (CertifiedKey, rustls::RootCertStore) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, ca_name);
    let root = params.self_signed(&ca_key).unwrap().der().clone();
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["server".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap()
        .der()
        .clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let certified = CertifiedKey::from_der(vec![leaf], key, &provider()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    (certified, roots)
}

#[test]
fn web_modes_record_one_event_per_decision() {
    for versions in [TLS13, TLS12] {
        let ca = ca("example.org");
        let (certificate, roots) = web_certificate("web CA");
        let server = tls::mtls_web_server_config(
            certificate,
            source("server", svid(&ca, SERVER), &[ca.bundle()]),
            authorize::id(CLIENT.parse().unwrap()),
        )
        .protocol_versions(versions)
        .build()
        .map(Arc::new)
        .unwrap();
        let client = |roots| {
            tls::mtls_web_client_config(source("client", svid(&ca, CLIENT), &[ca.bundle()]), roots)
                .protocol_versions(versions)
                .build()
                .map(Arc::new)
                .unwrap()
        };
        let (done, events, _) = Recorder::default().capture(|| handshake(&server, &client(roots)));
        assert!(done, "{versions:?}");
        assert_eq!(events.len(), 2, "{versions:?}: {events:?}");
        assert_eq!(field(one_event(&events, "server"), "peer"), CLIENT);
        let web = one_event(&events, "client");
        assert_eq!(field(web, "decision"), "accepted");
        assert_eq!(field(web, "peer"), "server");
        assert_eq!(field(web, "trust_domain"), "-");
        assert_eq!(
            field(web, "rule"),
            "web PKI certificate for the server name"
        );

        // A server under other roots: one denial by the client, nothing by the server.
        let (_, other_roots) = web_certificate("other CA");
        let (done, events, _) =
            Recorder::default().capture(|| handshake(&server, &client(other_roots)));
        assert!(!done);
        assert_eq!(events.len(), 1, "{versions:?}: {events:?}");
        assert_eq!(field(one_event(&events, "client"), "decision"), "denied");
    }
}

#[test]
fn a_tls_only_server_records_nothing_and_its_client_one_decision() {
    let ca = ca("example.org");
    let server = Arc::new(
        tls::tls_server_config(source("server", svid(&ca, SERVER), &[ca.bundle()]))
            .build()
            .unwrap(),
    );
    let client = Arc::new(
        tls::tls_client_config(
            source("client", svid(&ca, CLIENT), &[ca.bundle()]),
            authorize::id(SERVER.parse().unwrap()),
        )
        .build()
        .unwrap(),
    );
    let (done, events, _) = Recorder::default().capture(|| handshake(&server, &client));
    assert!(done);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(one_event(&events, "client"), "peer"), SERVER);
}

/// Decision-grade evidence: the structured events the audit sinks receive.
mod evidence {
    use sha2::Digest as _;
    use spiffe_mtls::Policy;
    use spiffe_mtls::audit::{self, AuditEvent, AuditLog, AuditSink, Decision};

    use super::*;

    /// The SHA-256 (hex) of `bytes`, by the `sha2` crate: not the crate's own hashing.
    fn digest(bytes: &[u8]) -> Option<String> {
        Some(
            sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    /// Keeps the events about the peers of one trust domain (each test has its own: the
    /// sink registry is process-wide), or about one leaf.
    struct Collected {
        domain: String,
        leaf: Option<String>,
        events: Mutex<Vec<AuditEvent>>,
    }

    impl AuditSink for Collected {
        fn record(&self, event: &AuditEvent) {
            let ours = event.trust_domain.as_deref() == Some(&self.domain)
                || (self.leaf.is_some() && event.leaf_sha256 == self.leaf);
            if ours {
                self.events.lock().unwrap().push(event.clone());
            }
        }
    }

    /// A handshake between a client `client` (a path) with an SVID of `client_ca` and a
    /// server of `ca` deciding by `policy`; whether it completed, and the events about
    /// `ca`'s trust domain or the client's leaf.
    fn decide(
        ca: &DevCa,
        client_ca: &DevCa,
        client: &str,
        policy: &Policy,
    ) -> (bool, Vec<AuditEvent>) {
        let domain = ca.bundle().trust_domain().to_string();
        let id = |path: &str| format!("spiffe://{domain}/{path}");
        let client_svid = svid(client_ca, &id(client));
        let sink = Arc::new(Collected {
            domain: domain.clone(),
            leaf: digest(client_svid.leaf()),
            events: Mutex::default(),
        });
        let registration = audit::register(sink.clone());
        let server_source = source("server", svid(ca, &id("server")), &[ca.bundle()]);
        let server = tls::server_config(server_source, policy.connect().clone())
            .build()
            .unwrap();
        let client = tls::client_config(
            source("client", client_svid, &[ca.bundle()]),
            authorize::id(id("server").parse().unwrap()),
        )
        .build()
        .unwrap();
        let done = handshake(&Arc::new(server), &Arc::new(client));
        drop(registration);
        let events = sink.events.lock().unwrap().clone();
        (done, events)
    }

    fn on_side(events: &[AuditEvent], side: &str) -> AuditEvent {
        let found: Vec<_> = events
            .iter()
            .filter(|event| event.side.to_string() == side)
            .collect();
        assert_eq!(found.len(), 1, "one {side} event: {events:?}");
        found[0].clone()
    }

    fn policy(domain: &str) -> (Policy, String) {
        let text = format!("[connect]\nids = [\"spiffe://{domain}/client\"]\n");
        (Policy::from_toml(&text).unwrap(), text)
    }

    #[test]
    fn an_acceptance_names_the_leaf_the_root_the_bundles_and_the_policy() {
        let ca = ca("accepted.evidence.example");
        let (policy, text) = policy("accepted.evidence.example");
        let (done, events) = decide(&ca, &ca, "client", &policy);
        assert!(done);
        let server = on_side(&events, "server");
        assert_eq!(server.decision, Decision::Accepted);
        assert_eq!(
            server.peer.as_deref(),
            Some("spiffe://accepted.evidence.example/client")
        );
        assert_eq!(server.leaf_sha256.as_ref().map(String::len), Some(64));
        assert_eq!(server.root_sha256, digest(ca.root()));
        assert!(server.bundle_generation.is_some());
        assert_eq!(server.policy_sha256, digest(text.as_bytes()));
        assert_eq!(server.reason, None);

        let client = on_side(&events, "client");
        assert_eq!(client.decision, Decision::Accepted);
        assert_eq!(client.root_sha256, digest(ca.root()));
        assert_ne!(
            client.leaf_sha256, server.leaf_sha256,
            "each side names its peer's leaf"
        );
        assert_eq!(
            client.policy_sha256, None,
            "a rule made in code has no policy"
        );
    }

    #[test]
    fn a_refusal_by_the_rule_names_the_same_evidence() {
        let ca = ca("refused.evidence.example");
        let (policy, text) = policy("refused.evidence.example");
        let (done, events) = decide(&ca, &ca, "rogue", &policy);
        assert!(!done);
        let server = on_side(&events, "server");
        assert_eq!(server.decision, Decision::Denied);
        assert_eq!(
            server.peer.as_deref(),
            Some("spiffe://refused.evidence.example/rogue")
        );
        assert_eq!(server.root_sha256, digest(ca.root()));
        assert_eq!(server.policy_sha256, digest(text.as_bytes()));
        assert!(server.leaf_sha256.is_some());
        assert_eq!(
            server.reason.as_deref(),
            Some("the rule does not allow this SPIFFE ID")
        );
    }

    #[test]
    fn an_unverified_chain_names_its_leaf_and_no_root() {
        let ca = ca("unverified.evidence.example");
        let stranger = super::ca("unverified.evidence.example");
        let (policy, _) = policy("unverified.evidence.example");
        let (done, events) = decide(&ca, &stranger, "client", &policy);
        assert!(!done);
        let server = on_side(&events, "server");
        assert_eq!(server.decision, Decision::Denied);
        assert_eq!(server.peer, None, "no chain verified");
        assert_eq!(server.rule, "X.509-SVID verification");
        assert!(server.leaf_sha256.is_some(), "found by its leaf");
        assert_eq!(server.root_sha256, None);
    }

    #[test]
    fn a_bundle_document_names_its_spiffe_sequence_and_a_pem_bundle_none() {
        use base64::Engine as _;
        let domain = "sequence.evidence.example";
        let ca = ca(domain);
        let id = |path: &str| format!("spiffe://{domain}/{path}");
        let root = base64::engine::general_purpose::STANDARD.encode(ca.root());
        let document = format!(
            r#"{{"spiffe_sequence": 42, "keys": [{{"use": "x509-svid", "kty": "EC", "x5c": ["{root}"]}}]}}"#
        );
        let sequenced =
            X509Bundle::from_jwks(domain.parse().unwrap(), document.as_bytes()).unwrap();
        assert_eq!(sequenced.spiffe_sequence(), Some(42));
        for (bundle, expected) in [(sequenced, Some(42)), (ca.bundle(), None)] {
            let sink = Arc::new(Collected {
                domain: domain.to_owned(),
                leaf: None,
                events: Mutex::default(),
            });
            let registration = audit::register(sink.clone());
            let server = tls::server_config(
                source("server", svid(&ca, &id("server")), &[bundle]),
                authorize::id(id("client").parse().unwrap()),
            )
            .build()
            .unwrap();
            let client = tls::client_config(
                source("client", svid(&ca, &id("client")), &[ca.bundle()]),
                authorize::id(id("server").parse().unwrap()),
            )
            .build()
            .unwrap();
            assert!(handshake(&Arc::new(server), &Arc::new(client)));
            drop(registration);
            let events = sink.events.lock().unwrap().clone();
            assert_eq!(on_side(&events, "server").spiffe_sequence, expected);
        }
    }

    #[test]
    fn a_stalled_log_never_stalls_a_decision_and_says_what_it_lost() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stalled");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        // Nobody reads the pipe: the writer thread blocks once the pipe is full. (Not
        // chained: a pipe cannot be read back to continue a chain.)
        let log = AuditLog::open(&fifo, false).unwrap();
        let id: spiffe_mtls::SpiffeId = "spiffe://stalled.example/peer".parse().unwrap();
        let event = AuditEvent::new(
            tls::Side::Server,
            Decision::Denied,
            Some(&id),
            "r".repeat(500),
        );
        let started = std::time::Instant::now();
        for _ in 0..20_000 {
            log.record(&event);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "recording waited for the file: {:?}",
            started.elapsed()
        );
        assert!(log.lost() > 0, "past the queue, events are counted lost");
        // A reader comes: the log writes what it queued, then a line naming the loss.
        let mut reader = std::fs::File::open(&fifo).unwrap();
        let drained = std::thread::spawn(move || {
            let mut text = String::new();
            reader.read_to_string(&mut text).unwrap();
            text
        });
        log.record(&event);
        drop(log);
        let text = drained.join().unwrap();
        // Every event recorded is a line, or counted in a line naming the lost.
        let (mut written, mut lost) = (0, 0);
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            match value["lost_events"].as_u64() {
                Some(count) => lost += count,
                None => written += 1,
            }
        }
        assert!(lost > 0, "some were lost: {written} written");
        assert_eq!(written + lost, 20_001);
    }

    #[test]
    fn the_log_file_is_a_chain_that_verifies_and_continues_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let ca = ca("log.evidence.example");
        let (policy, _) = policy("log.evidence.example");
        for _ in 0..2 {
            let log = Arc::new(AuditLog::open(&path, true).unwrap());
            let registration = audit::register(log.clone());
            decide(&ca, &ca, "client", &policy);
            decide(&ca, &ca, "rogue", &policy);
            log.flush();
            drop(registration);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let ours: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|event: &serde_json::Value| event["trust_domain"] == "log.evidence.example")
            .collect();
        assert!(ours.len() >= 6, "two runs of two handshakes: {text}");
        let denied = ours.iter().find(|e| e["decision"] == "denied").unwrap();
        for field in [
            "time",
            "side",
            "reason",
            "peer",
            "leaf_sha256",
            "root_sha256",
            "bundle_generation",
            "policy_sha256",
            "rule",
        ] {
            assert!(!denied[field].is_null(), "{field} in {denied}");
        }
        assert_eq!(
            audit::verify_chain(text.as_bytes()).unwrap().lines,
            text.lines().count(),
            "the second run continued the first's chain"
        );
    }
}
