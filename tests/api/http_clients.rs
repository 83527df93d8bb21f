//! HTTP clients over mutual TLS against `serve_http`: the hyper-util connector and the reqwest
//! client each see the server's ID while the server's handler sees theirs; a server with
//! another ID is refused by the client before any request reaches it; the reqwest client
//! presents a rotated SVID on its next connection.
#![cfg(all(unix, feature = "dev-server", feature = "http", feature = "reqwest"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::net::{self, MtlsConnector, PeerIdentity};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::{X509Svid, authorize, tls};

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
const OTHER: &str = "spiffe://example.org/agent/other";
const HOUR: Duration = Duration::from_secs(3600);

struct Material {
    ca: DevCa,
}

impl Material {
    fn new() -> Self {
        Self {
            ca: DevCa::new("example.org".parse().unwrap(), HOUR).unwrap(),
        }
    }

    fn svid(&self, id: &str) -> X509Svid {
        self.ca
            .issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
            .unwrap()
    }

    fn context(&self, id: &str) -> X509Context {
        X509Context::new(
            vec![self.svid(id)],
            [self.ca.bundle()].into_iter().collect(),
        )
        .unwrap()
    }

    fn source(&self, id: &str) -> StaticSource {
        StaticSource::new(self.context(id))
    }

    fn client_config(&self, id: &str, server: &str) -> spiffe_mtls::rustls::ClientConfig {
        tls::client_config(self.source(id), authorize::id(server.parse().unwrap()))
            .build()
            .unwrap()
    }
}

/// A server for `CLIENT` whose `/whoami` answers with the caller's ID and counts its calls,
/// and whose `/leaf` answers with the length and last bytes of the caller's leaf.
struct Server {
    address: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_server(material: &Material) -> Server {
    let config = tls::server_config(
        material.source(SERVER),
        authorize::id(CLIENT.parse().unwrap()),
    )
    .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
    .build()
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app =
        axum::Router::new()
            .route(
                "/whoami",
                get(move |Extension(peer): Extension<PeerIdentity>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move { peer.spiffe_id().to_string() }
                }),
            )
            .route(
                "/leaf",
                get(|Extension(peer): Extension<PeerIdentity>| async move {
                    hex(peer.chain()[0].as_ref())
                }),
            );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(net::serve_http(listener, Arc::new(config), app));
    Server {
        address,
        calls,
        task,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hyper_client(connector: MtlsConnector) -> Client<MtlsConnector, Empty<bytes::Bytes>> {
    Client::builder(TokioExecutor::new()).build(connector)
}

#[tokio::test]
async fn hyper_connector_and_server_see_each_other() {
    let material = Material::new();
    let server = start_server(&material).await;
    let client = hyper_client(MtlsConnector::new(material.client_config(CLIENT, SERVER)));

    for _ in 0..2 {
        let uri = format!("https://{}/whoami", server.address)
            .parse()
            .unwrap();
        let response = client.get(uri).await.unwrap();
        assert_eq!(response.status(), 200);
        // The connector offered h2 and http/1.1; the server chose h2.
        assert_eq!(response.version(), http::Version::HTTP_2);
        let peer = response
            .extensions()
            .get::<PeerIdentity>()
            .expect("the connector hands back the server's identity")
            .clone();
        assert_eq!(peer.spiffe_id().to_string(), SERVER);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], CLIENT.as_bytes());
    }
    assert_eq!(server.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn hyper_connector_speaks_http1_when_asked() {
    let material = Material::new();
    let server = start_server(&material).await;
    let mut config = material.client_config(CLIENT, SERVER);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = hyper_client(MtlsConnector::new(config));
    let uri = format!("https://{}/whoami", server.address)
        .parse()
        .unwrap();
    let response = client.get(uri).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    let peer = response.extensions().get::<PeerIdentity>().unwrap();
    assert_eq!(peer.spiffe_id().to_string(), SERVER);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], CLIENT.as_bytes());
}

#[tokio::test]
async fn reqwest_client_and_server_see_each_other() {
    let material = Material::new();
    let server = start_server(&material).await;
    let client = net::reqwest_client(material.client_config(CLIENT, SERVER)).unwrap();

    let response = client
        .get(format!("https://{}/whoami", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let peer = net::reqwest_peer(&response).expect("reqwest hands back the server's leaf");
    assert_eq!(peer.spiffe_id().to_string(), SERVER);
    assert_eq!(peer.chain().len(), 1);
    assert_eq!(response.text().await.unwrap(), CLIENT);
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_with_another_id_never_receives_a_request() {
    let material = Material::new();
    let server = start_server(&material).await;
    let url = format!("https://{}/whoami", server.address);

    // Both clients accept only OTHER; the server presents SERVER.
    let hyper = hyper_client(MtlsConnector::new(material.client_config(CLIENT, OTHER)));
    let error = hyper.get(url.parse().unwrap()).await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    // Valid but not authorized: said as what the rule expected and what was presented.
    let expected =
        format!("the server is not authorized: expected the ID {OTHER}, presented {SERVER}");
    let refusal = net::HandshakeRefusal::find(&error).expect("the connector's refusal");
    assert_eq!(refusal.to_string(), expected);
    let described = net::describe_error(&error, spiffe_mtls::tls::Side::Client, None);
    assert!(described.ends_with(&expected), "{described}");

    let reqwest = net::reqwest_client(material.client_config(CLIENT, OTHER)).unwrap();
    let error = reqwest.get(&url).send().await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let described = net::describe_error(&error, spiffe_mtls::tls::Side::Client, None);
    assert!(described.ends_with(&expected), "{described}");
    assert!(
        !described.contains("ApplicationVerificationFailure"),
        "{described}"
    );

    // Give the server time to run anything it would have run.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn reqwest_client_never_sends_in_the_clear() {
    let material = Material::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let client = net::reqwest_client(material.client_config(CLIENT, SERVER)).unwrap();
    let error = client
        .get(format!("http://{address}/whoami"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_builder(), "{error:?}");
    // Nothing connected.
    let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
    assert!(accepted.is_err());
}

#[tokio::test]
async fn reqwest_client_presents_a_rotated_svid() {
    let material = Material::new();
    let server = start_server(&material).await;
    let source = Arc::new(material.source(CLIENT));
    let config = tls::client_config(Arc::clone(&source), authorize::id(SERVER.parse().unwrap()))
        .build()
        .unwrap();
    // No idle connections kept: every request makes a new handshake.
    let client = net::reqwest_builder(config)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("https://{}/leaf", server.address);

    let first = client.get(&url).send().await.unwrap().text().await.unwrap();
    let rotated = material.context(CLIENT);
    let new_leaf = hex(rotated.default_svid().leaf().as_ref());
    assert_ne!(first, new_leaf);
    source.replace(rotated);
    let second = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(second, new_leaf);
}
