//! Refusals said in words on every client: what the rule expected and what the peer
//! presented, or what the server's alert means for the ID we presented; never a TLS alert's
//! name alone (gRPC, hyper-util, reqwest, raw streams).
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "workload-api",
    feature = "http",
    feature = "grpc",
    feature = "reqwest"
))]

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::net::{self, HandshakeRefusal, MtlsConnector};
use spiffe_mtls::rustls::{ClientConfig, ServerConfig};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::tls::Side;
use spiffe_mtls::workload::proto::JwtsvidRequest;
use spiffe_mtls::workload::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spiffe_mtls::{Authorizer, authorize, tls};

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
const ROGUE: &str = "spiffe://example.org/agent/rogue";
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

    fn source(&self, id: &str) -> StaticSource {
        let svid = self
            .ca
            .issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
            .unwrap();
        StaticSource::new(
            X509Context::new(vec![svid], [self.ca.bundle()].into_iter().collect()).unwrap(),
        )
    }

    fn client(&self, id: &str, rule: Authorizer) -> ClientConfig {
        tls::client_config(self.source(id), rule).build().unwrap()
    }

    fn server(&self, rule: Authorizer, alpn: &[&[u8]]) -> ServerConfig {
        tls::server_config(self.source(SERVER), rule)
            .alpn_protocols(alpn.iter().map(|p| p.to_vec()))
            .build()
            .unwrap()
    }
}

fn id(value: &str) -> Authorizer {
    authorize::id(value.parse().unwrap())
}

/// An empty tonic server (every call is unimplemented) behind `config`.
async fn grpc_server(config: ServerConfig) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(net::incoming(listener, Arc::new(config))),
    );
    address
}

/// An axum server answering "ok" behind `config`.
async fn http_server(config: ServerConfig) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(net::serve_http(listener, Arc::new(config), app));
    address
}

fn not_authorized(expected: &str, presented: &str) -> String {
    format!("the server is not authorized: expected the ID {expected}, presented {presented}")
}

fn refused_us(own: &str) -> String {
    format!(
        "the server refused our certificate (TLS alert access_denied): it does not authorize \
         {own}"
    )
}

#[tokio::test]
async fn grpc_channel_to_a_server_it_does_not_authorize() {
    let material = Material::new();
    let address = grpc_server(material.server(authorize::any(), &[b"h2"])).await;
    let uri = format!("https://{address}");
    let error = net::grpc_channel(&uri, &material.client(CLIENT, id(OTHER)))
        .await
        .unwrap_err();
    let expected = format!("cannot connect to {uri}: {}", not_authorized(OTHER, SERVER));
    assert_eq!(error.to_string(), expected);
    // What `main() -> Result<(), Box<dyn Error>>` prints: the same sentence, not a dump.
    assert_eq!(format!("{error:?}"), expected);
    assert!(HandshakeRefusal::find(&error).is_some());
}

#[tokio::test]
async fn grpc_call_to_a_server_that_does_not_authorize_us() {
    let material = Material::new();
    let address = grpc_server(material.server(id(CLIENT), &[b"h2"])).await;
    let uri = format!("https://{address}");
    // TLS 1.3: the handshake finishes on the client's side; the refusal comes with the call.
    let status = match net::grpc_channel(&uri, &material.client(ROGUE, authorize::any())).await {
        Err(error) => {
            assert_eq!(
                error.to_string(),
                format!(
                    "cannot connect to {uri}: {}",
                    refused_us(&format!("{ROGUE} (our ID)"))
                )
            );
            return;
        }
        Ok(channel) => SpiffeWorkloadApiClient::new(channel)
            .fetch_jwtsvid(JwtsvidRequest {
                audience: vec!["test".into()],
                spiffe_id: String::new(),
            })
            .await
            .unwrap_err(),
    };
    let described = net::describe_error(&status, Side::Client, None);
    assert!(
        described.ends_with(&refused_us(&format!("{ROGUE} (our ID)"))),
        "{described}"
    );
    assert!(!described.contains("AccessDenied"), "{described}");
}

#[tokio::test]
async fn hyper_and_reqwest_clients_refused_by_the_server() {
    let material = Material::new();
    let address = http_server(material.server(id(CLIENT), &[b"h2", b"http/1.1"])).await;
    let url = format!("https://{address}/");

    let hyper = Client::builder(TokioExecutor::new()).build::<_, Empty<bytes::Bytes>>(
        MtlsConnector::new(material.client(ROGUE, authorize::any())),
    );
    let error = hyper.get(url.parse().unwrap()).await.unwrap_err();
    let described = net::describe_error(&error, Side::Client, None);
    assert!(
        described.ends_with(&refused_us(&format!("{ROGUE} (our ID)"))),
        "{described}"
    );
    // HTTP/2 (h2) keeps an I/O error's kind and text, not the error: the text is there.
    assert!(!described.contains("AccessDenied"), "{described}");

    let reqwest = net::reqwest_client(material.client(ROGUE, authorize::any())).unwrap();
    let error = reqwest.get(&url).send().await.unwrap_err();
    let described = net::describe_error(&error, Side::Client, None);
    assert!(
        described.ends_with(&refused_us("our SPIFFE ID")),
        "{described}"
    );
    let own = ROGUE.parse().unwrap();
    let described = net::describe_error(&error, Side::Client, Some(&own));
    assert!(
        described.ends_with(&refused_us(&format!("{ROGUE} (our ID)"))),
        "{described}"
    );
}

#[tokio::test]
async fn reqwest_client_that_does_not_authorize_the_server() {
    let material = Material::new();
    let address = http_server(material.server(authorize::any(), &[b"h2", b"http/1.1"])).await;
    let reqwest = net::reqwest_client(material.client(CLIENT, id(OTHER))).unwrap();
    let error = reqwest
        .get(format!("https://{address}/"))
        .send()
        .await
        .unwrap_err();
    let described = net::describe_error(&error, Side::Client, None);
    assert!(
        described.ends_with(&not_authorized(OTHER, SERVER)),
        "{described}"
    );
    // Even printed without our help, the chain says what was expected and presented.
    let mut chain = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(&error);
    while let Some(link) = cause {
        chain.push_str(&format!("{link}: "));
        cause = link.source();
    }
    assert!(chain.contains(&not_authorized(OTHER, SERVER)), "{chain}");
}

#[tokio::test]
async fn the_dev_server_reports_each_refused_caller() {
    use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
    use spiffe_mtls::workload::{EndpointAddress, WorkloadClient};

    let dir = tempfile::tempdir().unwrap();
    let config = DevServerConfig::from_toml(
        "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/web\"\n\
         selectors = [\"unix:uid:4294967294\", \"unix:path:/srv/web\"]\n",
    )
    .unwrap();
    let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
    let server = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .unwrap();
    let mut refusals = server.refusals();
    let mut client = WorkloadClient::connect(&address).await.unwrap();
    assert!(client.fetch_x509_context().await.is_err());
    let refusal = tokio::time::timeout(Duration::from_secs(10), refusals.recv())
        .await
        .unwrap()
        .unwrap();
    let uid = spiffe_mtls::dev_server::effective_uid().unwrap();
    assert_eq!(refusal.call, "FetchX509SVID");
    assert_eq!(refusal.uid, Some(uid));
    assert_eq!(refusal.pid, Some(std::process::id()));
    assert_eq!(refusal.path, Some(std::env::current_exe().unwrap()));
    assert_eq!(
        refusal.reason,
        "no entry matches: spiffe://example.org/web needs unix:uid:4294967294, unix:path:/srv/web"
    );
    server.shutdown().await;
}
