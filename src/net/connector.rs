//! A hyper-util client connector over mutual TLS that hands back the server's identity.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::stream::connect_within;
use super::{HANDSHAKE_TIMEOUT, MtlsStream};

/// A connector for `hyper_util::client::legacy::Client` (or any user of a
/// `tower::Service<Uri>` that yields connections) that dials TCP and runs a mutual TLS
/// handshake with a config from [`crate::tls::client_config`].
///
/// The server is authorized by its SPIFFE ID, by the config's authorizer, during the
/// handshake: a server the authorizer refuses never receives a request. The URI's host is
/// dialed and sent as SNI (an IP address sends none); it is never trusted. Every connection
/// is TLS, whatever the URI's scheme; without a port, 443 is dialed.
///
/// Each response carries the server's [`PeerIdentity`](crate::tls::PeerIdentity) in its
/// extensions (hyper-util copies the connection's [`Connected::extra`] into every response).
/// When the config's ALPN is empty, the connector offers `h2` and `http/1.1`, and a server
/// that picks `h2` is spoken to in HTTP/2.
///
/// # Example
/// ```no_run
/// use http_body_util::Empty;
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
/// use spiffe_mtls::{authorize, net::{MtlsConnector, PeerIdentity}, source::WorkloadApiSource, tls};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = WorkloadApiSource::builder().build().await?;
/// let config = tls::client_config(source, authorize::id("spiffe://example.org/server".parse()?))
///     .build()?;
/// let client = Client::builder(TokioExecutor::new())
///     .build::<_, Empty<bytes::Bytes>>(MtlsConnector::new(config));
/// let response = client.get("https://127.0.0.1:8443/".parse()?).await?;
/// let server = response.extensions().get::<PeerIdentity>().expect("set by the connector");
/// println!("{server} answered {}", response.status());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MtlsConnector {
    config: Arc<ClientConfig>,
    timeout: Duration,
}

impl MtlsConnector {
    /// A connector with `config` (from [`crate::tls::client_config`]); an empty ALPN list is
    /// set to `h2`, `http/1.1`.
    ///
    /// # Example
    /// See [`MtlsConnector`].
    pub fn new(mut config: ClientConfig) -> Self {
        if config.alpn_protocols.is_empty() {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Self {
            config: Arc::new(config),
            timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// How long the TCP connection and the TLS handshake together may take (default 10 s).
    ///
    /// # Example
    /// ```
    /// # fn run(config: spiffe_mtls::rustls::ClientConfig) {
    /// use std::time::Duration;
    /// let connector = spiffe_mtls::net::MtlsConnector::new(config).timeout(Duration::from_secs(2));
    /// # }
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Dials `uri`'s host and port and runs the handshake.
    async fn dial(
        config: Arc<ClientConfig>,
        timeout: Duration,
        uri: Uri,
    ) -> io::Result<TokioIo<MtlsStream<TcpStream>>> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        let host = uri
            .host()
            .ok_or_else(|| invalid(format!("{uri}: no host to dial")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let name = ServerName::try_from(host.clone())
            .map_err(|e| invalid(format!("{host}: not a server name: {e}")))?;
        let connect = async {
            let tcp = super::stream::connect_tcp(&host, port).await?;
            connect_within(config, name, tcp, timeout).await
        };
        let stream = tokio::time::timeout(timeout, connect).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {host}:{port} timed out"),
            )
        })??;
        Ok(TokioIo::new(stream))
    }
}

impl tower::Service<Uri> for MtlsConnector {
    type Response = TokioIo<MtlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(Self::dial(Arc::clone(&self.config), self.timeout, uri))
    }
}

impl Connection for MtlsStream<TcpStream> {
    /// The server's [`PeerIdentity`](crate::tls::PeerIdentity) as the connection's extra (so
    /// in every response's extensions), and HTTP/2 when ALPN chose `h2`.
    fn connected(&self) -> Connected {
        let (_, tls) = self.get_ref().get_ref();
        let connected = Connected::new().extra(self.peer().clone());
        if tls.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}
