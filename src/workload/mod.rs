//! The SPIFFE Workload API: generated gRPC types, endpoint addresses and a client.
//!
//! The gRPC code is generated at build time from `proto/workload.proto` by a pure-Rust
//! protobuf compiler (no system `protoc`).

mod address;
#[cfg(feature = "workload-api")]
mod client;

pub use address::{AddressError, ENDPOINT_SOCKET_ENV, EndpointAddress};
#[cfg(feature = "workload-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
pub use client::{MAX_MESSAGE_BYTES, WORKLOAD_HEADER, WorkloadError, connect, request};

/// The generated messages, client and server of the `SpiffeWorkloadAPI` service.
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
}
