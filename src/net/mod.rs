//! Connections with a verified peer: TLS streams that carry the peer's [`PeerIdentity`], an
//! HTTP server (hyper, axum) and HTTP clients (hyper-util, reqwest), tower layers that
//! authorize routes and pass the identity on as a header, and gRPC plumbing (tonic), all
//! built on them.
//!
//! | You have | Use |
//! |---|---|
//! | a TCP listener and an axum `Router` or any tower service | [`serve_http`], or [`HttpServer`] for its limits |
//! | routes that only some peers may call | [`RoutePolicyLayer`] with a [`Policy`](crate::Policy) |
//! | one canonical request path for your own router or file server | [`CanonicalPathLayer`] |
//! | handlers or frameworks that read the caller from a header | [`IdentityHeaderLayer`] |
//! | a hyper-util client | [`MtlsConnector`] |
//! | a reqwest client | [`reqwest_client`] / [`reqwest_builder`], [`reqwest_peer`] |
//! | a tonic server | [`incoming`] or [`GrpcIncoming`] with `Server::serve_with_incoming` |
//! | a tonic client | [`grpc_channel`] |
//! | raw streams | [`accept`], [`connect`] |
//! | a refusal in words (expected, presented) | [`HandshakeRefusal`], [`describe_error`] |
//! | connections closed when their peer stops passing (expiry, bundle, policy, revocation) | [`LiveConnections`], [`check_peer`] |
//!
//! Server handlers find the peer and its address as request extensions:
//! `request.extensions().get::<PeerIdentity>()` and `.get::<RemoteAddr>()` (axum:
//! `Extension<PeerIdentity>`, `Extension<RemoteAddr>`); tonic handlers find a
//! [`GrpcConnectInfo`] holding both. Client responses carry the server's `PeerIdentity`
//! ([`MtlsConnector`]) or give it through [`reqwest_peer`].
//!
//! Servers bound the TLS handshake: each has [`HANDSHAKE_TIMEOUT`] to finish (a client that
//! connects and says nothing is disconnected then), at most [`MAX_HANDSHAKES`] run at once,
//! and new connections wait for a free slot; both are settings of [`HttpServer`] and
//! [`GrpcIncoming`].

#[cfg(feature = "http")]
mod canonical_path;
#[cfg(feature = "http")]
mod connector;
#[cfg(feature = "http")]
mod deadlines;
#[cfg(feature = "grpc")]
mod grpc;
mod handshake_refusal;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod http_connection;
#[cfg(feature = "http")]
mod identity_header;
#[cfg(all(feature = "http", feature = "jwt"))]
mod jwt_auth;
#[cfg(all(feature = "http", feature = "jwt", feature = "workload-api"))]
mod jwt_bearer;
#[cfg(any(feature = "http", feature = "grpc"))]
mod listener;
mod live;
#[cfg(feature = "http")]
mod refusal;
#[cfg(feature = "reqwest")]
mod reqwest_client;
#[cfg(feature = "http")]
mod route_layer;
mod stream;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use canonical_path::{CanonicalPath, CanonicalPathLayer, PathError, canonical_path};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use connector::MtlsConnector;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use grpc::{GrpcChannelError, GrpcConnectInfo, GrpcIncoming, grpc_channel, incoming};
pub use handshake_refusal::{HandshakeRefusal, describe_error};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{HttpServer, RemoteAddr, serve_http, serve_http_with_shutdown};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http_connection::{
    ConnectionTimeouts, HEADER_READ_TIMEOUT, IDLE_TIMEOUT, LIVE_CLOSE_GRACE, serve_http_connection,
    serve_live_http_connection,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use identity_header::{IdentityHeader, IdentityHeaderLayer, SPIFFE_ID_HEADER};
#[cfg(all(feature = "http", feature = "jwt"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "http", feature = "jwt"))))]
pub use jwt_auth::{JwtAuth, JwtAuthLayer};
#[cfg(all(
    feature = "http",
    feature = "jwt",
    feature = "workload-api",
    feature = "reqwest"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "http",
        feature = "reqwest",
        feature = "jwt",
        feature = "workload-api"
    )))
)]
pub use jwt_bearer::reqwest_bearer;
#[cfg(all(feature = "http", feature = "jwt", feature = "workload-api"))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(feature = "http", feature = "jwt", feature = "workload-api")))
)]
pub use jwt_bearer::{JwtBearer, JwtBearerLayer};
pub use live::{CloseReason, CurrentTrust, LiveConnection, LiveConnections, check_peer};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use refusal::RouteRefusal;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub use reqwest_client::{reqwest_builder, reqwest_client, reqwest_peer};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use route_layer::{ChooseRoute, PathPrefixRoute, RoutePolicy, RoutePolicyLayer};
pub use stream::{MtlsStream, accept, accept_within, connect, connect_within};

pub use crate::tls::PeerIdentity;

/// How long a TLS handshake may take before the connection is dropped, by default.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many server handshakes may run at once, by default ([`HttpServer::max_handshakes`],
/// [`GrpcIncoming::max_handshakes`]).
///
/// # Example
/// ```no_run
/// # use std::sync::Arc;
/// # async fn run(config: Arc<spiffe_mtls::rustls::ServerConfig>) -> std::io::Result<()> {
/// use spiffe_mtls::net::{HttpServer, MAX_HANDSHAKES};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// let server = HttpServer::new(listener, config).max_handshakes(MAX_HANDSHAKES / 4);
/// # Ok(())
/// # }
/// ```
pub const MAX_HANDSHAKES: usize = 256;
