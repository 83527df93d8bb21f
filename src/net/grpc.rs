//! tonic over mutual TLS: an incoming stream of verified connections for servers (with the
//! client's identity and address for handlers), a channel for clients.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use super::listener::{HandshakeLimits, MtlsListener};
use super::live::LiveConnections;
use super::{MtlsStream, connect};
use crate::tls::PeerIdentity;

impl Connected for MtlsStream<TcpStream> {
    /// tonic puts this into every request's extensions:
    /// `request.extensions().get::<GrpcConnectInfo>()`.
    type ConnectInfo = GrpcConnectInfo;

    fn connect_info(&self) -> GrpcConnectInfo {
        let tcp = self.get_ref().get_ref().0;
        GrpcConnectInfo {
            peer: self.peer().clone(),
            remote_addr: tcp.peer_addr().ok(),
            local_addr: tcp.local_addr().ok(),
        }
    }
}

/// What a tonic handler knows of the connection its request came on: the client's verified
/// [`PeerIdentity`] and its address. tonic inserts it into every request's extensions for
/// servers fed by [`incoming`] or [`GrpcIncoming`].
///
/// # Example
/// ```
/// use spiffe_mtls::net::GrpcConnectInfo;
/// use tonic::{Request, Status};
///
/// fn caller<T>(request: &Request<T>) -> Result<String, Status> {
///     let info = request
///         .extensions()
///         .get::<GrpcConnectInfo>()
///         .ok_or_else(|| Status::unauthenticated("no verified peer"))?;
///     Ok(format!("{} from {:?}", info.peer(), info.remote_addr()))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct GrpcConnectInfo {
    peer: PeerIdentity,
    remote_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
}

impl GrpcConnectInfo {
    /// The client's verified identity.
    ///
    /// # Example
    /// See [`GrpcConnectInfo`].
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The address the client connected from (`None` if the socket could not tell).
    ///
    /// # Example
    /// See [`GrpcConnectInfo`].
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The server's address of the connection.
    ///
    /// # Example
    /// ```
    /// # use spiffe_mtls::net::GrpcConnectInfo;
    /// fn port<T>(request: &tonic::Request<T>) -> Option<u16> {
    ///     let info = request.extensions().get::<GrpcConnectInfo>()?;
    ///     Some(info.local_addr()?.port())
    /// }
    /// ```
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
}

/// Accepts TCP connections on `listener` and yields those whose mutual TLS handshake (with
/// `config`, from [`crate::tls::server_config`]) succeeded, for
/// `tonic::transport::Server::serve_with_incoming`, with the default handshake limits: see
/// [`GrpcIncoming`]. Handlers find a [`GrpcConnectInfo`] in each request's extensions.
///
/// The config's ALPN should offer `h2`.
///
/// # Example
/// ```no_run
/// # use std::sync::Arc;
/// # async fn run(config: spiffe_mtls::rustls::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
/// # let routes = tonic::service::Routes::default();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// tonic::transport::Server::builder()
///     .add_routes(routes) // your services
///     .serve_with_incoming(spiffe_mtls::net::incoming(listener, Arc::new(config)))
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = io::Result<MtlsStream<TcpStream>>> {
    GrpcIncoming::new(listener, config).into_stream()
}

/// The verified connections of a listener for a tonic server, with settings: the handshake
/// timeout and the number of handshakes in flight. [`incoming`] is this with the defaults.
///
/// Handshakes run concurrently; a refused, broken or timed-out one is logged and skipped. Each
/// must finish within [`handshake_timeout`](Self::handshake_timeout) (default 10 s) or the
/// connection is closed; at most [`max_handshakes`](Self::max_handshakes) (default 256) run
/// at once, and past that new connections wait in the listener's backlog for a slot, as for
/// [`HttpServer`](super::HttpServer).
///
/// # Example
/// ```no_run
/// # use std::{sync::Arc, time::Duration};
/// # async fn run(config: spiffe_mtls::rustls::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
/// # let routes = tonic::service::Routes::default();
/// use spiffe_mtls::net::GrpcIncoming;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// let connections = GrpcIncoming::new(listener, Arc::new(config))
///     .handshake_timeout(Duration::from_secs(5))
///     .max_handshakes(64)
///     .into_stream();
/// tonic::transport::Server::builder()
///     .add_routes(routes) // your services
///     .serve_with_incoming(connections)
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct GrpcIncoming {
    listener: TcpListener,
    config: Arc<ServerConfig>,
    limits: HandshakeLimits,
    live: Option<LiveConnections>,
}

impl GrpcIncoming {
    /// The connections of `listener`, verified with `config` (from
    /// [`crate::tls::server_config`]), with the default limits. They are live-checked by
    /// default: each ends at its peer's leaf `notAfter` (see
    /// [`live_connections`](Self::live_connections)).
    ///
    /// # Example
    /// See [`GrpcIncoming`].
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self {
            listener,
            config,
            limits: HandshakeLimits::default(),
            live: Some(LiveConnections::new()),
        }
    }

    /// Registers every connection's peer in `live`, and ends a connection (its streams
    /// with it) as soon as `live` says it must: a [`recheck`](LiveConnections::recheck) or
    /// [`revoke`](LiveConnections::revoke) found its peer no longer passes, its leaf
    /// expired, or it reached its maximum lifetime.
    ///
    /// # Example
    /// ```no_run
    /// # use std::sync::Arc;
    /// # async fn run(config: spiffe_mtls::rustls::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
    /// # let routes = tonic::service::Routes::default();
    /// use spiffe_mtls::net::{GrpcIncoming, LiveConnections};
    ///
    /// let live = LiveConnections::new();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// let connections = GrpcIncoming::new(listener, Arc::new(config))
    ///     .live_connections(live.clone())
    ///     .into_stream();
    /// // Later, an operator revokes one agent: its connections and streams end.
    /// live.revoke(&"spiffe://example.org/agent/rogue".parse()?);
    /// # tonic::transport::Server::builder().add_routes(routes).serve_with_incoming(connections).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn live_connections(mut self, live: LiveConnections) -> Self {
        self.live = Some(live);
        self
    }

    /// Registers no connection: a connection lives until its client or tonic ends it, even
    /// past its peer's certificate.
    #[must_use]
    pub fn without_live_connections(mut self) -> Self {
        self.live = None;
        self
    }

    /// How long a client has to finish its TLS handshake once accepted (default 10 s).
    ///
    /// # Example
    /// See [`GrpcIncoming`].
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// How many handshakes may run at once (default 256; 0 counts as 1).
    ///
    /// # Example
    /// See [`GrpcIncoming`].
    #[must_use]
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.limits.max_in_flight = max;
        self
    }

    /// Starts accepting (a task on the current tokio runtime) and yields the verified
    /// connections; dropping the stream stops the listener.
    ///
    /// # Example
    /// See [`GrpcIncoming`].
    pub fn into_stream(self) -> impl Stream<Item = io::Result<MtlsStream<TcpStream>>> {
        let (ready, streams) = tokio::sync::mpsc::channel(64);
        let listener = MtlsListener::new(self.listener, self.config, self.limits);
        let live = self.live;
        tokio::spawn(async move {
            loop {
                let handshake = tokio::select! {
                    accepted = listener.next() => accepted,
                    () = ready.closed() => return,
                };
                let handshake = match handshake {
                    Ok(handshake) => handshake,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ready = ready.clone();
                let live = live.clone();
                tokio::spawn(async move {
                    let remote = handshake.remote_addr();
                    match handshake.finish().await {
                        Ok(stream) => {
                            let stream = match &live {
                                Some(live) => {
                                    let connection = live.register(stream.peer().clone());
                                    stream.closing_with(connection)
                                }
                                None => stream,
                            };
                            let _ = ready.send(Ok(stream)).await;
                        }
                        Err(error) => tracing::debug!(%error, %remote, "TLS handshake failed"),
                    }
                });
            }
        });
        ReceiverStream::new(streams)
    }
}

/// Why a gRPC channel could not be opened. Its `Debug` is its message, so that a `main`
/// returning it prints a sentence, not a dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum GrpcChannelError {
    /// The URI has no host or port.
    #[error("{0}: expected https://host:port")]
    Uri(String),
    /// The connection or the handshake failed: a refusal says what was expected and what
    /// was presented (its [`HandshakeRefusal`](super::HandshakeRefusal) is among the causes).
    #[error("cannot connect to {uri}: {reason}")]
    Connect {
        /// The URI dialed.
        uri: String,
        /// What failed, with its causes.
        reason: String,
        /// tonic's error.
        #[source]
        source: tonic::transport::Error,
    },
}

impl std::fmt::Debug for GrpcChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A tonic channel to `uri` (`https://host:port`) over mutual TLS with `config` (from
/// [`crate::tls::client_config`]; its ALPN is set to `h2`). The server is authorized by its
/// SPIFFE ID; the host is used to connect and as SNI.
///
/// A server that refuses our certificate after a TLS 1.3 handshake (its alert comes after
/// the client's side finished) fails the first call: the `tonic::Status`'s causes hold the
/// [`HandshakeRefusal`](super::HandshakeRefusal); [`describe_error`](super::describe_error)
/// says it in words.
///
/// # Errors
/// [`GrpcChannelError`] for a URI without host and port, or a failed first connection (a
/// refused server: "cannot connect to https://..: the server is not authorized: expected the
/// ID .., presented ..").
pub async fn grpc_channel(uri: &str, config: &ClientConfig) -> Result<Channel, GrpcChannelError> {
    let parsed: Uri = uri
        .parse()
        .map_err(|e| GrpcChannelError::Uri(format!("{uri}: {e}")))?;
    let authority = parsed
        .authority()
        .filter(|a| a.port().is_some())
        .ok_or_else(|| GrpcChannelError::Uri(uri.to_owned()))?
        .clone();
    let mut config = config.clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| GrpcChannelError::Uri(format!("{uri}: {e}")))?;
    let own_id = crate::tls::PeerIdentity::own_id(&config);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |uri: Uri| {
            let config = Arc::clone(&config);
            async move {
                let host = uri
                    .host()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tcp = super::stream::connect_tcp(&host, port).await?;
                let stream = connect(config, name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| {
            // tonic's own text is "transport error": its causes say what failed.
            let cause = std::error::Error::source(&source).unwrap_or(&source);
            GrpcChannelError::Connect {
                uri: uri.to_owned(),
                reason: super::describe_error(cause, crate::tls::Side::Client, own_id.as_ref()),
                source,
            }
        })?;
    Ok(channel)
}
