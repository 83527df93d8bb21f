//! A development SPIFFE identity provider.
//!
//! [`DevCa`] is an in-memory certificate authority for one trust domain (EC P-256, made with
//! rcgen) that issues X.509-SVIDs following the profile, which pass this crate's own
//! verifier. It is the signing part of the SPIRE-compatible development Workload API server.

mod ca;

pub use ca::{DevCa, DevCaError, SvidRequest};
