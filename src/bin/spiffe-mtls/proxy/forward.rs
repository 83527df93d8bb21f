//! `proxy server --http`'s way to the target: the request cleaned of what the client may not
//! decide (hop-by-hop and forwarding headers, trailers), re-addressed to the target, its body
//! bounded in time, over backend connections that belong to one client connection and are
//! bounded in number.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::Service;

use super::address::{Address, Stream};
use super::server::TARGET_CONNECT_TIMEOUT;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Hop-by-hop headers, not forwarded.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the hop-by-hop headers, and those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// Headers by which a client could claim what only a proxy in front may say: who the client
/// is (`x-forwarded-client-cert`, the `x-ssl-client-*` family), where it came from
/// (`forwarded`, `x-forwarded-*`, `x-real-ip`), or which path to serve (`x-original-url`,
/// `x-rewrite-url`). Compared with `_` read as `-`, as CGI and WSGI servers do.
const FORWARDING_EXACT: [&str; 13] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-http-method-override",
    "x-arr-clientcert",
    "x-client-verify",
    "x-client-dn",
];
const FORWARDING_PREFIXES: [&str; 7] = [
    "x-forwarded-",
    "x-ssl-client",
    "ssl-client",
    "x-client-cert",
    "x-amzn-mtls-",
    "x-envoy-",
    "x-spiffe-",
];

/// Removes every forwarding header the client sent ([`FORWARDING_EXACT`],
/// [`FORWARDING_PREFIXES`]), then sets the proxy's own `x-forwarded-for` (the client's address,
/// for a TCP client) and `x-forwarded-proto: https`.
pub fn replace_forwarding_headers(headers: &mut HeaderMap, remote: Option<SocketAddr>) {
    let claims: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str().replace('_', "-");
            FORWARDING_EXACT.contains(&name.as_str())
                || FORWARDING_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .cloned()
        .collect();
    for claim in &claims {
        headers.remove(claim);
    }
    if let Some(remote) = remote
        && let Ok(value) = HeaderValue::from_str(&remote.ip().to_string())
    {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
}

/// The last target failure of a client connection, for its audit line.
pub type LastFailure = Arc<std::sync::Mutex<Option<String>>>;

/// The innermost service: the request, re-addressed, to the target.
#[derive(Clone)]
pub struct Forward {
    client: Client<Connector, RequestBody>,
    target: Arc<Address>,
    authority: http::uri::Authority,
    h2c: bool,
    body_timeout: Duration,
    failure: LastFailure,
}

impl Forward {
    /// Forwarding to `target` (addressed as `authority`) through `client`; a request body that
    /// brings no bytes for `body_timeout` is cut; a failed target is noted in `failure`
    /// (`target 127.0.0.1:9: connection refused`).
    pub fn new(
        client: Client<Connector, RequestBody>,
        target: Arc<Address>,
        authority: http::uri::Authority,
        h2c: bool,
        body_timeout: Duration,
        failure: LastFailure,
    ) -> Self {
        Self {
            client,
            target,
            authority,
            h2c,
            body_timeout,
            failure,
        }
    }
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
        } else {
            if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
                parts.headers.insert(header::HOST, host);
            }
            // A backend that does not read a body it did not expect (a GET's, say) would take
            // its bytes for the next request on the connection: one the routes never saw. So
            // a connection that carried a body is not used again.
            if !body.is_end_stream() {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let body = RequestBody::new(body, self.body_timeout);
        let response = self.client.request(Request::from_parts(parts, body));
        let target = Arc::clone(&self.target);
        let failure = Arc::clone(&self.failure);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    let mut response = response.map(ProxyBody::Stream);
                    // The target's `Connection: close` is about its own connection.
                    strip_hop_by_hop(response.headers_mut());
                    Ok(response)
                }
                Err(error) => {
                    let (what, why) = target_failure(&error, &target);
                    if let Ok(mut last) = failure.lock() {
                        *last = Some(format!("target {target}: {why}"));
                    }
                    Ok(text(
                        StatusCode::BAD_GATEWAY,
                        &format!("bad gateway: {what}\n"),
                    ))
                }
            }
        })
    }
}

/// What failed with `target`, in words (`cannot connect to the target 127.0.0.1:9:
/// connection refused (nothing listens there)`), and why alone: the I/O cause rather than
/// hyper-util's kind (`client error (Connect)`).
fn target_failure(error: &hyper_util::client::legacy::Error, target: &Address) -> (String, String) {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    let mut why = Vec::new();
    while let Some(link) = cause {
        if let Some(io) = link.downcast_ref::<io::Error>() {
            why.push(io_reason(io));
            break;
        }
        why.push(link.to_string());
        cause = link.source();
    }
    if why.is_empty() {
        why.push(error.to_string());
    }
    let why = why.join(": ");
    let what = if error.is_connect() {
        format!("cannot connect to the target {target}: {why}")
    } else {
        format!("the target {target} failed: {why}")
    };
    (what, why)
}

/// An I/O error in words: the common kinds said plainly, others as the system says them.
pub fn io_reason(error: &io::Error) -> String {
    if error.get_ref().is_some() {
        // A message of ours (a timeout that says what it waited for).
        return error.to_string();
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (nothing listens there)".into(),
        io::ErrorKind::ConnectionReset => "connection reset by the target".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::NotFound => "no such socket".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => error.to_string(),
    }
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

/// A client's request body on its way to the target: trailers dropped (they could carry any
/// header, the identity header included, past the layers that cleaned the head), and cut
/// with an error when no data arrives for the body timeout (a client that announces a body
/// and never sends it would hold its request, its slot and a target connection).
pub struct RequestBody {
    inner: Incoming,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl RequestBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => continue,
                Poll::Ready(Some(Ok(frame))) => {
                    // An operator's `--idle-timeout` too long for an `Instant` means never.
                    let Some(next) = Instant::now().checked_add(this.timeout) else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    this.timer.as_mut().reset(next);
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
            return match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "the client sent no request body bytes for {:?}",
                    this.timeout
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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

/// Connects the backend client to the target, whatever the request's URI says, holding one of
/// the proxy's target-connection slots for as long as the connection is open.
#[derive(Debug, Clone)]
pub struct Connector {
    target: Arc<Address>,
    slots: Arc<Semaphore>,
    /// This client connection's share of `slots`, when it is one client's connector.
    share: Option<Arc<Semaphore>>,
}

impl Connector {
    /// Connections to `target`, at most as many at once as `slots` has permits.
    pub fn new(target: Arc<Address>, slots: Arc<Semaphore>) -> Self {
        Self {
            target,
            slots,
            share: None,
        }
    }

    /// This connector for one client connection, which may hold at most `share` of the
    /// target connections at once: one client cannot take them all.
    pub fn for_one_client(&self, share: usize) -> Self {
        Self {
            target: Arc::clone(&self.target),
            slots: Arc::clone(&self.slots),
            share: Some(Arc::new(Semaphore::new(
                share.clamp(1, Semaphore::MAX_PERMITS),
            ))),
        }
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<SlotStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<SlotStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let target = Arc::clone(&self.target);
        let slots = Arc::clone(&self.slots);
        let share = self.share.clone();
        Box::pin(async move {
            let connect = async {
                let share = match share {
                    Some(share) => Some(share.acquire_owned().await.map_err(io::Error::other)?),
                    None => None,
                };
                let slot = slots.acquire_owned().await.map_err(io::Error::other)?;
                let stream = target.connect().await?;
                Ok(TokioIo::new(SlotStream {
                    stream,
                    _slot: slot,
                    _share: share,
                }))
            };
            tokio::time::timeout(TARGET_CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no connection within {TARGET_CONNECT_TIMEOUT:?} (the target did \
                             not answer, or every target connection the proxy allows is busy)"
                        ),
                    )
                })?
        })
    }
}

/// A target connection holding its slot.
pub struct SlotStream {
    stream: Stream,
    _slot: OwnedSemaphorePermit,
    _share: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for SlotStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlotStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connection for SlotStream {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}
