//! tonic over mutual TLS: an incoming stream of verified connections for servers, a channel
//! for clients.

use std::io;
use std::sync::Arc;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use super::{MtlsStream, accept, connect};
use crate::tls::PeerIdentity;

impl Connected for MtlsStream<TcpStream> {
    /// tonic puts this into every request's extensions:
    /// `request.extensions().get::<PeerIdentity>()`.
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.peer().clone()
    }
}

/// Accepts TCP connections on `listener` and yields those whose mutual TLS handshake (with
/// `config`, from [`crate::tls::server_config`]) succeeded, for
/// `tonic::transport::Server::serve_with_incoming`. Handshakes run concurrently; a refused or
/// broken one is logged and skipped.
///
/// The config's ALPN should offer `h2`.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = io::Result<MtlsStream<TcpStream>>> {
    let (ready, streams) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                accepted = listener.accept() => accepted,
                () = ready.closed() => return,
            };
            let tcp = match tcp {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let config = Arc::clone(&config);
            let ready = ready.clone();
            tokio::spawn(async move {
                match accept(config, tcp).await {
                    Ok(stream) => {
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                }
            });
        }
    });
    ReceiverStream::new(streams)
}

/// Why a gRPC channel could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrpcChannelError {
    /// The URI has no host or port.
    #[error("{0}: expected https://host:port")]
    Uri(String),
    /// The connection or the handshake failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// A tonic channel to `uri` (`https://host:port`) over mutual TLS with `config` (from
/// [`crate::tls::client_config`]; its ALPN is set to `h2`). The server is authorized by its
/// SPIFFE ID; the host is used to connect and as SNI.
///
/// # Errors
/// [`GrpcChannelError`] for a URI without host and port, or a failed first connection.
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
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))?;
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
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                let stream = connect(config, name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(channel)
}
