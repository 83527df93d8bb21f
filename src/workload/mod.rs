//! The SPIFFE Workload API: endpoint addresses, a client answering in this crate's checked
//! types ([`WorkloadClient`]), and the raw protocol ([`proto`]).
//!
//! The gRPC code is generated at build time from `proto/workload.proto` by a pure-Rust
//! protobuf compiler (no system `protoc`).

mod address;
#[cfg(feature = "workload-api")]
mod client;

pub use address::{AddressError, ENDPOINT_SOCKET_ENV, EndpointAddress};
#[cfg(all(feature = "workload-api", feature = "jwt"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "workload-api", feature = "jwt"))))]
pub use client::IssuedJwtSvid;
#[cfg(feature = "workload-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
pub use client::{
    MAX_MESSAGE_BYTES, WORKLOAD_HEADER, WorkloadClient, WorkloadError, X509ContextStream, request,
};

/// The raw protocol: the generated messages, client and server of the `SpiffeWorkloadAPI`
/// service.
///
/// Services need none of it ([`WorkloadClient`] and
/// [`WorkloadApiSource`](crate::source::WorkloadApiSource) answer in checked types). It is here
/// for the two jobs that need the wire types: writing a mock Workload API server for tests
/// (`spiffe_workload_api_server`), and calls [`WorkloadClient`] does not make
/// ([`WorkloadClient::into_raw`]).
#[cfg(feature = "workload-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    rustdoc::invalid_html_tags
)]
pub mod proto {
    tonic::include_proto!("_");

    /// Never shows the private key (`x509_svid_key`): only its length.
    impl std::fmt::Debug for X509svid {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("X509svid")
                .field("spiffe_id", &self.spiffe_id)
                .field("x509_svid_bytes", &self.x509_svid.len())
                .field("x509_svid_key", &format_args!("<redacted>"))
                .field("bundle_bytes", &self.bundle.len())
                .field("hint", &self.hint)
                .finish()
        }
    }

    /// Never shows the token (`svid`).
    impl std::fmt::Debug for Jwtsvid {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Jwtsvid")
                .field("spiffe_id", &self.spiffe_id)
                .field("svid", &format_args!("<redacted>"))
                .field("hint", &self.hint)
                .finish()
        }
    }

    /// Never shows the token (`svid`).
    impl std::fmt::Debug for ValidateJwtsvidRequest {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ValidateJwtsvidRequest")
                .field("audience", &self.audience)
                .field("svid", &format_args!("<redacted>"))
                .finish()
        }
    }
}
