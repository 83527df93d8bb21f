//! Connections with a verified peer: TLS streams that carry the peer's [`PeerIdentity`], an
//! HTTP server (hyper, axum) and gRPC plumbing (tonic) built on them.
//!
//! | You have | Use |
//! |---|---|
//! | a TCP listener and an axum `Router` or any tower service | [`serve_http`] |
//! | a tonic server | [`incoming`] with `Server::serve_with_incoming` |
//! | a tonic client | [`grpc_channel`] |
//! | raw streams | [`accept`], [`connect`] |
//!
//! Handlers find the peer as a request extension:
//! `request.extensions().get::<PeerIdentity>()` (axum: `Extension<PeerIdentity>`).

#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;
mod stream;

#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub use grpc::{GrpcChannelError, grpc_channel, incoming};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{serve_http, serve_http_with_shutdown};
pub use stream::{MtlsStream, accept, connect};

pub use crate::tls::PeerIdentity;

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
