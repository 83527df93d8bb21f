//! Why a certificate chain is not a valid X.509-SVID for a trusted trust domain.

use std::fmt;

use crate::spiffe_id::{IdError, TrustDomain};

/// Where in the chain a certificate sits, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Position {
    /// The first certificate of the chain: the SVID itself.
    Leaf,
    /// A certificate after the leaf; the index counts from the leaf at 0.
    Chain(usize),
    /// A root of the trust domain's bundle.
    Root,
}

impl Position {
    pub(crate) fn of(index: usize) -> Self {
        if index == 0 {
            Position::Leaf
        } else {
            Position::Chain(index)
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Leaf => f.write_str("leaf certificate"),
            Position::Chain(index) => write!(f, "chain certificate #{index}"),
            Position::Root => f.write_str("bundle root"),
        }
    }
}

/// The broad kind of a [`VerifyError`], for callers that map it onto protocol errors (a TLS
/// alert, an exit code) without matching every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bytes that are not a certificate.
    Malformed,
    /// A certificate breaks a rule of the X.509-SVID profile or of RFC 5280.
    Profile,
    /// No bundle, or no path from the chain to a root of the right bundle.
    UnknownIssuer,
    /// A signature does not verify, or uses an algorithm the provider does not support.
    BadSignature,
    /// A certificate is expired or not yet valid at the verification time.
    Expired,
    /// The verifier could not run (no crypto provider).
    Setup,
}

/// Why a chain is not a valid X.509-SVID. Each variant names the rule it breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The peer presented no certificate.
    #[error("no certificate presented")]
    EmptyChain,
    /// More certificates than any SVID chain needs.
    #[error("chain of {count} certificates is longer than the limit of {max}")]
    ChainTooLong {
        /// Certificates presented.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A certificate larger than [`MAX_CERTIFICATE_SIZE`](super::MAX_CERTIFICATE_SIZE) bytes.
    #[error("{position} is {size} bytes, more than the limit of {max}")]
    CertificateTooLarge {
        /// Which certificate.
        position: Position,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A certificate with more than [`MAX_EXTENSIONS`](super::MAX_EXTENSIONS) extensions.
    #[error("{position} has {count} extensions, more than the limit of {max}")]
    TooManyExtensions {
        /// Which certificate.
        position: Position,
        /// Extensions found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a DER X.509 certificate.
    #[error("{position} is malformed: {reason}")]
    Malformed {
        /// Which certificate.
        position: Position,
        /// What the parser found wrong.
        reason: String,
    },
    /// An extension appears twice (RFC 5280 4.2).
    #[error("{position} has the extension {oid} more than once")]
    DuplicateExtension {
        /// Which certificate.
        position: Position,
        /// The extension's OID.
        oid: String,
    },
    /// An extension marked critical that this verifier does not process (RFC 5280 4.2).
    #[error("{position} has an unsupported critical extension {oid}")]
    UnknownCriticalExtension {
        /// Which certificate.
        position: Position,
        /// The extension's OID.
        oid: String,
    },
    /// The signature algorithm inside the signed part differs from the outer one (RFC 5280 4.1.1.2).
    #[error("{position}: signature algorithm in the signed part differs from the outer one")]
    SignatureAlgorithmMismatch {
        /// Which certificate.
        position: Position,
    },
    /// An empty subject requires a critical subjectAltName extension (RFC 5280 4.1.2.6).
    #[error("{position} has an empty subject but no critical subject alternative name extension")]
    EmptySubjectWithoutCriticalSan {
        /// Which certificate.
        position: Position,
    },
    /// The leaf must carry exactly one URI SAN (X.509-SVID 2).
    #[error("leaf certificate must have exactly one URI SAN, found {count}")]
    LeafUriSanCount {
        /// URI SANs found.
        count: usize,
    },
    /// The leaf's URI SAN is not a valid SPIFFE ID.
    #[error("leaf certificate URI SAN is not a valid SPIFFE ID: {0}")]
    LeafIdInvalid(IdError),
    /// A leaf's SPIFFE ID must have a path (X.509-SVID 3).
    #[error("leaf certificate SPIFFE ID {id} has no path; a workload ID needs one")]
    LeafIdWithoutPath {
        /// The ID found.
        id: String,
    },
    /// The leaf must not be a CA (X.509-SVID 4.1).
    #[error("leaf certificate must not have the CA flag set")]
    LeafIsCa,
    /// The leaf must have a key usage extension (X.509-SVID 4.3).
    #[error("leaf certificate has no key usage extension")]
    LeafKeyUsageMissing,
    /// The key usage extension must be critical (X.509-SVID 4.3).
    #[error("leaf certificate key usage extension is not marked critical")]
    LeafKeyUsageNotCritical,
    /// The leaf must have digitalSignature (X.509-SVID 4.3).
    #[error("leaf certificate key usage lacks digitalSignature")]
    LeafMissingDigitalSignature,
    /// The leaf must not have keyCertSign (X.509-SVID 4.3).
    #[error("leaf certificate key usage must not have keyCertSign")]
    LeafHasKeyCertSign,
    /// The leaf must not have cRLSign (X.509-SVID 4.3).
    #[error("leaf certificate key usage must not have cRLSign")]
    LeafHasCrlSign,
    /// An extended key usage, when present, must have serverAuth and clientAuth (X.509-SVID 4.4).
    #[error("leaf certificate extended key usage lacks {missing}")]
    LeafExtendedKeyUsage {
        /// `serverAuth`, `clientAuth` or both.
        missing: &'static str,
    },
    /// A signing certificate must be a CA (X.509-SVID 4.1).
    #[error("{position} signs the chain but does not have the CA flag set")]
    SigningCertNotCa {
        /// Which certificate.
        position: Position,
    },
    /// A signing certificate must have keyCertSign (X.509-SVID 4.3).
    #[error("{position} signs the chain but its key usage lacks keyCertSign")]
    SigningCertMissingKeyCertSign {
        /// Which certificate.
        position: Position,
    },
    /// A signing certificate's SPIFFE ID must be the ID of a trust domain, without a path
    /// (X.509-SVID 3).
    #[error("{position} is a signing certificate whose SPIFFE ID {id} has a path")]
    SigningCertIdWithPath {
        /// Which certificate.
        position: Position,
        /// The ID found.
        id: String,
    },
    /// A signing certificate's `spiffe://` URI SAN is not a valid SPIFFE ID.
    #[error("{position} has an invalid SPIFFE ID: {error}")]
    SigningCertIdInvalid {
        /// Which certificate.
        position: Position,
        /// The broken rule.
        error: IdError,
    },
    /// No bundle for the leaf's trust domain: it is not trusted.
    #[error("no bundle for trust domain {trust_domain}: it is not trusted")]
    NoBundle {
        /// The leaf's trust domain.
        trust_domain: TrustDomain,
    },
    /// The trust domain's bundle has no root: it revoked its keys.
    #[error("the bundle for trust domain {trust_domain} has no roots: it trusts nothing")]
    EmptyBundle {
        /// The leaf's trust domain.
        trust_domain: TrustDomain,
    },
    /// No path from the leaf to a root of its trust domain's bundle.
    #[error("chain does not lead to a root of the bundle for trust domain {trust_domain}")]
    UnknownIssuer {
        /// The leaf's trust domain.
        trust_domain: TrustDomain,
    },
    /// A signature does not verify against its issuer's key.
    #[error("signature of the {position} does not verify with its issuer's key")]
    BadSignature {
        /// Which certificate.
        position: Position,
    },
    /// No algorithm of the crypto provider matches the signature and key.
    #[error("{position} uses a signature algorithm or key type that is not supported")]
    UnsupportedSignatureAlgorithm {
        /// Which certificate.
        position: Position,
    },
    /// The certificate's validity starts after the verification time.
    #[error("{position} is not valid before {not_before}")]
    NotYetValid {
        /// Which certificate.
        position: Position,
        /// Start of validity, RFC 3339.
        not_before: String,
    },
    /// The certificate's validity ended before the verification time.
    #[error("{position} expired at {not_after}")]
    Expired {
        /// Which certificate.
        position: Position,
        /// End of validity, RFC 3339.
        not_after: String,
    },
    /// A basicConstraints path length constraint is exceeded (RFC 5280 4.2.1.9).
    #[error("{position} allows {max} intermediate certificate(s) below it, the path has {found}")]
    PathLengthExceeded {
        /// The constraining CA certificate.
        position: Position,
        /// Its pathLenConstraint.
        max: u32,
        /// Intermediates below it.
        found: u32,
    },
    /// A name is outside the name constraints of a CA above it (RFC 5280 4.2.1.10).
    #[error("name constraints of the {position} reject a name of the {constrained}: {reason}")]
    NameConstraintViolation {
        /// The constraining CA certificate.
        position: Position,
        /// The certificate whose name is rejected.
        constrained: Position,
        /// Which name and why.
        reason: String,
    },
    /// The path to a root would need more intermediates than allowed.
    #[error("no path to a root within {max} intermediate certificates")]
    PathTooDeep {
        /// The most intermediates a path may hold.
        max: usize,
    },
    /// Path building gave up (too many candidate issuers).
    #[error("gave up building a path after {0} signature checks")]
    PathBuildingBudget(u32),
    /// No crypto provider to check signatures with.
    #[error(
        "no rustls crypto provider: enable the `ring` or `aws-lc-rs` feature or install a process default"
    )]
    NoCryptoProvider,
}

impl VerifyError {
    /// The broad kind of the error.
    pub fn kind(&self) -> ErrorKind {
        use VerifyError::*;
        match self {
            Malformed { .. } => ErrorKind::Malformed,
            NoBundle { .. }
            | EmptyBundle { .. }
            | UnknownIssuer { .. }
            | PathTooDeep { .. }
            | PathBuildingBudget(_) => ErrorKind::UnknownIssuer,
            BadSignature { .. } | UnsupportedSignatureAlgorithm { .. } => ErrorKind::BadSignature,
            NotYetValid { .. } | Expired { .. } => ErrorKind::Expired,
            NoCryptoProvider => ErrorKind::Setup,
            _ => ErrorKind::Profile,
        }
    }
}
