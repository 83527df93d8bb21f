//! One audit event per authentication decision, with the peer, its trust domain, the decision
//! and the rule, and nothing else.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::tls::AUDIT_TARGET;
use spiffe_mtls::{Authorizer, X509Bundle, authorize, tls};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = BTreeMap<String, String>;

/// Keeps the fields of every audit event.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Fields>>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == AUDIT_TARGET {
            let mut fields = Fields::new();
            event.record(&mut Collect(&mut fields));
            self.events.lock().unwrap().push(fields);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

const SERVER: &str = "spiffe://example.org/server";
const CLIENT: &str = "spiffe://example.org/client";

fn source(ca: &DevCa, id: &str, bundles: &[X509Bundle]) -> StaticSource {
    let svid = ca
        .issue(&SvidRequest::new(
            id.parse().unwrap(),
            Duration::from_secs(600),
        ))
        .unwrap();
    StaticSource::new(X509Context::new(vec![svid], bundles.iter().cloned().collect()).unwrap())
}

/// A handshake in memory, on this thread; whether it completed.
fn handshake(server: ServerConfig, client: ClientConfig) -> bool {
    let name = ServerName::try_from("server").unwrap();
    let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server)).unwrap();
    let mut buffer = Vec::new();
    for _ in 0..10 {
        buffer.clear();
        while client.wants_write() {
            client.write_tls(&mut buffer).unwrap();
        }
        let mut input = &buffer[..];
        while !input.is_empty() {
            server.read_tls(&mut input).unwrap();
        }
        if server.process_new_packets().is_err() {
            return false;
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

fn run(server_rule: Authorizer, client_id: &str, client_ca: Option<&DevCa>) -> (bool, Vec<Fields>) {
    let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
    let bundle = ca.bundle();
    let server = tls::server_config(
        source(&ca, SERVER, std::slice::from_ref(&bundle)),
        server_rule,
    )
    .build()
    .unwrap();
    let client = tls::client_config(
        source(client_ca.unwrap_or(&ca), client_id, &[bundle]),
        authorize::id(SERVER.parse().unwrap()),
    )
    .build()
    .unwrap();
    let recorder = Recorder::default();
    let done = tracing::subscriber::with_default(recorder.clone(), || handshake(server, client));
    let events = recorder.events.lock().unwrap().clone();
    (done, events)
}

fn field<'a>(event: &'a Fields, name: &str) -> &'a str {
    event.get(name).map(String::as_str).unwrap_or_default()
}

const FIELDS: [&str; 7] = [
    "decision",
    "message",
    "peer",
    "rule",
    "side",
    "trust_domain",
    "reason",
];

fn only_known_fields(event: &Fields) {
    for name in event.keys() {
        assert!(
            FIELDS.contains(&name.as_str()),
            "unexpected audit field {name}"
        );
    }
}

#[test]
fn an_accepted_handshake_records_one_decision_per_side() {
    let (done, events) = run(authorize::id(CLIENT.parse().unwrap()), CLIENT, None);
    assert!(done);
    assert_eq!(events.len(), 2, "{events:?}");
    let client_side = &events[0];
    assert_eq!(field(client_side, "side"), "client");
    assert_eq!(field(client_side, "peer"), SERVER);
    assert_eq!(field(client_side, "decision"), "accepted");
    let server_side = &events[1];
    assert_eq!(field(server_side, "side"), "server");
    assert_eq!(field(server_side, "peer"), CLIENT);
    assert_eq!(field(server_side, "trust_domain"), "example.org");
    assert_eq!(field(server_side, "decision"), "accepted");
    assert_eq!(field(server_side, "rule"), format!("id {CLIENT}"));
    events.iter().for_each(only_known_fields);
}

#[test]
fn a_refused_id_records_the_rule_that_refused_it() {
    let (done, events) = run(
        authorize::id(CLIENT.parse().unwrap()),
        "spiffe://example.org/rogue",
        None,
    );
    assert!(!done);
    let refusal = events.last().unwrap();
    assert_eq!(field(refusal, "side"), "server");
    assert_eq!(field(refusal, "peer"), "spiffe://example.org/rogue");
    assert_eq!(field(refusal, "decision"), "denied");
    assert_eq!(field(refusal, "rule"), format!("id {CLIENT}"));
    events.iter().for_each(only_known_fields);
}

#[test]
fn an_unverifiable_peer_records_why_it_has_no_id() {
    let stranger = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
    let (done, events) = run(authorize::any(), CLIENT, Some(&stranger));
    assert!(!done);
    let refusal = events.last().unwrap();
    assert_eq!(field(refusal, "side"), "server");
    assert_eq!(field(refusal, "peer"), "-");
    assert_eq!(field(refusal, "decision"), "denied");
    assert!(!field(refusal, "reason").is_empty(), "{refusal:?}");
    events.iter().for_each(only_known_fields);
}
