//! The verified identity of the peer of an established connection.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;

use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The peer of a connection made with this crate's configs: its SPIFFE ID and the chain it
/// presented. Cheap to clone; handlers receive it as a request extension.
///
/// Only this crate makes one, from a handshake its own verifier completed (`net::accept`,
/// `net::connect`, the servers and clients of `net`): holding a `PeerIdentity` means the
/// chain was verified as an X.509-SVID, the peer proved its key and the ID was authorized.
/// Or, behind `net::JwtAuthLayer` (features `http` and `jwt`), from a JWT-SVID this crate
/// validated: then [`chain`](Self::chain) is empty and [`jwt_svid`](Self::jwt_svid) holds it.
///
/// Its `Debug` output shows the SPIFFE ID, the chain's length and, for a JWT-SVID bearer, the
/// token's audience and expiry; never the bearer token.
#[derive(Clone)]
pub struct PeerIdentity {
    spiffe_id: SpiffeId,
    chain: Arc<[CertificateDer<'static>]>,
    expires_at: Option<SystemTime>,
    #[cfg(feature = "jwt")]
    jwt: Option<Arc<crate::jwt::JwtSvid>>,
}

impl std::fmt::Debug for PeerIdentity {
    /// Never shows a bearer token: a logged identity must not be replayable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("PeerIdentity");
        out.field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain.len());
        // JwtSvid's own Debug redacts the token.
        #[cfg(feature = "jwt")]
        out.field("jwt_svid", &self.jwt);
        out.finish()
    }
}

impl PartialEq for PeerIdentity {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(feature = "jwt")]
        let same_token = self.jwt.as_ref().map(|svid| svid.token())
            == other.jwt.as_ref().map(|svid| svid.token());
        #[cfg(not(feature = "jwt"))]
        let same_token = true;
        self.spiffe_id == other.spiffe_id && self.chain == other.chain && same_token
    }
}

impl Eq for PeerIdentity {}

impl PeerIdentity {
    /// The peer of a finished handshake made with a config of [`crate::tls`] (the only
    /// connections `net` hands here): there the chain was verified as an X.509-SVID and the ID
    /// authorized before the handshake finished. `None` before the handshake completes or
    /// without a peer certificate.
    #[cfg(feature = "net")]
    pub(crate) fn from_connection(connection: &rustls::CommonState) -> Option<Self> {
        let chain = connection.peer_certificates()?;
        let (spiffe_id, expires_at) = leaf_identity(chain.first()?)?;
        Some(Self {
            spiffe_id,
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            expires_at: Some(expires_at),
            #[cfg(feature = "jwt")]
            jwt: None,
        })
    }

    /// The client a server verifier on this thread refused last (taken: a second call gives
    /// `None`): what it expected and what was presented. For `net`'s server handshakes, which
    /// clear it before and take it after each poll of the handshake, on the polling thread.
    #[cfg(feature = "net")]
    pub(crate) fn take_refused_client() -> Option<crate::authorize::AuthorizeError> {
        super::verifier::take_refusal()
    }

    /// The SPIFFE ID a client config presents now: that of the certificate its resolver
    /// gives (with this crate's configs, the source's current SVID). `None` for a config
    /// that presents no certificate or one without a SPIFFE ID.
    #[cfg(feature = "net")]
    pub(crate) fn own_id(config: &rustls::ClientConfig) -> Option<SpiffeId> {
        let key = config.client_auth_cert_resolver.resolve(&[], &[])?;
        leaf_spiffe_id(key.cert.first()?)
    }

    #[cfg(feature = "reqwest")]
    /// The peer of a connection whose TLS layer gives out only the leaf (reqwest's
    /// `TlsInfo`): the same ID, a chain of the leaf alone. Trusted as `from_connection`.
    pub(crate) fn from_leaf(leaf: CertificateDer<'static>) -> Option<Self> {
        let (spiffe_id, expires_at) = leaf_identity(&leaf)?;
        Some(Self {
            spiffe_id,
            chain: Arc::from([leaf]),
            expires_at: Some(expires_at),
            #[cfg(feature = "jwt")]
            jwt: None,
        })
    }

    /// A peer with this chain, unverified: for unit tests only.
    #[cfg(test)]
    pub(crate) fn for_tests(chain: Vec<CertificateDer<'static>>) -> Option<Self> {
        let (spiffe_id, expires_at) = leaf_identity(chain.first()?)?;
        Some(Self {
            spiffe_id,
            chain: Arc::from(chain),
            expires_at: Some(expires_at),
            #[cfg(feature = "jwt")]
            jwt: None,
        })
    }

    /// The bearer of a JWT-SVID this crate validated (`net::JwtAuthLayer`).
    #[cfg(all(feature = "http", feature = "jwt"))]
    pub(crate) fn from_jwt_svid(svid: crate::jwt::JwtSvid) -> Self {
        Self {
            spiffe_id: svid.spiffe_id().clone(),
            chain: Arc::from([]),
            expires_at: None,
            jwt: Some(Arc::new(svid)),
        }
    }

    /// The JWT-SVID the identity comes from, when it comes from one (`net::JwtAuthLayer`).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_svid(&self) -> Option<&crate::jwt::JwtSvid> {
        self.jwt.as_deref()
    }

    /// The peer's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The peer's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.spiffe_id.trust_domain()
    }

    /// When the peer's leaf certificate expires (its notAfter); `None` for a JWT-SVID bearer,
    /// whose token's expiry its bearer layer checks. A connection can outlive it: the route
    /// and skill layers refuse a request whose peer's certificate has expired since the
    /// handshake.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether the peer's leaf certificate has expired (false for a JWT-SVID bearer).
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| SystemTime::now() >= at)
    }

    /// The chain the peer presented, leaf first (empty for a JWT-SVID bearer).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.spiffe_id.fmt(f)
    }
}

/// The SPIFFE ID in the URI SAN of a leaf that the handshake already verified, and the
/// leaf's notAfter.
#[cfg(any(feature = "net", test))]
fn leaf_identity(leaf: &CertificateDer<'_>) -> Option<(SpiffeId, SystemTime)> {
    let (uri, not_after) = crate::verify::spiffe_uri_and_not_after(leaf).ok()?;
    Some((
        uri?.parse().ok()?,
        crate::verify::system_time_from_unix(not_after),
    ))
}

/// The SPIFFE ID in the URI SAN of a leaf, read without verifying it (a handshake verified
/// it already, or a verification follows).
pub(crate) fn leaf_spiffe_id(leaf: &CertificateDer<'_>) -> Option<SpiffeId> {
    crate::verify::first_spiffe_uri(leaf).ok()??.parse().ok()
}
