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
//! 5. forwarding headers the client sent (`forwarded`, `x-forwarded-*`, `x-real-ip`,
//!    `x-forwarded-client-cert`, `x-original-url`, ...) removed, the proxy's own
//!    `x-forwarded-for` and `x-forwarded-proto` set ([`forward`]);
//! 6. the target gets exactly the canonical path and the query as sent, `Host` (HTTP/1.1) or
//!    `:authority` (h2c) set to the `--target` address whatever the client sent, the body
//!    without trailers; a request with a body closes its target connection afterwards.
//!
//! Each client connection has target connections of its own (never shared with another
//! client, so no request of one peer can run on a connection another peer's bytes reached),
//! at most `--max-conns` target connections in all. It is served by the library's
//! [`serve_http_connection`]: a first-read deadline after the handshake and an idle timeout,
//! HTTP/1 and HTTP/2 alike; a request body that stalls for the idle timeout is cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spiffe_mtls::authorize::WatchedPolicy;
use spiffe_mtls::net::{
    CanonicalPathLayer, ConnectionTimeouts, IdentityHeaderLayer, LiveConnection, PeerIdentity,
    RemoteAddr, RoutePolicyLayer, RouteRefusal, serve_live_http_connection,
};
use spiffe_mtls::{net, tls};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tower::ServiceBuilder;

use super::address::Address;
use super::audit;
use super::forward::{
    Connector, Forward, LastFailure, ProxyBody, replace_forwarding_headers, strip_hop_by_hop,
};
use super::metrics::Metrics;

/// The most target connections one client connection may hold at once (a quarter of
/// --max-conns when that is less).
const MAX_TARGET_CONNS_PER_CLIENT: usize = 32;

/// Requests and route refusals on one connection.
pub type Counts = Arc<(AtomicU64, AtomicU64)>;

/// The HTTP side of a server: the backend client, the header, the routes.
pub struct Forwarding {
    client: hyper_util::client::legacy::Builder,
    connector: Connector,
    target: Arc<Address>,
    /// How many target connections one client connection may hold at once.
    share_per_client: usize,
    authority: http::uri::Authority,
    layer: IdentityHeaderLayer,
    routes: Option<RoutePolicyLayer>,
    h2c: bool,
    timeouts: ConnectionTimeouts,
}

impl Forwarding {
    /// Forwarding to `target`, with the identity header, the policy's routes, h2c, the
    /// client connections' deadlines and at most `max_target_conns` target connections.
    pub fn new(
        target: Address,
        id_header: Option<&str>,
        routes: Option<WatchedPolicy>,
        h2c: bool,
        timeouts: ConnectionTimeouts,
        max_target_conns: usize,
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
        let mut client = Client::builder(TokioExecutor::new());
        client.http2_only(h2c);
        // An idle target connection would hold one of the --max-conns target slots for as
        // long as its client stays connected: each goes back as soon as its response is done.
        client.pool_max_idle_per_host(0);
        let target = Arc::new(target);
        let slots = Semaphore::new(max_target_conns.clamp(1, Semaphore::MAX_PERMITS));
        let share_per_client = (max_target_conns / 4).clamp(1, MAX_TARGET_CONNS_PER_CLIENT);
        Ok(Self {
            client,
            connector: Connector::new(Arc::clone(&target), Arc::new(slots)),
            target,
            share_per_client,
            authority,
            layer,
            routes: routes.map(RoutePolicyLayer::watched),
            h2c,
            timeouts,
        })
    }

    /// Serves one verified client until it closes (or, once draining or once `live` says it
    /// must close, until its requests in flight are answered); returns how it ended, for the
    /// audit line.
    #[allow(clippy::too_many_arguments)] // one connection's parts, each from elsewhere
    pub async fn serve<S>(
        &self,
        stream: S,
        peer: PeerIdentity,
        remote: Option<SocketAddr>,
        counts: Counts,
        metrics: &Arc<Metrics>,
        mut draining: watch::Receiver<bool>,
        live: &mut LiveConnection,
    ) -> String
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // A pool of this client connection's own, holding at most a share of the target
        // connections.
        let failure = LastFailure::default();
        let forward = Forward::new(
            self.client
                .build(self.connector.for_one_client(self.share_per_client)),
            Arc::clone(&self.target),
            self.authority.clone(),
            self.h2c,
            self.timeouts.idle_timeout(),
            Arc::clone(&failure),
        );
        let counted = Arc::clone(&counts);
        let metrics_closed = Arc::clone(metrics);
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
                replace_forwarding_headers(request.headers_mut(), remote);
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
        let (served, closed) =
            serve_live_http_connection(stream, service, self.timeouts, draining, live).await;
        if let Some(reason) = closed {
            metrics_closed.closed(reason);
            return super::serve::closed_for(reason);
        }
        // A target that failed a request is named, with why, even if the client then closed.
        let failed = failure.lock().ok().and_then(|mut last| last.take());
        match (served, failed) {
            (Ok(()), Some(failure)) => failure,
            (Ok(()), None) => "closed".to_owned(),
            (Err(error), Some(failure)) => {
                format!(
                    "http: {} (after {failure})",
                    net::describe_error(error.as_ref(), tls::Side::Server, None)
                )
            }
            (Err(error), None) => format!(
                "http: {}",
                net::describe_error(error.as_ref(), tls::Side::Server, None)
            ),
        }
    }
}
