//! SPIFFE federation over bundle endpoints: serving a trust domain's bundle as a SPIFFE bundle
//! document ([`BundleEndpoint`]), and fetching another's, once ([`BundleEndpointClient`]) or
//! as it changes ([`FederatedBundle`]), with the federation spec's two endpoint profiles
//! (`https_web`, `https_spiffe`).
//!
//! A bundle endpoint is what an OAuth authorization server that accepts JWT-SVIDs as client
//! assertions (draft-ietf-oauth-spiffe-client-auth, Keycloak's SPIFFE identity provider)
//! reads the trust domain's JWT keys from, and what another trust domain's SPIRE server or
//! dev server federates with.

mod client;
mod document;
mod endpoint;

pub use client::{
    BundleEndpointClient, DEFAULT_REFETCH, EndpointProfile, FederatedBundle, FetchError,
};
pub use document::{
    BundleDocument, DocumentError, MAX_DOCUMENT_BYTES, MAX_REFRESH_HINT, MIN_REFRESH_HINT,
};
pub use endpoint::{BundleEndpoint, DEFAULT_REFRESH_HINT, EndpointError};
