//! An HTTPS server (HTTP/1.1 and HTTP/2) whose handlers see the client's identity and address.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::http_connection::{
    ConnectionTimeouts, serve_http_connection, serve_live_http_connection,
};
use super::listener::{Handshake, HandshakeLimits, MtlsListener, is_transient};
use super::live::LiveConnections;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The address a client connected from, inserted by [`serve_http`] and [`HttpServer`] into the
/// extensions of every request beside its [`PeerIdentity`](crate::tls::PeerIdentity).
///
/// axum handlers take it as `Extension<RemoteAddr>` (axum's own `ConnectInfo<SocketAddr>` is
/// filled only by axum's `serve`, which does no TLS); hyper and tower services read
/// `request.extensions().get::<RemoteAddr>()`. It is the TCP peer's address: behind a proxy,
/// the proxy's.
///
/// # Example
/// ```
/// use axum::{Extension, Router, routing::get};
/// use spiffe_mtls::net::{PeerIdentity, RemoteAddr};
///
/// async fn hello(
///     Extension(peer): Extension<PeerIdentity>,
///     Extension(RemoteAddr(address)): Extension<RemoteAddr>,
/// ) -> String {
///     format!("hello {peer} at {address}\n")
/// }
/// let app: Router = Router::new().route("/", get(hello));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteAddr(pub SocketAddr);

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An HTTPS server over mutual TLS with settings: the handshake timeout and the number of
/// handshakes in flight. [`serve_http`] and [`serve_http_with_shutdown`] are this with the
/// defaults.
///
/// Each connection's [`PeerIdentity`](crate::tls::PeerIdentity) and [`RemoteAddr`] are
/// inserted into the extensions of every request it carries. Clients refused at the handshake
/// never reach the service. HTTP/2 is used when the client negotiates it (put `h2` in the
/// config's ALPN).
///
/// Handshakes: each must finish within [`handshake_timeout`](Self::handshake_timeout)
/// (default [`HANDSHAKE_TIMEOUT`](super::HANDSHAKE_TIMEOUT), 10 s) or the connection is
/// closed; at most [`max_handshakes`](Self::max_handshakes) (default
/// [`MAX_HANDSHAKES`](super::MAX_HANDSHAKES), 256) run at once. When all are busy the server
/// stops accepting: new clients wait in the listener's backlog for a slot, which a handshake
/// frees when it finishes, fails or times out. So clients that connect and stay silent delay
/// others by at most the timeout; they cannot keep them out, and a slow handshake never blocks
/// the others. After the handshake, a client has
/// [`header_read_timeout`](Self::header_read_timeout) (default 30 s) to send its first bytes,
/// and each HTTP/1 request head must arrive within it, so a client that connects and says
/// nothing cannot hold a connection either; a connection with no request in flight for
/// [`idle_timeout`](Self::idle_timeout) (default 60 s, from the end of the last request) is
/// closed.
///
/// # Example
/// ```no_run
/// use std::{sync::Arc, time::Duration};
/// use axum::{Router, routing::get};
/// use spiffe_mtls::{authorize, net::HttpServer, tls};
/// # use spiffe_mtls::dev_server::{DevCa, SvidRequest};
/// # use spiffe_mtls::source::{StaticSource, X509Context};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// # let ca = DevCa::new("example.org".parse()?, Duration::from_secs(3600))?;
/// # let svid = ca.issue(&SvidRequest::new("spiffe://example.org/server".parse()?, Duration::from_secs(600)))?;
/// # let source = StaticSource::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect())?);
/// let config = tls::server_config(source, authorize::member_of(["example.org".parse()?]))
///     .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
///     .build()?;
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// HttpServer::new(listener, Arc::new(config))
///     .handshake_timeout(Duration::from_secs(5))
///     .max_handshakes(64)
///     .serve_with_shutdown(app, async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: HandshakeLimits,
    timeouts: ConnectionTimeouts,
    anonymous_clients: bool,
    live: Option<LiveConnections>,
    health: Health,
}

/// The dashboard's monitor a server counts its open connections in, if any.
#[cfg(feature = "dashboard")]
type Health = Option<crate::health::HealthMonitor>;
/// Without the `dashboard` feature, never one.
#[cfg(not(feature = "dashboard"))]
type Health = Option<NoMonitor>;

/// No monitor (without the `dashboard` feature).
#[cfg(not(feature = "dashboard"))]
#[derive(Debug, Clone)]
enum NoMonitor {}

impl HttpServer {
    /// A server on `listener` with `config` (from [`crate::tls::server_config`]) and the
    /// default limits. Its connections are live-checked by default: each closes at its
    /// peer's leaf `notAfter` (see [`live_connections`](Self::live_connections) to re-check
    /// them on bundle and policy changes too, and
    /// [`without_live_connections`](Self::without_live_connections) to turn it off).
    ///
    /// # Example
    /// See [`HttpServer`].
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self {
            listener,
            config,
            limits: HandshakeLimits::default(),
            timeouts: ConnectionTimeouts::new(),
            anonymous_clients: false,
            live: Some(LiveConnections::new()),
            health: Health::default(),
        }
    }

    /// Counts each open connection in `monitor`'s peer table (the dashboard's `open`
    /// column), for as long as it is served.
    #[cfg(feature = "dashboard")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
    #[must_use]
    pub fn health_monitor(mut self, monitor: crate::health::HealthMonitor) -> Self {
        self.health = Some(monitor);
        self
    }

    /// Registers every connection's peer in `live`, and closes a connection as soon as `live`
    /// says it must ([`LiveConnections::recheck`] or [`revoke`](LiveConnections::revoke)
    /// found its peer no longer passes, its leaf expired, or it reached its maximum
    /// lifetime): HTTP/2 sends GOAWAY, an HTTP/1 connection closes after the request in
    /// flight, and whatever is still running [`LIVE_CLOSE_GRACE`](super::LIVE_CLOSE_GRACE) later (a stream) is cut.
    ///
    /// # Example
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>, app: axum::Router) -> std::io::Result<()> {
    /// use spiffe_mtls::net::{HttpServer, LiveConnections};
    ///
    /// let live = LiveConnections::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let server = HttpServer::new(listener, config).live_connections(live.clone());
    /// // Re-checked on every bundle update and policy reload (`live.recheck_on_changes(...)`,
    /// // or `live.recheck(...)` yourself); to revoke one agent: `live.revoke(&id)`.
    /// server.serve(app).await
    /// # }
    /// ```
    #[must_use]
    pub fn live_connections(mut self, live: LiveConnections) -> Self {
        self.live = Some(live);
        self
    }

    /// Registers no connection: a connection lives until its client or the server's
    /// deadlines end it, even past its peer's certificate (only the per-request checks of
    /// [`RoutePolicyLayer`](super::RoutePolicyLayer) still refuse an expired peer).
    #[must_use]
    pub fn without_live_connections(mut self) -> Self {
        self.live = None;
        self
    }

    /// Serves clients that presented no certificate too, with a config made by
    /// [`client_certificate_optional`](crate::tls::ServerConfigBuilder::client_certificate_optional):
    /// their requests carry no [`PeerIdentity`](crate::tls::PeerIdentity), so a layer in front
    /// of the handlers must authenticate them (`JwtAuthLayer` with `or_mtls`) or
    /// [`RoutePolicyLayer`](super::RoutePolicyLayer) refuses them. Without this setting such
    /// connections are closed after the handshake.
    ///
    /// # Example
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let server = spiffe_mtls::net::HttpServer::new(listener, config).allow_anonymous_clients();
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn allow_anonymous_clients(mut self) -> Self {
        self.anonymous_clients = true;
        self
    }

    /// How long a client has, once its handshake is done, to send its first bytes, and how long
    /// each HTTP/1 request head may take to arrive, an idle keep-alive connection's included
    /// (default [`HEADER_READ_TIMEOUT`](super::HEADER_READ_TIMEOUT), 30 s; hyper's HTTP/1 header timeout). A client that
    /// stays silent that long is disconnected. An HTTP/2 connection's later requests are
    /// streams, not bound by it.
    ///
    /// # Example
    /// ```no_run
    /// # use std::{sync::Arc, time::Duration};
    /// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let server = spiffe_mtls::net::HttpServer::new(listener, config)
    ///     .header_read_timeout(Duration::from_secs(5));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts = self.timeouts.first_read(timeout).header_read(timeout);
        self
    }

    /// How long a connection may stay open with no request in flight, from the end of the
    /// last request (default [`IDLE_TIMEOUT`](super::IDLE_TIMEOUT), 60 s), HTTP/1 kept alive
    /// and HTTP/2 alike (PING or SETTINGS frames do not keep it); a request in flight (until
    /// its response body is sent: a long stream included) keeps it open. See
    /// [`ConnectionTimeouts`].
    ///
    /// # Example
    /// ```no_run
    /// # use std::{sync::Arc, time::Duration};
    /// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let server = spiffe_mtls::net::HttpServer::new(listener, config)
    ///     .idle_timeout(Duration::from_secs(300));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts = self.timeouts.idle(timeout);
        self
    }

    /// How long a client has to finish its TLS handshake, from the moment its connection is
    /// accepted (default 10 s). A client that has not finished by then is disconnected.
    ///
    /// # Example
    /// ```no_run
    /// # use std::{sync::Arc, time::Duration};
    /// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let server = spiffe_mtls::net::HttpServer::new(listener, config)
    ///     .handshake_timeout(Duration::from_secs(3));
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// How many handshakes may run at once (default 256; 0 counts as 1). Past that, new
    /// connections are not accepted until one finishes (they wait in the listener's backlog).
    ///
    /// # Example
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let server = spiffe_mtls::net::HttpServer::new(listener, config).max_handshakes(32);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.limits.max_in_flight = max;
        self
    }

    /// Serves `service` (an axum `Router`, any tower service) until the listener fails.
    ///
    /// # Errors
    /// Never returns except with an error of the listener it cannot recover from.
    ///
    /// # Example
    /// See [`HttpServer`].
    pub async fn serve<S, B>(self, service: S) -> io::Result<()>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(service, std::future::pending())
            .await
    }

    /// Serves `service` until `shutdown` completes: the server stops accepting, and the open
    /// connections and the handshakes in flight are closed.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    ///
    /// # Example
    /// See [`HttpServer`].
    pub async fn serve_with_shutdown<S, B>(
        self,
        service: S,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listener = MtlsListener::new(self.listener, self.config, self.limits);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.next() => accepted,
                () = &mut shutdown => break,
            };
            let handshake = match accepted {
                Ok(handshake) => handshake,
                Err(error) if is_transient(&error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            connections.spawn(serve_connection(
                handshake,
                service.clone(),
                self.timeouts,
                self.anonymous_clients,
                self.live.clone(),
                self.health.clone(),
            ));
            while connections.try_join_next().is_some() {}
        }
        connections.shutdown().await;
        Ok(())
    }
}

/// Serves `service` (an axum `Router`, any tower service) over mutual TLS until the listener
/// fails, with the default handshake limits; see [`HttpServer`].
///
/// # Errors
/// Never returns except with an error of the listener it cannot recover from.
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use axum::{Extension, Router, routing::get};
/// use spiffe_mtls::net::{self, PeerIdentity};
///
/// # async fn run(config: spiffe_mtls::rustls::ServerConfig) -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|Extension(peer): Extension<PeerIdentity>| async move {
///     format!("hello {peer}\n")
/// }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// net::serve_http(listener, Arc::new(config), app).await
/// # }
/// ```
pub async fn serve_http<S, B>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    service: S,
) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    HttpServer::new(listener, config).serve(service).await
}

/// Serves `service` over mutual TLS with `config` (from [`crate::tls::server_config`]) until
/// `shutdown` completes, with the default handshake limits; open connections are closed then.
/// See [`HttpServer`].
///
/// # Errors
/// As [`serve_http`].
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
///
/// # async fn run(config: spiffe_mtls::rustls::ServerConfig) -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello\n" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// let stop = async { let _ = tokio::signal::ctrl_c().await; };
/// spiffe_mtls::net::serve_http_with_shutdown(listener, Arc::new(config), app, stop).await
/// # }
/// ```
pub async fn serve_http_with_shutdown<S, B>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    HttpServer::new(listener, config)
        .serve_with_shutdown(service, shutdown)
        .await
}

async fn serve_connection<S, B>(
    handshake: Handshake,
    service: S,
    timeouts: ConnectionTimeouts,
    anonymous_clients: bool,
    live: Option<LiveConnections>,
    health: Health,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let remote = RemoteAddr(handshake.remote_addr());
    let finished = if anonymous_clients {
        handshake.finish_optional().await
    } else {
        handshake.finish().await.map(|stream| {
            let (stream, peer) = stream.into_parts();
            (stream, Some(peer))
        })
    };
    let (stream, peer) = match finished {
        Ok(finished) => finished,
        Err(error) => {
            tracing::debug!(%error, remote = %remote, "TLS handshake failed");
            return;
        }
    };
    let registered = live
        .as_ref()
        .zip(peer.as_ref())
        .map(|(live, peer)| live.register(peer.clone()));
    // Held (and so counted open) for as long as the connection is served.
    #[cfg(feature = "dashboard")]
    let _open = health
        .as_ref()
        .zip(peer.as_ref())
        .map(|(monitor, peer)| monitor.connection_opened(peer.spiffe_id()));
    #[cfg(not(feature = "dashboard"))]
    let _: Health = health;
    let service = service.map_request(move |mut request: Request<Incoming>| {
        if let Some(peer) = &peer {
            request.extensions_mut().insert(peer.clone());
        }
        request.extensions_mut().insert(remote);
        request
    });
    let Some(mut registered) = registered else {
        let served = serve_http_connection(stream, service, timeouts, std::future::pending()).await;
        if let Err(error) = served {
            tracing::debug!(%error, "HTTP connection ended with an error");
        }
        return;
    };
    // The registration lives as long as the connection is served.
    let (served, closed) = serve_live_http_connection(
        stream,
        service,
        timeouts,
        std::future::pending(),
        &mut registered,
    )
    .await;
    if let Some(reason) = closed {
        tracing::info!(
            peer = %registered.peer().spiffe_id(),
            %remote,
            reason = reason.as_str(),
            "closed the connection: its peer no longer passes"
        );
    }
    if let Err(error) = served {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
