//! An HTTPS server (HTTP/1.1 and HTTP/2) whose handlers see the client's identity.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::accept;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` (an axum `Router`, any tower service) over mutual TLS until the listener
/// fails; see [`serve_http_with_shutdown`].
///
/// # Errors
/// Never returns except with an error of the listener it cannot recover from.
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
    serve_http_with_shutdown(listener, config, service, std::future::pending()).await
}

/// Serves `service` over mutual TLS with `config` (from [`crate::tls::server_config`]) until
/// `shutdown` completes; open connections are closed then.
///
/// Each connection's [`PeerIdentity`](crate::tls::PeerIdentity) is inserted into the
/// extensions of every request it carries. Clients refused at the handshake never reach
/// `service`. HTTP/2 is used when the client negotiates it (put `h2` in the config's ALPN).
///
/// # Errors
/// As [`serve_http`].
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
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) if is_transient(&error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        connections.spawn(serve_connection(Arc::clone(&config), service.clone(), tcp));
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
    Ok(())
}

/// Errors of `accept` that concern one connection or a passing shortage, not the listener.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || error
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24)
}

async fn serve_connection<S, B>(config: Arc<ServerConfig>, service: S, tcp: tokio::net::TcpStream)
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
    let stream = match accept(config, tcp).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%error, "TLS handshake failed");
            return;
        }
    };
    let peer = stream.peer().clone();
    let service = service.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        request
    });
    let served = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
