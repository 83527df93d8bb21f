//! The servers' handshake limits: a client that connects and says nothing is disconnected
//! after the handshake timeout without holding up other clients, and a flood of such clients
//! beyond the bound on handshakes in flight delays new good clients but does not keep them
//! out; for `HttpServer` and for `GrpcIncoming` (tonic). A client that finishes its handshake
//! and then sends nothing, or half a request head, is disconnected after the header timeout.
#![cfg(all(unix, feature = "dev-server", feature = "http", feature = "grpc"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::net::{self, GrpcIncoming, HttpServer, MtlsConnector, PeerIdentity};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::rustls::{ClientConfig, ServerConfig};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::{authorize, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
const HOUR: Duration = Duration::from_secs(3600);
const TIMEOUT: Duration = Duration::from_millis(300);
/// Far beyond any delay the tests expect: a bound on every wait.
const PATIENCE: Duration = Duration::from_secs(10);

/// A static source holding an SVID for `id` from `ca` and `ca`'s bundle.
fn source(ca: &DevCa, id: &str) -> StaticSource {
    let svid = ca
        .issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
        .unwrap();
    StaticSource::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect()).unwrap())
}

fn configs() -> (ServerConfig, ClientConfig) {
    let ca = DevCa::new("example.org".parse().unwrap(), HOUR).unwrap();
    let source = |id: &str| source(&ca, id);
    let server = tls::server_config(source(SERVER), authorize::id(CLIENT.parse().unwrap()))
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .unwrap();
    let client = tls::client_config(source(CLIENT), authorize::id(SERVER.parse().unwrap()))
        .build()
        .unwrap();
    (server, client)
}

/// Waits until the server closes `tcp`; how long that took.
async fn closed_after(mut tcp: TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => start.elapsed(),
        Ok(Ok(_)) => panic!("the server sent something to a client that said nothing"),
        Err(_) => panic!("a silent client was still connected after {PATIENCE:?}"),
    }
}

async fn whoami(client: &Client<MtlsConnector, Empty<bytes::Bytes>>, address: &str) -> String {
    let response = client
        .get(format!("https://{address}/whoami").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A running `HttpServer` with the test's timeout and `max_handshakes`.
struct Running {
    address: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Shuts the server down: `serve_with_shutdown` returns `Ok` and the port is closed.
    async fn shut_down(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the server stopped")
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(&self.address).await.is_err());
    }
}

async fn http_server(
    server_config: ServerConfig,
    timeout: Duration,
    max_handshakes: usize,
    header_read_timeout: Duration,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route(
        "/whoami",
        get(|Extension(peer): Extension<PeerIdentity>| async move { peer.to_string() }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = HttpServer::new(listener, Arc::new(server_config))
        .handshake_timeout(timeout)
        .max_handshakes(max_handshakes)
        .header_read_timeout(header_read_timeout);
    let task = tokio::spawn(server.serve_with_shutdown(app, async {
        let _ = stopped.await;
    }));
    Running {
        address,
        stop,
        task,
    }
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_timeout_and_blocks_no_one() {
    let (server_config, client_config) = configs();
    // A longer timeout here, so that "served at once" has room on a loaded machine.
    let timeout = Duration::from_secs(1);
    let server = http_server(server_config, timeout, 16, net::HEADER_READ_TIMEOUT).await;
    let address = server.address.clone();
    let silent = TcpStream::connect(&address).await.unwrap();
    let closed = tokio::spawn(closed_after(silent));

    // While the silent client waits, a good client is served at once.
    let client = Client::builder(TokioExecutor::new()).build(MtlsConnector::new(client_config));
    let start = Instant::now();
    assert_eq!(whoami(&client, &address).await, CLIENT);
    assert!(start.elapsed() < timeout, "{:?}", start.elapsed());
    assert!(!closed.is_finished());

    let waited = closed.await.unwrap();
    assert!(
        waited >= timeout - Duration::from_millis(50),
        "closed after {waited:?}"
    );
    assert!(waited < PATIENCE, "closed after {waited:?}");
    server.shut_down().await;
}

#[tokio::test]
async fn a_flood_of_silent_clients_delays_good_clients_but_cannot_keep_them_out() {
    // Two handshakes at once; six silent clients queue three rounds of timeouts.
    let (server_config, client_config) = configs();
    let server = http_server(server_config, TIMEOUT, 2, net::HEADER_READ_TIMEOUT).await;
    let address = server.address.clone();
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(TcpStream::connect(&address).await.unwrap());
    }
    let closed: Vec<_> = silent
        .into_iter()
        .map(|tcp| tokio::spawn(closed_after(tcp)))
        .collect();

    let connector = MtlsConnector::new(client_config).timeout(PATIENCE);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let start = Instant::now();
    assert_eq!(whoami(&client, &address).await, CLIENT);
    let waited = start.elapsed();
    // It waited for the silent clients ahead of it (three rounds of 300 ms), and got in.
    assert!(waited >= TIMEOUT * 2, "served after {waited:?}");
    assert!(waited < PATIENCE, "served after {waited:?}");
    for closed in closed {
        closed.await.unwrap();
    }
    server.shut_down().await;
}

/// A client that completes its handshake, sends `prefix` (nothing, or the start of a request
/// head) and stalls: how long the server kept it.
async fn stalled_after_handshake(prefix: &[u8]) -> Duration {
    let (server_config, client_config) = configs();
    let server = http_server(server_config, PATIENCE, 16, TIMEOUT).await;
    let address: std::net::SocketAddr = server.address.parse().unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = ServerName::IpAddress(address.ip().into());
    let mut stream = net::connect(Arc::new(client_config), name, tcp)
        .await
        .unwrap();
    let start = Instant::now();
    stream.write_all(prefix).await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("the server closed the stalled client");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the server answered a request it never got: {read:?}"
    );
    let waited = start.elapsed();
    server.shut_down().await;
    waited
}

#[tokio::test]
async fn a_client_silent_after_its_handshake_is_closed_after_the_header_timeout() {
    let waited = stalled_after_handshake(b"").await;
    assert!(waited >= TIMEOUT - Duration::from_millis(50), "{waited:?}");
    assert!(waited < PATIENCE, "{waited:?}");
}

#[tokio::test]
async fn half_a_request_head_is_closed_after_the_header_timeout() {
    let waited = stalled_after_handshake(b"GET /whoami HTTP/1.1\r\nHost: a\r\n").await;
    assert!(waited >= TIMEOUT - Duration::from_millis(50), "{waited:?}");
    assert!(waited < PATIENCE, "{waited:?}");
}

#[tokio::test]
async fn a_whole_request_is_answered_under_a_short_header_timeout() {
    let (server_config, client_config) = configs();
    let server = http_server(server_config, PATIENCE, 16, TIMEOUT).await;
    let client = Client::builder(TokioExecutor::new()).build(MtlsConnector::new(client_config));
    assert_eq!(whoami(&client, &server.address).await, CLIENT);
    server.shut_down().await;
}

#[tokio::test]
async fn grpc_incoming_closes_a_silent_client_and_yields_the_good_one() {
    let (server_config, client_config) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut incoming = Box::pin(
        GrpcIncoming::new(listener, Arc::new(server_config))
            .handshake_timeout(TIMEOUT)
            .max_handshakes(1)
            .into_stream(),
    );

    // The silent client holds the only slot; the good one waits for it, then gets in.
    let silent = TcpStream::connect(address).await.unwrap();
    let closed = tokio::spawn(closed_after(silent));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    let good = tokio::spawn(async move {
        let tcp = TcpStream::connect(address).await.unwrap();
        net::connect(
            Arc::new(client_config),
            ServerName::IpAddress(address.ip().into()),
            tcp,
        )
        .await
        .unwrap()
    });
    let accepted = tokio::time::timeout(PATIENCE, incoming.next())
        .await
        .expect("the good client got in")
        .expect("the stream goes on")
        .unwrap();
    assert_eq!(accepted.peer().spiffe_id().to_string(), CLIENT);
    let waited = start.elapsed();
    assert!(waited >= TIMEOUT - Duration::from_millis(100), "{waited:?}");
    let client_side = good.await.unwrap();
    assert_eq!(client_side.peer().spiffe_id().to_string(), SERVER);
    let silent_waited = closed.await.unwrap();
    assert!(
        silent_waited >= TIMEOUT - Duration::from_millis(50),
        "{silent_waited:?}"
    );
}

/// `HttpServer::live_connections`: revoking a peer closes its open connections within 1 s,
/// an idle HTTP/1.1 one and an HTTP/2 one with an endless response in flight alike, while
/// another peer's connection stays open and is still served (issue 18).
#[tokio::test]
async fn revoking_a_peer_closes_its_live_connections_within_a_second() {
    use hyper_util::rt::TokioIo;
    use spiffe_mtls::net::{CloseReason, LiveConnections};

    const ROGUE: &str = "spiffe://example.org/agent/rogue";
    let ca = DevCa::new("example.org".parse().unwrap(), HOUR).unwrap();
    let source = |id: &str| source(&ca, id);
    let server_config = tls::server_config(
        source(SERVER),
        authorize::member_of(["example.org".parse().unwrap()]),
    )
    .build()
    .unwrap();
    let client_config = |id: &str| {
        Arc::new(
            tls::client_config(source(id), authorize::id(SERVER.parse().unwrap()))
                .build()
                .unwrap(),
        )
    };

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
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
    let live = LiveConnections::new();
    tokio::spawn(
        HttpServer::new(listener, Arc::new(server_config))
            .live_connections(live.clone())
            .serve(app),
    );

    let tls = |id: &'static str| {
        let config = client_config(id);
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

    // The rogue peer over HTTP/1.1, served once, then idle (kept alive).
    let (mut h1, h1_connection) = hyper::client::conn::http1::handshake(tls(ROGUE).await)
        .await
        .unwrap();
    let h1_driver = tokio::spawn(h1_connection);
    let response = h1.send_request(get_request("/whoami")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();

    // The rogue peer over HTTP/2, with an endless response in flight.
    let (mut h2, h2_connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), tls(ROGUE).await)
            .await
            .unwrap();
    let h2_driver = tokio::spawn(h2_connection);
    let streaming = h2.send_request(get_request("/stream")).await.unwrap();
    assert_eq!(streaming.status(), 200);
    let mut body = streaming.into_body();
    body.frame().await.unwrap().unwrap();

    // A good peer over HTTP/2: it must stay open.
    let (mut good, good_connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), tls(CLIENT).await)
            .await
            .unwrap();
    let good_driver = tokio::spawn(good_connection);
    let response = good.send_request(get_request("/whoami")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(live.len(), 3);

    // The good twin: a recheck that finds nothing wrong closes nothing.
    assert_eq!(live.recheck(|_| None), 0);

    let revoked_at = Instant::now();
    assert_eq!(live.revoke(&ROGUE.parse().unwrap()), 2);
    let h1_closed = tokio::time::timeout(PATIENCE, h1_driver).await;
    let h2_closed = tokio::time::timeout(PATIENCE, async {
        // The endless body ends (cut), then the connection.
        while let Some(Ok(_)) = body.frame().await {}
        h2_driver.await
    })
    .await;
    let took = revoked_at.elapsed();
    assert!(h1_closed.is_ok() && h2_closed.is_ok(), "closed");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert_eq!(live.closed_count(CloseReason::Revoked), 2);

    // The good peer is still served on the same connection.
    assert!(!good_driver.is_finished());
    let response = good.send_request(get_request("/whoami")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, CLIENT.as_bytes());
    // Closed connections have left the registry.
    tokio::time::timeout(PATIENCE, async {
        while live.len() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the closed connections were deregistered");
}
