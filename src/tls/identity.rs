//! The verified identity of the peer of an established connection.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The peer of a connection made with this crate's configs: its SPIFFE ID and the chain it
/// presented. Cheap to clone; handlers receive it as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    spiffe_id: SpiffeId,
    chain: Arc<[CertificateDer<'static>]>,
}

impl PeerIdentity {
    /// The peer of a finished handshake.
    ///
    /// Trust it only for connections whose config came from [`crate::tls`]: there the chain
    /// was verified as an X.509-SVID and the ID authorized before the handshake finished. It
    /// is `None` before the handshake completes or without a peer certificate (a client of
    /// [`tls_server_config`](super::tls_server_config)). Not for the server of
    /// [`mtls_web_client_config`](super::mtls_web_client_config): it was verified by web
    /// PKI, not as an SVID.
    pub fn from_connection(connection: &rustls::CommonState) -> Option<Self> {
        let chain = connection.peer_certificates()?;
        let spiffe_id = leaf_spiffe_id(chain.first()?)?;
        Some(Self {
            spiffe_id,
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
        })
    }

    #[cfg(feature = "reqwest")]
    /// The peer of a connection whose TLS layer gives out only the leaf (reqwest's
    /// `TlsInfo`): the same ID, a chain of the leaf alone. Trusted as [`Self::from_connection`].
    pub(crate) fn from_leaf(leaf: CertificateDer<'static>) -> Option<Self> {
        let spiffe_id = leaf_spiffe_id(&leaf)?;
        Some(Self {
            spiffe_id,
            chain: Arc::from([leaf]),
        })
    }

    /// The peer's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The peer's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.spiffe_id.trust_domain()
    }

    /// The chain the peer presented, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.spiffe_id.fmt(f)
    }
}

/// The SPIFFE ID in the URI SAN of a leaf that the handshake already verified.
pub(super) fn leaf_spiffe_id(leaf: &CertificateDer<'_>) -> Option<SpiffeId> {
    crate::verify::first_spiffe_uri(leaf).ok()??.parse().ok()
}
