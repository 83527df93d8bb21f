//! Every reason a live connection is closed for (`expired`, `bundle`, `policy`, `revoked`,
//! `lifetime`), on every kind of server the crate builds: `HttpServer` with an idle HTTP/1.1
//! connection and an HTTP/2 one with an endless response in flight, and a tonic server fed
//! by `GrpcIncoming` with an endless gRPC stream. For each reason, the peer that no longer
//! passes loses all three within 1 s of the cause, and a good peer's connections on the same
//! servers stay open and served (issue 18; the proxy's are in `tests/cli/proxy_live.rs`).
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "workload-api",
    feature = "http",
    feature = "grpc"
))]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Extension;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::net::{
    self, CloseReason, CurrentTrust, GrpcIncoming, HttpServer, LiveConnections, PeerIdentity,
};
use spiffe_mtls::rustls::ClientConfig;
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::workload::proto::X509svidRequest;
use spiffe_mtls::workload::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spiffe_mtls::workload::proto::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use spiffe_mtls::{BundleSet, SvidVerifier, X509Svid, authorize, tls};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

use crate::handlers::EchoIdentity;

const SERVER: &str = "spiffe://example.org/agent/server";
const GOOD: &str = "spiffe://example.org/agent/good";
const ROGUE: &str = "spiffe://example.org/agent/rogue";
/// A peer of a federated trust domain: the one a de-federation drops.
const PARTNER: &str = "spiffe://partner.org/agent/rogue";
const HOUR: Duration = Duration::from_secs(3600);
/// The acceptance bound: closed within this long of the cause.
const WITHIN: Duration = Duration::from_secs(1);
/// How long a test waits for anything at most.
const PATIENCE: Duration = Duration::from_secs(10);
/// The short-lived certificate's remaining life, and the short lifetime.
const SHORT: Duration = Duration::from_millis(1500);

struct World {
    example: DevCa,
    partner: DevCa,
    live: LiveConnections,
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
}

impl World {
    async fn start() -> Self {
        let example = DevCa::new("example.org".parse().unwrap(), HOUR).unwrap();
        let partner = DevCa::new("partner.org".parse().unwrap(), HOUR).unwrap();
        let svid = example
            .issue(&SvidRequest::new(SERVER.parse().unwrap(), HOUR))
            .unwrap();
        let bundles: BundleSet = [example.bundle(), partner.bundle()].into_iter().collect();
        let server_config = |alpn: &[&[u8]]| {
            let source =
                StaticSource::new(X509Context::new(vec![svid.clone()], bundles.clone()).unwrap());
            Arc::new(
                tls::server_config(source, authorize::any())
                    .alpn_protocols(alpn.iter().map(|p| p.to_vec()))
                    .build()
                    .unwrap(),
            )
        };
        let live = LiveConnections::new();

        let endless = || async {
            let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
                Duration::from_millis(50),
            ))
            .map(|_| Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"tick\n")));
            axum::body::Body::from_stream(ticks)
        };
        let app = axum::Router::new()
            .route(
                "/whoami",
                get(|Extension(peer): Extension<PeerIdentity>| async move { peer.to_string() }),
            )
            .route("/stream", get(endless));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        tokio::spawn(
            HttpServer::new(listener, server_config(&[b"h2", b"http/1.1"]))
                .live_connections(live.clone())
                .serve(app),
        );

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = listener.local_addr().unwrap();
        let incoming = GrpcIncoming::new(listener, server_config(&[b"h2"]))
            .live_connections(live.clone())
            .into_stream();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SpiffeWorkloadApiServer::new(EchoIdentity))
                .serve_with_incoming(incoming),
        );
        Self {
            example,
            partner,
            live,
            http,
            grpc,
        }
    }

    /// A client config presenting `id` (issued by its trust domain's CA, valid until
    /// `not_after`), trusting both trust domains, requiring the server's ID.
    fn client(&self, id: &str, not_after: SystemTime) -> Arc<ClientConfig> {
        let ca = if id.starts_with("spiffe://partner.org/") {
            &self.partner
        } else {
            &self.example
        };
        let request = SvidRequest::new(id.parse().unwrap(), HOUR)
            .valid_between(SystemTime::now() - Duration::from_secs(60), not_after);
        let svid: X509Svid = ca.issue(&request).unwrap();
        let bundles: BundleSet = [self.example.bundle(), self.partner.bundle()]
            .into_iter()
            .collect();
        let source = StaticSource::new(X509Context::new(vec![svid], bundles).unwrap());
        Arc::new(
            tls::client_config(source, authorize::id(SERVER.parse().unwrap()))
                .build()
                .unwrap(),
        )
    }

    /// Opens the three kinds of connection as the peer of `config`, each served once and
    /// then left open (idle, or with its endless response or stream in flight).
    async fn connect(&self, config: &Arc<ClientConfig>) -> Connections {
        let tls = |address, alpn: &[&[u8]]| {
            let mut config = (**config).clone();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            let config = Arc::new(config);
            async move {
                let tcp = TcpStream::connect(address).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                TokioIo::new(net::connect(config, name, tcp).await.unwrap())
            }
        };
        let get_request = |path: &str| {
            http::Request::get(format!("https://localhost{path}"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap()
        };
        let (mut h1, connection) =
            hyper::client::conn::http1::handshake(tls(self.http, &[b"http/1.1"]).await)
                .await
                .unwrap();
        let h1_driver = tokio::spawn(connection);
        let response = h1.send_request(get_request("/whoami")).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();

        let (mut h2, connection) = hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            tls(self.http, &[b"h2"]).await,
        )
        .await
        .unwrap();
        let h2_driver = tokio::spawn(connection);
        let streaming = h2.send_request(get_request("/stream")).await.unwrap();
        assert_eq!(streaming.status(), 200);
        let mut h2_body = streaming.into_body();
        h2_body.frame().await.unwrap().unwrap();

        let channel = net::grpc_channel(&format!("https://{}", self.grpc), config)
            .await
            .unwrap();
        let grpc_stream = SpiffeWorkloadApiClient::new(channel)
            .fetch_x509svid(X509svidRequest {})
            .await
            .unwrap()
            .into_inner();
        Connections {
            _h1: h1,
            h1_driver,
            h2,
            h2_driver,
            h2_body,
            grpc_stream,
        }
    }
}

struct Connections {
    _h1: hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>,
    h1_driver: tokio::task::JoinHandle<hyper::Result<()>>,
    h2: hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    h2_driver: tokio::task::JoinHandle<hyper::Result<()>>,
    h2_body: hyper::body::Incoming,
    grpc_stream: tonic::Streaming<spiffe_mtls::workload::proto::X509svidResponse>,
}

impl Connections {
    /// Waits until all three are closed; the time from `cause` to the last closure.
    async fn closed_since(mut self, cause: Instant) -> Duration {
        let all = async {
            while let Some(Ok(_)) = self.h2_body.frame().await {}
            let _ = self.h2_driver.await;
            let _ = self.h1_driver.await;
            while let Ok(Some(_)) = self.grpc_stream.message().await {}
        };
        tokio::time::timeout(PATIENCE, all)
            .await
            .expect("a connection of the peer stayed open");
        cause.elapsed()
    }

    /// Asserts that all three are still open: the drivers run, the stream has not ended,
    /// and a new request is answered on the HTTP/2 connection.
    async fn assert_open(&mut self) {
        assert!(
            !self.h1_driver.is_finished(),
            "the HTTP/1.1 connection closed"
        );
        assert!(
            !self.h2_driver.is_finished(),
            "the HTTP/2 connection closed"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(100), self.grpc_stream.message())
                .await
                .is_err(),
            "the gRPC stream ended"
        );
        let request = http::Request::get("https://localhost/whoami")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = self.h2.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// Opens a good peer's and `bad`'s connections, causes `reason` with `cause` (which returns
/// when the cause takes effect), and checks the outcome.
async fn closes_for(reason: CloseReason, bad: &str, bad_until: SystemTime) -> World {
    let world = World::start().await;
    let far = SystemTime::now() + HOUR;
    let mut good = world.connect(&world.client(GOOD, far)).await;
    if reason == CloseReason::Lifetime {
        // Connections registered from now on: the good peer's stay unlimited.
        world.live.set_max_lifetime(Some(SHORT));
    }
    let bad_connections = world.connect(&world.client(bad, bad_until)).await;
    let connected = Instant::now();
    assert_eq!(world.live.len(), 6);
    // Good twin: a re-check by the trust in force closes nothing.
    let verifier = SvidVerifier::new().unwrap();
    let all: BundleSet = [world.example.bundle(), world.partner.bundle()]
        .into_iter()
        .collect();
    let anyone = authorize::any();
    let bad_id: spiffe_mtls::SpiffeId = bad.parse().unwrap();
    let trust = |bundles, authorizer, revoked| CurrentTrust {
        verifier: &verifier,
        bundles,
        authorizer,
        revoked,
    };
    assert_eq!(world.live.recheck_trust(trust(&all, &anyone, &[])), 0);

    let only_example: BundleSet = [world.example.bundle()].into_iter().collect();
    let not_bad = authorize::id(GOOD.parse().unwrap());
    let cause = match reason {
        CloseReason::Expired => {
            Instant::now() + bad_until.duration_since(SystemTime::now()).unwrap()
        }
        CloseReason::Lifetime => connected + SHORT,
        CloseReason::Bundle => {
            // De-federated: partner.org's bundle is gone.
            assert_eq!(
                world.live.recheck_trust(trust(&only_example, &anyone, &[])),
                3
            );
            Instant::now()
        }
        CloseReason::Policy => {
            assert_eq!(world.live.recheck_trust(trust(&all, &not_bad, &[])), 3);
            Instant::now()
        }
        CloseReason::Revoked => {
            let revoked = [bad_id.clone()];
            assert_eq!(world.live.recheck_trust(trust(&all, &anyone, &revoked)), 3);
            Instant::now()
        }
        other => panic!("no case for {other}"),
    };
    let took = bad_connections.closed_since(cause).await;
    eprintln!("{reason}: the three connections closed {took:?} after the cause");
    assert!(took < WITHIN, "{reason}: closed {took:?} after the cause");
    assert_eq!(world.live.closed_count(reason), 3, "{reason}");
    good.assert_open().await;
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_expires_is_closed_at_its_not_after() {
    // X.509 writes whole seconds: a notAfter on a second, at least 2 s away.
    let in_two = SystemTime::now() + Duration::from_secs(2);
    let seconds = in_two
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    closes_for(CloseReason::Expired, ROGUE, not_after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_defederated_peer_is_closed_for_the_bundle() {
    closes_for(CloseReason::Bundle, PARTNER, SystemTime::now() + HOUR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_the_policy_drops_is_closed_for_the_policy() {
    closes_for(CloseReason::Policy, ROGUE, SystemTime::now() + HOUR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_peer_is_closed_as_revoked() {
    closes_for(CloseReason::Revoked, ROGUE, SystemTime::now() + HOUR).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_maximum_lifetime_is_closed() {
    closes_for(CloseReason::Lifetime, ROGUE, SystemTime::now() + HOUR).await;
}
