//! X.509 bundles: the root certificates of a trust domain, and a set of them keyed by trust
//! domain for federation.
//!
//! A bundle loads from PEM or from a SPIFFE bundle document (JWKS); [`X509Bundle::parse`]
//! tells which by content. Each root is parsed once, when the bundle is made, so verification
//! does not parse it again.

mod jwks;

use std::collections::HashMap;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::SectionKind;

use crate::pem::{self, PemError};
use crate::spiffe_id::TrustDomain;
use crate::verify::Anchor;

/// Why bytes are not a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Neither PEM nor a JSON document.
    #[error("neither PEM nor a SPIFFE bundle (JSON) document")]
    UnknownFormat,
    /// The PEM is not readable.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The PEM holds no certificate.
    #[error("no certificates in the bundle")]
    NoCertificates,
    /// The PEM holds something else than certificates.
    #[error("PEM section #{index} is {found}, not a certificate")]
    NotACertificate {
        /// Section index, from 0.
        index: usize,
        /// What was found.
        found: &'static str,
    },
    /// A root is not a well-formed certificate.
    #[error("bundle certificate #{index} is corrupt: {reason}")]
    CorruptCertificate {
        /// Certificate index, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A root names another trust domain than the bundle's in its `spiffe://` URI SAN: a
    /// root's own name may confirm the trust domain it was delivered for, never move it.
    #[error(
        "bundle certificate #{index} names trust domain {named:?} in its URI SAN, but this is the bundle of {trust_domain}"
    )]
    RootOfAnotherTrustDomain {
        /// Certificate index, from 0.
        index: usize,
        /// The trust domain the root names.
        named: String,
        /// The bundle's trust domain.
        trust_domain: String,
    },
    /// The JSON is not valid.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A SPIFFE bundle document needs a `keys` member.
    #[error("SPIFFE bundle document has no \"keys\" member")]
    JwksWithoutKeys,
    /// An `x509-svid` key must hold exactly one certificate in `x5c`.
    #[error("key #{index} (x509-svid) must have exactly one certificate in \"x5c\", found {count}")]
    JwksX5cCount {
        /// Key index, from 0.
        index: usize,
        /// Certificates found.
        count: usize,
    },
    /// An `x5c` entry is not base64.
    #[error("key #{index} (x509-svid): \"x5c\" is not base64: {reason}")]
    JwksX5cEncoding {
        /// Key index, from 0.
        index: usize,
        /// The decoder's message.
        reason: String,
    },
    /// A `jwt-svid` key must have a `kid`.
    #[error("key #{index} (jwt-svid) has no \"kid\"")]
    JwksMissingKid {
        /// Key index, from 0.
        index: usize,
    },
}

/// The X.509 roots of one trust domain. Cloning is cheap.
///
/// # Example
/// ```
/// use spiffe_mtls::{TrustDomain, X509Bundle};
///
/// let td: TrustDomain = "example.org".parse()?;
/// let bundle = X509Bundle::parse(td, br#"{"keys": []}"#)?;
/// assert!(bundle.is_empty()); // a valid bundle that trusts nothing
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct X509Bundle {
    trust_domain: TrustDomain,
    anchors: Arc<[Anchor]>,
    sequence: Option<u64>,
}

impl X509Bundle {
    /// A bundle of the given DER roots.
    ///
    /// # Errors
    /// [`BundleError::CorruptCertificate`] when a root is not a well-formed certificate.
    ///
    /// A root's `spiffe://` URI SAN is not checked here (go-spiffe's test bundles name other
    /// trust domains than the ones they are loaded for); see
    /// [`X509Bundle::check_root_names`].
    pub fn new(
        trust_domain: TrustDomain,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let anchors = roots
            .into_iter()
            .enumerate()
            .map(|(index, der)| {
                Anchor::parse(der)
                    .map_err(|reason| BundleError::CorruptCertificate { index, reason })
            })
            .collect::<Result<Arc<[_]>, _>>()?;
        Ok(Self {
            trust_domain,
            anchors,
            sequence: None,
        })
    }

    /// A bundle with no roots: the trust domain is known but trusts nothing.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            anchors: Arc::new([]),
            sequence: None,
        }
    }

    /// Reads a bundle from PEM or a SPIFFE bundle document, detected by content: a document
    /// starting with `{` is JSON, one with a `-----BEGIN` line is PEM.
    ///
    /// # Errors
    /// [`BundleError`] saying what is wrong with the input.
    pub fn parse(trust_domain: TrustDomain, bytes: &[u8]) -> Result<Self, BundleError> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::from_jwks(trust_domain, bytes),
            _ => Self::from_pem(trust_domain, bytes).map_err(|e| match e {
                BundleError::Pem(PemError::NotPem) => BundleError::UnknownFormat,
                other => other,
            }),
        }
    }

    /// Reads a bundle from PEM certificates (at least one, and nothing but certificates).
    ///
    /// # Errors
    /// [`BundleError`] for input that is not PEM, holds no certificate, holds a key or other
    /// section, or a corrupt certificate.
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, BundleError> {
        let sections = pem::sections(pem)?;
        if sections.is_empty() {
            return Err(BundleError::NoCertificates);
        }
        let roots = sections
            .into_iter()
            .enumerate()
            .map(|(index, (kind, der))| match kind {
                SectionKind::Certificate => Ok(CertificateDer::from(der)),
                other => Err(BundleError::NotACertificate {
                    index,
                    found: pem::describe(other),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(trust_domain, roots)
    }

    /// Reads a bundle from a SPIFFE bundle document (a JWK Set): the `x509-svid` keys give the
    /// roots; other keys are checked for form and not kept.
    ///
    /// # Errors
    /// [`BundleError`] for invalid JSON, a missing `keys` member, an `x509-svid` key without
    /// exactly one certificate, a `jwt-svid` key without `kid`, or a corrupt certificate.
    pub fn from_jwks(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        let (roots, sequence) = jwks::x509_roots(json)?;
        let mut bundle = Self::new(trust_domain, roots)?;
        bundle.sequence = sequence;
        Ok(bundle)
    }

    /// The `spiffe_sequence` of the SPIFFE bundle document the bundle was read from, if it
    /// had one (audit events name it).
    pub fn spiffe_sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// Checks that no root names another trust domain than this bundle's in its `spiffe://`
    /// URI SAN: for bundles read from a file bound to a trust domain (a `--bundle TD=FILE`
    /// argument, a federated bundle file), where such a root is a mistake or an attempt to pass
    /// one trust domain's root off as another's.
    ///
    /// # Errors
    /// [`BundleError::RootOfAnotherTrustDomain`] for the first root that does.
    pub fn check_root_names(&self) -> Result<(), BundleError> {
        for (index, anchor) in self.anchors.iter().enumerate() {
            if let Some(named) = &anchor.named_trust_domain
                && named != self.trust_domain.as_str()
            {
                return Err(BundleError::RootOfAnotherTrustDomain {
                    index,
                    named: named.clone(),
                    trust_domain: self.trust_domain.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The trust domain whose roots these are.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The roots, DER.
    pub fn roots(&self) -> impl ExactSizeIterator<Item = &CertificateDer<'static>> {
        self.anchors.iter().map(|a| &a.der)
    }

    /// Whether the bundle has no root.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Whether `der` is one of the roots.
    pub fn contains(&self, der: &CertificateDer<'_>) -> bool {
        self.anchors.iter().any(|a| a.der.as_ref() == der.as_ref())
    }

    pub(crate) fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }
}

/// Bundles keyed by trust domain: the local one and those of federated trust domains.
#[derive(Debug, Clone, Default)]
pub struct BundleSet {
    bundles: HashMap<TrustDomain, X509Bundle>,
}

impl BundleSet {
    /// An empty set: trusts no trust domain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bundle`, replacing any bundle of the same trust domain.
    pub fn insert(&mut self, bundle: X509Bundle) {
        self.bundles.insert(bundle.trust_domain.clone(), bundle);
    }

    /// The bundle of `trust_domain`, if any.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&X509Bundle> {
        self.bundles.get(trust_domain)
    }

    /// All bundles, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &X509Bundle> {
        self.bundles.values()
    }

    /// The number of trust domains.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the set holds no bundle.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl FromIterator<X509Bundle> for BundleSet {
    fn from_iter<I: IntoIterator<Item = X509Bundle>>(iter: I) -> Self {
        let mut set = Self::new();
        for bundle in iter {
            set.insert(bundle);
        }
        set
    }
}

#[cfg(all(test, unix, feature = "dev-server"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dev_server::DevCa;

    fn td(name: &str) -> TrustDomain {
        name.parse().unwrap()
    }

    fn root_of(name: &str) -> CertificateDer<'static> {
        DevCa::new(td(name), Duration::from_secs(3600))
            .unwrap()
            .root()
            .clone()
    }

    #[test]
    fn a_root_naming_another_trust_domain_is_refused() {
        let partner = root_of("partner.org");
        let bundle = X509Bundle::new(td("example.org"), [root_of("example.org"), partner]);
        let error = bundle.unwrap().check_root_names().unwrap_err();
        assert_eq!(
            error,
            BundleError::RootOfAnotherTrustDomain {
                index: 1,
                named: "partner.org".into(),
                trust_domain: "example.org".into(),
            }
        );
        assert_eq!(
            error.to_string(),
            "bundle certificate #1 names trust domain \"partner.org\" in its URI SAN, but this is the bundle of example.org"
        );
    }

    #[test]
    fn roots_naming_their_own_trust_domain_or_none_are_kept() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let unnamed = params.self_signed(&key).unwrap().der().clone();
        let bundle = X509Bundle::new(td("example.org"), [root_of("example.org"), unnamed]).unwrap();
        assert_eq!(bundle.roots().len(), 2);
        bundle.check_root_names().unwrap();
    }
}
