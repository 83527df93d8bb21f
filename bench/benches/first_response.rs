//! The first response on a new connection, over loopback: TCP connect, the mutual TLS
//! handshake, one `GET`, the whole response read. HTTP/1.1 and HTTP/2, in one run:
//!
//! - `plain`: hyper + tokio-rustls with static certificates, rustls' own WebPKI verifiers
//!   (client certificates checked against the CA, the server's `localhost` DNS name checked),
//!   `TCP_NODELAY` on both sides, resumption off: what a careful hand-written server and
//!   client do, each connection a full handshake as ours always is;
//! - `plain_resumed`: the same with rustls' default TLS 1.3 session resumption, which skips
//!   the certificates (and so, for a SPIFFE peer, the authorization) on every connection after
//!   the first: shown for its cost, not a contender;
//! - `spiffe_mtls`: this crate's `net::HttpServer` and `net::MtlsConnector` on static sources,
//!   authorizing the peer's SPIFFE ID on both sides.
//!
//! Both present the same dev-CA SVIDs (the server's with a `localhost` DNS name too) and answer
//! the same handler. The figure to watch is the ratio per protocol (the target is at most 1.2x):
//! without `TCP_NODELAY` on accepted connections, HTTP/2's first response waited for a delayed
//! ACK, about 40 ms.
//!
//! Run: `cargo bench -p spiffe-mtls-bench --bench first_response`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::rustls::server::WebPkiClientVerifier;
use spiffe_mtls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::svid::X509Svid;
use spiffe_mtls::{BundleSet, authorize, net, rustls, tls};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const SERVER: &str = "spiffe://example.org/bench/server";
const CLIENT: &str = "spiffe://example.org/bench/client";

/// Which HTTP a client speaks.
#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    fn alpn(self) -> Vec<u8> {
        match self {
            Self::Http1 => b"http/1.1".to_vec(),
            Self::Http2 => b"h2".to_vec(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
        }
    }
}

/// The certificates every contender presents.
struct Material {
    ca: DevCa,
    server: X509Svid,
    client: X509Svid,
}

impl Material {
    fn new() -> Self {
        let ca = DevCa::new(
            "example.org".parse().expect("td"),
            Duration::from_secs(3600),
        )
        .expect("ca");
        let ttl = Duration::from_secs(3600);
        let server = ca
            .issue(
                &SvidRequest::new(SERVER.parse().expect("id"), ttl)
                    .with_dns_names(["localhost".to_owned()]),
            )
            .expect("server svid");
        let client = ca
            .issue(&SvidRequest::new(CLIENT.parse().expect("id"), ttl))
            .expect("client svid");
        Self { ca, server, client }
    }

    fn source(&self, svid: &X509Svid) -> StaticSource {
        let bundles: BundleSet = [self.ca.bundle()].into_iter().collect();
        StaticSource::new(X509Context::new(vec![svid.clone()], bundles).expect("context"))
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.root().clone()).expect("root");
        Arc::new(roots)
    }
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
}

/// The plain server: hyper-util's auto builder over tokio-rustls; its address.
async fn plain_server(material: &Material, resumption: bool) -> String {
    let verifier = WebPkiClientVerifier::builder(material.roots())
        .build()
        .expect("client verifier");
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            material.server.chain().to_vec(),
            material.server.private_key().clone_key(),
        )
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if !resumption {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tcp.set_nodelay(true).expect("nodelay");
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), hyper::service::service_fn(hello))
                    .await;
            });
        }
    });
    address
}

/// This crate's server; its address.
async fn spiffe_mtls_server(material: &Material) -> String {
    let config = tls::server_config(
        material.source(&material.server),
        authorize::id(CLIENT.parse().expect("id")),
    )
    .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
    .build()
    .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let service = tower::service_fn(hello);
    tokio::spawn(net::HttpServer::new(listener, Arc::new(config)).serve(service));
    address
}

/// Sends one GET on a fresh connection `io` and reads the whole response.
async fn first_response<IO>(io: IO, protocol: Protocol)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let request = || {
        Request::get("https://localhost/")
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .expect("http1");
            tokio::spawn(connection);
            sender.send_request(request()).await.expect("response")
        }
        Protocol::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                    .await
                    .expect("http2");
            tokio::spawn(connection);
            sender.send_request(request()).await.expect("response")
        }
    };
    assert!(response.status().is_success());
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes().as_ref(), b"hello\n");
}

fn first_responses(c: &mut Criterion) {
    // The bench package enables both providers (for the key-exchange benchmark): ring for all.
    #[allow(deprecated)] // rustls 0.23.48: ring has no post-quantum group
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime: Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let material = Material::new();
    let plain = runtime.block_on(plain_server(&material, false));
    let resumed = runtime.block_on(plain_server(&material, true));
    let ours = runtime.block_on(spiffe_mtls_server(&material));
    let mut group = c.benchmark_group("first_response");
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut config = ClientConfig::builder()
            .with_root_certificates(material.roots())
            .with_client_auth_cert(
                material.client.chain().to_vec(),
                material.client.private_key().clone_key(),
            )
            .expect("client config");
        config.alpn_protocols = vec![protocol.alpn()];
        let resuming = tokio_rustls::TlsConnector::from(Arc::new(config.clone()));
        config.resumption = rustls::client::Resumption::disabled();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        for (name, address, connector) in [
            ("plain", &plain, &connector),
            ("plain_resumed", &resumed, &resuming),
        ] {
            group.bench_function(format!("{name}/{}", protocol.name()), |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let tcp = TcpStream::connect(address).await.expect("connect");
                        tcp.set_nodelay(true).expect("nodelay");
                        let name = ServerName::try_from("localhost").expect("name");
                        let tls = connector.connect(name, tcp).await.expect("handshake");
                        first_response(tls, protocol).await;
                    });
                });
            });
        }

        let config = tls::client_config(
            material.source(&material.client),
            authorize::id(SERVER.parse().expect("id")),
        )
        .alpn_protocols([protocol.alpn()])
        .build()
        .expect("client config");
        let connector = net::MtlsConnector::new(config);
        let uri: http::Uri = format!("https://{ours}/").parse().expect("uri");
        group.bench_function(format!("spiffe_mtls/{}", protocol.name()), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let mut connector = connector.clone();
                    let stream = tower::Service::call(&mut connector, uri.clone())
                        .await
                        .expect("connect");
                    first_response(stream.into_inner(), protocol).await;
                });
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = first_responses
}
criterion_main!(benches);
