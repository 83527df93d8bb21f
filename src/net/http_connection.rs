//! Serving one HTTP/1.1-or-HTTP/2 connection with deadlines: [`HttpServer`](super::HttpServer)
//! and the `spiffe-mtls proxy server --http` both serve each connection here, so a client that
//! goes quiet is treated the same by both.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

use super::deadlines::{Activity, InFlight, ReadDeadlines};
use super::live::{CloseReason, LiveConnection};

/// How long, by default, a client may take to send its first bytes after the TLS handshake
/// and each HTTP/1 request head ([`ConnectionTimeouts::header_read`]).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long, by default, a connection may stay open with no request in flight
/// ([`ConnectionTimeouts::idle`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The deadlines of one served HTTP connection.
///
/// - `first_read` (default [`HEADER_READ_TIMEOUT`]): the client's first byte after the TLS
///   handshake; a client that connects and says nothing is closed then.
/// - `header_read` (default [`HEADER_READ_TIMEOUT`]): each HTTP/1 request head; on a
///   kept-alive HTTP/1 connection it runs from the previous response (hyper's head timer), so
///   it also bounds how long such a connection waits for its next request.
/// - `idle` (default [`IDLE_TIMEOUT`]): no request in flight (a request is in flight until its
///   response body has been sent) for this long, counted from the first byte and then from the
///   end of the last request, closes the connection, HTTP/1 kept alive between requests and
///   HTTP/2 alike; bytes that bring no request (HTTP/2 PING, SETTINGS) do not count. A long
///   response or stream is never cut.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use spiffe_mtls::net::ConnectionTimeouts;
///
/// let timeouts = ConnectionTimeouts::new()
///     .first_read(Duration::from_secs(5))
///     .idle(Duration::from_secs(120));
/// assert_eq!(timeouts.idle_timeout(), Duration::from_secs(120));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    first_read: Duration,
    header_read: Duration,
    idle: Duration,
}

impl ConnectionTimeouts {
    /// The defaults: [`HEADER_READ_TIMEOUT`] for the first read and each request head,
    /// [`IDLE_TIMEOUT`] idle.
    ///
    /// # Example
    /// See [`ConnectionTimeouts`].
    pub fn new() -> Self {
        Self {
            first_read: HEADER_READ_TIMEOUT,
            header_read: HEADER_READ_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }

    /// The deadline for the first byte after the TLS handshake.
    ///
    /// # Example
    /// See [`ConnectionTimeouts`].
    #[must_use]
    pub fn first_read(mut self, timeout: Duration) -> Self {
        self.first_read = timeout;
        self
    }

    /// The deadline for each HTTP/1 request head (on a kept-alive connection, counted from
    /// the previous response).
    ///
    /// # Example
    /// ```
    /// # use std::time::Duration;
    /// let timeouts = spiffe_mtls::net::ConnectionTimeouts::new().header_read(Duration::from_secs(5));
    /// assert_eq!(timeouts.header_read_timeout(), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn header_read(mut self, timeout: Duration) -> Self {
        self.header_read = timeout;
        self
    }

    /// How long a connection may be idle.
    ///
    /// # Example
    /// See [`ConnectionTimeouts`].
    #[must_use]
    pub fn idle(mut self, timeout: Duration) -> Self {
        self.idle = timeout;
        self
    }

    /// The first-read deadline.
    ///
    /// # Example
    /// ```
    /// let timeouts = spiffe_mtls::net::ConnectionTimeouts::new();
    /// assert_eq!(timeouts.first_read_timeout(), spiffe_mtls::net::HEADER_READ_TIMEOUT);
    /// ```
    pub fn first_read_timeout(&self) -> Duration {
        self.first_read
    }

    /// The request-head deadline.
    ///
    /// # Example
    /// See [`ConnectionTimeouts::header_read`].
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read
    }

    /// The idle timeout.
    ///
    /// # Example
    /// See [`ConnectionTimeouts`].
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }
}

impl Default for ConnectionTimeouts {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves HTTP/1.1 or HTTP/2 (detected) on `io`, an accepted and verified connection, with
/// `service` and `timeouts`, until the client closes, a deadline passes, or `shutdown`
/// resolves: then requests in flight are answered (HTTP/2 sends GOAWAY), idle connections
/// close at once, and this returns when the connection has closed.
///
/// [`HttpServer`](super::HttpServer) calls this for every connection; call it yourself when you
/// accept connections your own way. The caller inserts what handlers need (the peer's
/// [`PeerIdentity`](crate::tls::PeerIdentity)) into each request, with a `map_request` say.
///
/// # Errors
/// hyper's, when the connection ended in an error (a deadline passed: an
/// [`io::ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut) within).
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use spiffe_mtls::net::{self, ConnectionTimeouts};
///
/// # async fn run(config: Arc<rustls::ServerConfig>, tcp: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let stream = net::accept(config, tcp).await?;
/// let (stream, peer) = stream.into_parts();
/// let service = tower::service_fn(move |_request: http::Request<hyper::body::Incoming>| {
///     let body = format!("hello {}\n", peer.spiffe_id());
///     async move { Ok::<_, std::convert::Infallible>(http::Response::new(body)) }
/// });
/// net::serve_http_connection(stream, service, ConnectionTimeouts::new(), std::future::pending()).await?;
/// # Ok(()) }
/// ```
pub async fn serve_http_connection<I, S, B>(
    io: I,
    service: S,
    timeouts: ConnectionTimeouts,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let activity = Activity::new();
    let io = ReadDeadlines::new(
        io,
        Arc::clone(&activity),
        timeouts.first_read,
        timeouts.idle,
    );
    let service = Tracked {
        inner: service,
        activity,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => served,
        () = shutdown => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// How long a connection whose peer stopped passing may take to finish the requests in
/// flight (HTTP/2 has sent GOAWAY) before it is dropped: long streams end then.
pub const LIVE_CLOSE_GRACE: Duration = Duration::from_millis(500);

/// As [`serve_http_connection`], and closes the connection as soon as `live` says it must
/// ([`LiveConnection::closed`]: its peer no longer passes, its leaf expired, or it reached
/// its maximum lifetime): HTTP/2 sends GOAWAY, an HTTP/1 connection closes after the request
/// in flight, and whatever still runs [`LIVE_CLOSE_GRACE`] later (a stream) is cut. Returns
/// how serving ended and, when `live` closed it, why.
///
/// [`HttpServer::live_connections`](super::HttpServer::live_connections) serves each
/// connection here; so does `spiffe-mtls proxy server --http`.
pub async fn serve_live_http_connection<I, S, B>(
    io: I,
    service: S,
    timeouts: ConnectionTimeouts,
    shutdown: impl Future<Output = ()>,
    live: &mut LiveConnection,
) -> (Result<(), BoxError>, Option<CloseReason>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (closing, closed) = tokio::sync::oneshot::channel::<()>();
    let graceful = async {
        tokio::select! {
            () = shutdown => {}
            _ = live.closed() => {
                let _ = closing.send(());
            }
        }
    };
    let cut = async {
        if closed.await.is_ok() {
            tokio::time::sleep(LIVE_CLOSE_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let served = tokio::select! {
        served = serve_http_connection(io, service, timeouts, graceful) => served,
        () = cut => Ok(()),
    };
    (served, live.close_reason())
}

/// The service, with each request marked in flight until its response body ends.
#[derive(Debug, Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> tower::Service<Request<Incoming>> for Tracked<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body: Box::pin(body),
                in_flight: Some(in_flight),
            }))
        })
    }
}

/// A response body that keeps its request in flight until it ends or is dropped.
struct TrackedBody<B> {
    // Boxed so that any body, `Unpin` or not, can be polled without unsafe pinning.
    body: Pin<Box<B>>,
    in_flight: Option<InFlight>,
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = self.body.as_mut().poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
