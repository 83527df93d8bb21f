//! A TLS stream whose peer has been verified, and the handshakes that make one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::HANDSHAKE_TIMEOUT;
use super::handshake_refusal::HandshakeRefusal;
use super::live::{CloseReason, LiveConnection};
use crate::authorize::AuthorizeError;
use crate::tls::{PeerIdentity, Side};

/// A TLS connection and the verified identity of its peer.
///
/// A client's stream whose server refuses its certificate after the handshake (TLS 1.3: the
/// client finishes first, the server's alert comes with the first read) fails that read with
/// a [`HandshakeRefusal`] as the `io::Error`'s inner error (kind `PermissionDenied`).
#[derive(Debug)]
pub struct MtlsStream<IO> {
    stream: TlsStream<IO>,
    peer: PeerIdentity,
    /// A client's config, to name the ID it presented when the server refuses it.
    client_config: Option<Arc<ClientConfig>>,
    /// Set by [`closing_with`](Self::closing_with).
    live: Option<Live>,
}

/// A registered connection, and the future that resolves when it must close.
struct Live {
    _connection: LiveConnection,
    closing: Pin<Box<dyn Future<Output = CloseReason> + Send>>,
    closed: Option<CloseReason>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// `Ready(error)` once the connection must close (and ever after).
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.closed.is_none()
            && let Poll::Ready(reason) = self.closing.as_mut().poll(cx)
        {
            self.closed = Some(reason);
        }
        match self.closed {
            Some(reason) => Poll::Ready(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("connection closed: its peer no longer passes ({reason})"),
            )),
            None => Poll::Pending,
        }
    }
}

impl<IO> MtlsStream<IO> {
    /// Ends the stream when `connection` says it must close (its peer no longer passes a
    /// [`recheck`](super::LiveConnections::recheck), its leaf expired, or its lifetime
    /// ended): every read and write then fails with
    /// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted) naming the reason, so the
    /// server serving it (a tonic server fed by [`GrpcIncoming`](super::GrpcIncoming), say)
    /// drops the connection. `connection` stays registered as long as the stream lives.
    #[must_use]
    pub fn closing_with(mut self, connection: LiveConnection) -> Self {
        self.live = Some(Live {
            closing: Box::pin(connection.watch()),
            _connection: connection,
            closed: None,
        });
        self
    }

    /// The live-connection check, when [`closing_with`](Self::closing_with) set one: ready
    /// with the error to return once the connection must close.
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match &mut self.live {
            Some(live) => live.poll_closed(cx),
            None => Poll::Pending,
        }
    }

    /// The peer's identity.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// Whether the handshake resumed an earlier session (only with a config whose
    /// `resumption` switch is on; the session's checks were made again, see
    /// [`ServerConfigBuilder::resumption`](crate::tls::ServerConfigBuilder::resumption)).
    pub fn resumed(&self) -> bool {
        match &self.stream {
            TlsStream::Client(client) => resumed(client.get_ref().1),
            TlsStream::Server(server) => resumed(server.get_ref().1),
        }
    }

    /// The TLS stream.
    pub fn get_ref(&self) -> &TlsStream<IO> {
        &self.stream
    }

    /// The TLS stream and the peer.
    pub fn into_parts(self) -> (TlsStream<IO>, PeerIdentity) {
        (self.stream, self.peer)
    }

    /// A read or write error said as a refusal when it is the server's alert about our
    /// certificate.
    fn refusal(&self, error: io::Error) -> io::Error {
        match &self.client_config {
            Some(config) => {
                HandshakeRefusal::map_io(error, Side::Client, None, || PeerIdentity::own_id(config))
            }
            None => error,
        }
    }
}

/// A server handshake that picks up the refusal its verifier notes (what the rule expected,
/// what the client presented) in the same poll, on the same thread: no other handshake's
/// refusal can be mixed in.
struct ServerHandshake<F> {
    inner: Pin<Box<F>>,
    refused: Option<AuthorizeError>,
}

impl<F: Future> Future for ServerHandshake<F> {
    type Output = (F::Output, Option<AuthorizeError>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _ = PeerIdentity::take_refused_client();
        let polled = self.inner.as_mut().poll(cx);
        if let Some(refused) = PeerIdentity::take_refused_client() {
            self.refused = Some(refused);
        }
        match polled {
            Poll::Ready(output) => Poll::Ready((output, self.refused.take())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The server side of a handshake on `io`, within `timeout`; a refused client is said as
/// what the rule expected and what it presented.
async fn server_handshake<IO>(
    config: Arc<ServerConfig>,
    io: IO,
    timeout: Duration,
) -> io::Result<tokio_rustls::server::TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = ServerHandshake {
        inner: Box::pin(TlsAcceptor::from(config).accept(io)),
        refused: None,
    };
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(timed_out()),
        Ok((Ok(stream), _)) => {
            if resumed(stream.get_ref().1) {
                let peer = PeerIdentity::from_connection(stream.get_ref().1);
                crate::tls::accept_resumed(Side::Server, peer.as_ref(), None)?;
            }
            Ok(stream)
        }
        Ok((Err(error), refused)) => {
            if presented_no_certificate(&error) {
                crate::tls::no_certificate();
            }
            Err(HandshakeRefusal::map_io(
                error,
                Side::Server,
                refused,
                || None,
            ))
        }
    }
}

/// Whether a server handshake failed because the client presented no certificate, which
/// rustls refuses without asking the verifier (so this end records the decision).
fn presented_no_certificate(error: &io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|error| matches!(error, rustls::Error::NoCertificatesPresented))
}

/// Whether the handshake resumed an earlier session (see `tls::resumption`).
fn resumed(connection: &rustls::CommonState) -> bool {
    connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

fn no_identity() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the peer presented no SPIFFE ID (was the config made by spiffe_mtls::tls?)",
    )
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
}

/// Runs the server side of a handshake on `io` with a config from
/// [`crate::tls::server_config`].
///
/// # Errors
/// The handshake's error, or a timeout after [`HANDSHAKE_TIMEOUT`]. A client the config's
/// rule refuses fails with a [`HandshakeRefusal`] as the inner error (kind
/// `PermissionDenied`): "the client is not authorized: expected (the rule), presented (its
/// ID)"; so does a client that refused this server's certificate.
pub async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> io::Result<MtlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    accept_within(config, io, HANDSHAKE_TIMEOUT).await
}

/// [`accept`] with another handshake timeout than [`HANDSHAKE_TIMEOUT`].
///
/// # Errors
/// As [`accept`], with `timeout`.
///
/// # Example
/// ```no_run
/// # use std::{sync::Arc, time::Duration};
/// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// let (tcp, _) = listener.accept().await?;
/// let stream = spiffe_mtls::net::accept_within(config, tcp, Duration::from_secs(3)).await?;
/// println!("peer {}", stream.peer());
/// # Ok(())
/// # }
/// ```
pub async fn accept_within<IO>(
    config: Arc<ServerConfig>,
    io: IO,
    timeout: Duration,
) -> io::Result<MtlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let stream = server_handshake(config, io, timeout).await?;
    let peer = PeerIdentity::from_connection(stream.get_ref().1).ok_or_else(no_identity)?;
    Ok(MtlsStream {
        stream: TlsStream::Server(stream),
        peer,
        client_config: None,
        live: None,
    })
}

/// [`accept_within`] for a config that does not require a client certificate: the stream and
/// the client's identity when it presented an SVID (verified and authorized by the config).
#[cfg(feature = "http")]
pub(crate) async fn accept_optional_within<IO>(
    config: Arc<ServerConfig>,
    io: IO,
    timeout: Duration,
) -> io::Result<(TlsStream<IO>, Option<PeerIdentity>)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let stream = server_handshake(config, io, timeout).await?;
    let peer = PeerIdentity::from_connection(stream.get_ref().1);
    Ok((TlsStream::Server(stream), peer))
}

/// Runs the client side of a handshake on `io` with a config from
/// [`crate::tls::client_config`]. `server_name` is sent as SNI (an IP address sends none); the
/// server is authorized by its SPIFFE ID, not by this name.
///
/// # Errors
/// As [`accept`]: a server the config's rule refuses fails with a [`HandshakeRefusal`]
/// ("the server is not authorized: expected (the rule), presented (its ID)"), and so does a
/// server that refused our certificate during the handshake (TLS 1.2; with TLS 1.3 the
/// refusal comes with the stream's first read: "the server refused our certificate (TLS
/// alert access_denied): it does not authorize (our ID)").
pub async fn connect<IO>(
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    io: IO,
) -> io::Result<MtlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    connect_within(config, server_name, io, HANDSHAKE_TIMEOUT).await
}

/// [`connect`] with another handshake timeout than [`HANDSHAKE_TIMEOUT`].
///
/// # Errors
/// As [`connect`], with `timeout`.
pub async fn connect_within<IO>(
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    io: IO,
    timeout: Duration,
) -> io::Result<MtlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let connector = TlsConnector::from(Arc::clone(&config));
    let stream = tokio::time::timeout(timeout, connector.connect(server_name, io))
        .await
        .map_err(|_| timed_out())?
        .map_err(|error| {
            HandshakeRefusal::map_io(error, Side::Client, None, || PeerIdentity::own_id(&config))
        })?;
    let peer = PeerIdentity::from_connection(stream.get_ref().1).ok_or_else(no_identity)?;
    if resumed(stream.get_ref().1) {
        // Refused before anything is sent on it: a resumed session skipped the verifier.
        crate::tls::accept_resumed(Side::Client, Some(&peer), Some(&config))?;
    }
    Ok(MtlsStream {
        stream: TlsStream::Client(stream),
        peer,
        client_config: Some(config),
        live: None,
    })
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for MtlsStream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Poll::Ready(error) = self.poll_live(cx) {
            return Poll::Ready(Err(error));
        }
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.refusal(error))),
            other => other,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MtlsStream<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(error) = self.poll_live(cx) {
            return Poll::Ready(Err(error));
        }
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.refusal(error))),
            other => other,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(error) = self.poll_live(cx) {
            return Poll::Ready(Err(error));
        }
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(self.refusal(error))),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A TCP connection to `host:port` with `TCP_NODELAY` set, for the clients this crate dials
/// itself ([`MtlsConnector`](super::MtlsConnector), [`grpc_channel`](super::grpc_channel)):
/// without it, HTTP/2's small writes wait for delayed ACKs, about 40 ms on a new connection.
#[cfg(any(feature = "http", feature = "grpc"))]
pub(crate) async fn connect_tcp(host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY not set");
    }
    Ok(tcp)
}

#[cfg(all(test, any(feature = "http", feature = "grpc")))]
mod tests {
    #[tokio::test]
    async fn dialled_connections_have_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = super::connect_tcp("127.0.0.1", port).await.unwrap();
        assert!(tcp.nodelay().unwrap());
        // Its twin: a socket as tokio makes it has Nagle's algorithm on.
        let plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(!plain.nodelay().unwrap());
    }
}
