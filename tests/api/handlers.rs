//! The peer's identity and address reach request handlers: an axum handler (through
//! `serve_http`) and a tonic handler (through `incoming` and `grpc_channel`); a revoked
//! client's gRPC stream ends while another client's calls go on.
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "workload-api",
    feature = "http",
    feature = "grpc"
))]

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::net::{
    self, CloseReason, GrpcConnectInfo, GrpcIncoming, LiveConnections, PeerIdentity, RemoteAddr,
};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::workload::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spiffe_mtls::workload::proto::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use spiffe_mtls::workload::proto::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use spiffe_mtls::{X509Svid, authorize, tls};
use tonic::{Request, Response, Status};

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
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
        let svid: X509Svid = self
            .ca
            .issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
            .unwrap();
        StaticSource::new(
            X509Context::new(vec![svid], [self.ca.bundle()].into_iter().collect()).unwrap(),
        )
    }
}

async fn who(Extension(peer): Extension<PeerIdentity>) -> String {
    peer.spiffe_id().to_string()
}

async fn whence(
    Extension(peer): Extension<PeerIdentity>,
    Extension(RemoteAddr(address)): Extension<RemoteAddr>,
) -> String {
    format!("{} {address}", peer.spiffe_id())
}

#[tokio::test]
async fn an_axum_handler_sees_the_client_id_and_address() {
    let material = Material::new();
    let server_config = tls::server_config(
        material.source(SERVER),
        authorize::id(CLIENT.parse().unwrap()),
    )
    .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
    .build()
    .unwrap();
    let app = axum::Router::new()
        .route("/whoami", get(who))
        .route("/whence", get(whence));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(net::serve_http(listener, Arc::new(server_config), app));

    let client_config = tls::client_config(
        material.source(CLIENT),
        authorize::id(SERVER.parse().unwrap()),
    )
    .build()
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let client_address = tcp.local_addr().unwrap();
    let stream = net::connect(
        Arc::new(client_config),
        ServerName::IpAddress(address.ip().into()),
        tcp,
    )
    .await
    .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/whoami")
        .header("host", "server")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], CLIENT.as_bytes());

    // The client's address reaches the handler beside its identity.
    let request = http::Request::get("/whence")
        .header("host", "server")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        format!("{CLIENT} {client_address}")
    );
    server.abort();
}

/// A Workload API service whose JWT call answers with the caller's SPIFFE ID: a stand-in for
/// any tonic service.
pub(crate) struct EchoIdentity;

type Never<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl SpiffeWorkloadApi for EchoIdentity {
    type FetchX509SVIDStream = Never<X509svidResponse>;
    type FetchX509BundlesStream = Never<X509BundlesResponse>;
    type FetchJWTBundlesStream = Never<JwtBundlesResponse>;

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let info = request
            .extensions()
            .get::<GrpcConnectInfo>()
            .ok_or_else(|| Status::unauthenticated("no peer identity"))?;
        let remote = info
            .remote_addr()
            .ok_or_else(|| Status::internal("no remote address"))?;
        Ok(Response::new(JwtsvidResponse {
            svids: vec![spiffe_mtls::workload::proto::Jwtsvid {
                spiffe_id: info.peer().spiffe_id().to_string(),
                svid: String::new(),
                hint: remote.to_string(),
            }],
        }))
    }

    /// An endless stream: nothing is sent, and only the connection's end ends it.
    async fn fetch_x509svid(
        &self,
        _: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }

    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn fetch_jwt_bundles(
        &self,
        _: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn validate_jwtsvid(
        &self,
        _: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }
}

#[tokio::test]
async fn a_tonic_handler_sees_the_client_id_and_address() {
    let material = Material::new();
    let server_config = tls::server_config(
        material.source(SERVER),
        authorize::id(CLIENT.parse().unwrap()),
    )
    .alpn_protocols([b"h2".to_vec()])
    .build()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(EchoIdentity))
            .serve_with_incoming(net::incoming(listener, Arc::new(server_config))),
    );

    let client_config = tls::client_config(
        material.source(CLIENT),
        authorize::id(SERVER.parse().unwrap()),
    )
    .build()
    .unwrap();
    let channel = net::grpc_channel(&format!("https://{address}"), &client_config)
        .await
        .unwrap();
    let answer = SpiffeWorkloadApiClient::new(channel)
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["test".into()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.svids[0].spiffe_id, CLIENT);
    // The handler saw the client's address: loopback, another port than the server's.
    let remote: std::net::SocketAddr = answer.svids[0].hint.parse().unwrap();
    assert_eq!(remote.ip(), address.ip());
    assert_ne!(remote.port(), address.port());

    // A client the server does not authorize never reaches the handler.
    let rogue = tls::client_config(
        material.source("spiffe://example.org/rogue"),
        authorize::any(),
    )
    .build()
    .unwrap();
    let refused = match net::grpc_channel(&format!("https://{address}"), &rogue).await {
        Err(_) => true,
        Ok(channel) => SpiffeWorkloadApiClient::new(channel)
            .fetch_jwtsvid(JwtsvidRequest {
                audience: vec!["test".into()],
                spiffe_id: String::new(),
            })
            .await
            .is_err(),
    };
    assert!(refused);
    server.abort();
}

fn jwt_request() -> JwtsvidRequest {
    JwtsvidRequest {
        audience: vec!["test".into()],
        spiffe_id: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_grpc_client_ends_its_stream_within_a_second_and_no_other() {
    const OTHER: &str = "spiffe://example.org/agent/other";
    let material = Material::new();
    let server_config = tls::server_config(material.source(SERVER), authorize::any())
        .alpn_protocols([b"h2".to_vec()])
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let live = LiveConnections::new();
    let incoming = GrpcIncoming::new(listener, Arc::new(server_config))
        .live_connections(live.clone())
        .into_stream();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(EchoIdentity))
            .serve_with_incoming(incoming),
    );
    let client = |id: &str| {
        tls::client_config(material.source(id), authorize::id(SERVER.parse().unwrap()))
            .build()
            .unwrap()
    };
    let uri = format!("https://{address}");
    let mut revoked =
        SpiffeWorkloadApiClient::new(net::grpc_channel(&uri, &client(CLIENT)).await.unwrap());
    let mut kept =
        SpiffeWorkloadApiClient::new(net::grpc_channel(&uri, &client(OTHER)).await.unwrap());
    let mut stream = revoked
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    kept.fetch_jwtsvid(jwt_request()).await.unwrap();
    let mut other_stream = kept
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.len(), 2);

    // Good twin: a re-check that finds nothing closes nothing.
    assert_eq!(live.recheck(|_| None), 0);
    let started = std::time::Instant::now();
    assert_eq!(live.revoke(&CLIENT.parse().unwrap()), 1);
    let ended = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("the revoked client's stream is still open after 1 s");
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(live.closed_count(CloseReason::Revoked), 1);

    // The other client's stream is still open, and its calls are answered.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other_stream.message())
            .await
            .is_err(),
        "the other stream ended"
    );
    let answer = kept
        .fetch_jwtsvid(jwt_request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.svids[0].spiffe_id, OTHER);
    server.abort();
}
