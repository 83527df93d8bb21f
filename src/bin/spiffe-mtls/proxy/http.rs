//! `proxy server --http`: HTTP/1.1 and HTTP/2 from the client, HTTP/1.1 (or h2c) to the
//! target, through the crate's layers, in this order:
//!
//! 1. hop-by-hop headers removed (the fixed list, and every header the client's `Connection`
//!    names), before anything else, so no header set later can be removed by the client;
//! 2. [`CanonicalPathLayer`]: one canonical path, or `400` for a path with none (encoded `/`
//!    or `\`, dot segments, `//`, `;`, control bytes);
//! 3. [`RoutePolicyLayer`] (with `--policy` routes: 403 naming the route), on that path;
//! 4. [`IdentityHeaderLayer`]: every client-supplied spelling of the identity header removed
//!    (`_` for `-`, any case), the verified SPIFFE ID set;
//! 5. the target gets exactly the canonical path and the query as sent, `Host` (HTTP/1.1) or
//!    `:authority` (h2c) set to the `--target` address whatever the client sent.
//!
//! Each connection is served by the library's [`serve_http_connection`]: a first-read
//! deadline after the handshake and an idle timeout, HTTP/1 and HTTP/2 alike.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use spiffe_mtls::Policy;
use spiffe_mtls::net::{
    CanonicalPathLayer, ConnectionTimeouts, IdentityHeaderLayer, PeerIdentity, RemoteAddr,
    RoutePolicyLayer, RouteRefusal, serve_http_connection,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::{Service, ServiceBuilder};

use super::address::{Address, Stream};
use super::audit;
use super::metrics::Metrics;

/// Requests and route refusals on one connection.
pub type Counts = Arc<(AtomicU64, AtomicU64)>;

/// The HTTP side of a server: the backend client, the header, the routes.
pub struct Forwarding {
    client: Client<Connector, Incoming>,
    authority: http::uri::Authority,
    layer: IdentityHeaderLayer,
    routes: Option<RoutePolicyLayer>,
    h2c: bool,
    timeouts: ConnectionTimeouts,
}

impl Forwarding {
    /// Forwarding to `target`, with the identity header, the policy's routes, h2c and the
    /// client connections' deadlines.
    pub fn new(
        target: Address,
        id_header: Option<&str>,
        routes: Option<Policy>,
        h2c: bool,
        timeouts: ConnectionTimeouts,
    ) -> Result<Self, String> {
        let layer = match id_header {
            Some(name) => IdentityHeaderLayer::new()
                .header_name(name)
                .map_err(|_| format!("--id-header {name:?} is not a valid header name"))?,
            None => IdentityHeaderLayer::new(),
        };
        let authority = target
            .authority()
            .parse()
            .map_err(|e| format!("--target {target}: {e}"))?;
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http2_only(h2c);
        Ok(Self {
            client: builder.build(Connector(Arc::new(target))),
            authority,
            layer,
            routes: routes.map(RoutePolicyLayer::new),
            h2c,
            timeouts,
        })
    }

    /// Serves one verified client until it closes (or, once draining, until its requests in
    /// flight are answered); returns how it ended, for the audit line.
    pub async fn serve<S>(
        &self,
        stream: S,
        peer: PeerIdentity,
        remote: Option<SocketAddr>,
        counts: Counts,
        metrics: &Arc<Metrics>,
        mut draining: watch::Receiver<bool>,
    ) -> String
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let forward = Forward {
            client: self.client.clone(),
            authority: self.authority.clone(),
            h2c: self.h2c,
        };
        let counted = Arc::clone(&counts);
        let metrics = Arc::clone(metrics);
        let who = audit::Who {
            remote: remote.map_or_else(|| "unix".to_owned(), |a| a.to_string()),
            peer: peer.spiffe_id().to_string(),
        };
        let service = ServiceBuilder::new()
            .map_request(move |mut request: Request<Incoming>| {
                counted.0.fetch_add(1, Ordering::Relaxed);
                // First of all, so that a header set below cannot be named by the client's
                // `Connection` and removed after it was set.
                strip_hop_by_hop(request.headers_mut());
                request.extensions_mut().insert(peer.clone());
                if let Some(remote) = remote {
                    request.extensions_mut().insert(RemoteAddr(remote));
                }
                request
            })
            .map_response(move |response: Response<ProxyBody>| {
                if let Some(refusal) = response.extensions().get::<RouteRefusal>() {
                    counts.1.fetch_add(1, Ordering::Relaxed);
                    let reason = match refusal.route() {
                        Some(_) => "route_denied",
                        None => "path_refused",
                    };
                    metrics.refused(reason);
                    audit::request_refused(&who, response.status(), refusal);
                }
                response
            })
            .layer(CanonicalPathLayer::new())
            .option_layer(self.routes.clone())
            .layer(self.layer.clone())
            .service(forward);
        let draining = async move {
            drop(draining.wait_for(|draining| *draining).await);
        };
        let served = serve_http_connection(stream, service, self.timeouts, draining).await;
        match served {
            Ok(()) => "closed".to_owned(),
            Err(error) => {
                // hyper's own message names only the kind; the cause says what happened.
                let mut end = format!("http: {error}");
                let mut cause = error.source();
                while let Some(error) = cause {
                    end.push_str(&format!(": {error}"));
                    cause = error.source();
                }
                end
            }
        }
    }
}

/// Hop-by-hop headers, not forwarded.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// The innermost service: the request, re-addressed, to the target.
#[derive(Clone)]
struct Forward {
    client: Client<Connector, Incoming>,
    authority: http::uri::Authority,
    h2c: bool,
}

impl Service<Request<Incoming>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path)
            .build();
        let Ok(uri) = uri else {
            return Box::pin(std::future::ready(Ok(text(
                StatusCode::BAD_REQUEST,
                "bad request target\n",
            ))));
        };
        parts.uri = uri;
        parts.version = if self.h2c {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        // Hop-by-hop headers went before the identity was set (`Forwarding::serve`). The
        // target is addressed as itself, whatever the client sent: HTTP/2 takes `:authority`
        // from the URI, HTTP/1.1 gets the same in `Host`, so a virtual-host backend cannot be
        // steered by the client.
        if self.h2c {
            parts.headers.remove(header::HOST);
        } else if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        let response = self.client.request(Request::from_parts(parts, body));
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    let mut response = response.map(ProxyBody::Stream);
                    // The target's `Connection: close` is about its own connection.
                    strip_hop_by_hop(response.headers_mut());
                    Ok(response)
                }
                Err(error) => Ok(text(
                    StatusCode::BAD_GATEWAY,
                    &format!("bad gateway: the target failed: {error}\n"),
                )),
            }
        })
    }
}

/// Removes the hop-by-hop headers, and those the Connection header names.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::from(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A response body: the target's, or one of ours.
#[derive(Debug)]
pub enum ProxyBody {
    /// A body of ours, whole.
    Full(Option<Bytes>),
    /// The target's body, streamed.
    Stream(Incoming),
}

impl From<String> for ProxyBody {
    fn from(text: String) -> Self {
        Self::Full(Some(Bytes::from(text)))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(incoming) => Pin::new(incoming).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Stream(incoming) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Stream(incoming) => incoming.size_hint(),
        }
    }
}

/// Connects the backend client to the target, whatever the request's URI says.
#[derive(Debug, Clone)]
pub struct Connector(Arc<Address>);

impl Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let target = Arc::clone(&self.0);
        Box::pin(async move {
            tokio::time::timeout(super::server::TARGET_CONNECT_TIMEOUT, target.connect())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))?
                .map(TokioIo::new)
        })
    }
}
