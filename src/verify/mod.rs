//! X.509-SVID verification: is this chain a valid SVID of a trust domain we hold a bundle for?
//!
//! [`SvidVerifier::verify`] applies, in order:
//! 1. RFC 5280 structure to every presented certificate: DER, unique extensions, no unknown
//!    critical extension, consistent signature algorithms, a critical subjectAltName when the
//!    subject is empty;
//! 2. the [X.509-SVID](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md) leaf
//!    profile (one URI SAN holding a SPIFFE ID with a path, not a CA, critical key usage with
//!    digitalSignature and neither keyCertSign nor cRLSign, serverAuth and clientAuth when an
//!    extended key usage is present) and the signing-certificate profile (CA flag, keyCertSign,
//!    a path-less SPIFFE ID if any) to every presented certificate after the leaf that is not a
//!    root of the bundle;
//! 3. path validation against the bundle of the leaf's own trust domain only: signatures,
//!    validity at the given time (roots included), path length constraints and name
//!    constraints (URI constraints constrain the ID's trust domain).
//!
//! Errors name the broken rule ([`VerifyError`]); [`VerifyError::kind`] groups them.

mod anchor;
mod certificate;
mod der;
mod error;
mod name_constraints;
pub(crate) mod parse_error;
mod path;
mod profile;

use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};

pub(crate) use anchor::Anchor;
#[cfg(any(feature = "net", test))]
pub(crate) use certificate::spiffe_uri_and_not_after;
pub use certificate::{MAX_CERTIFICATE_SIZE, MAX_EXTENSIONS};
pub(crate) use certificate::{ParsedCert, first_spiffe_uri};

/// Splits concatenated DER elements; the message says what is wrong.
#[cfg(feature = "workload-api")]
pub(crate) fn split_der_sequence(bytes: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    der::split_sequence(bytes).map_err(|e| e.0)
}
pub use error::{ErrorKind, Position, VerifyError};
pub(crate) use path::rfc3339;

/// A system time as RFC 3339 (seconds), for messages.
pub(crate) fn rfc3339_system_time(time: SystemTime) -> String {
    let unix = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    rfc3339(unix)
}

/// A certificate time (Unix seconds, as x509-parser gives notBefore/notAfter) as a system
/// time, by checked arithmetic: a time before the epoch, or one a `SystemTime` cannot hold, is
/// the epoch itself, so an expiry that cannot be represented reads as long past (fail closed).
pub(crate) fn system_time_from_unix(secs: i64) -> SystemTime {
    u64::try_from(secs)
        .ok()
        .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}
pub(crate) use profile::{check_leaf, check_signing};

use crate::bundle::BundleSet;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The most certificates a presented chain may hold.
pub const MAX_CHAIN_LENGTH: usize = 16;

/// A chain that passed every rule: only [`SvidVerifier::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSvid {
    spiffe_id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    not_after: i64,
    path_validity: path::PathValidity,
    root: CertificateDer<'static>,
    root_index: usize,
}

impl VerifiedSvid {
    /// The peer's SPIFFE ID, from the leaf's URI SAN.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The peer's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.spiffe_id.trust_domain()
    }

    /// The chain as presented, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// When the leaf expires (its notAfter).
    pub fn expires_at(&self) -> SystemTime {
        system_time_from_unix(self.not_after)
    }

    /// The bundle root the chain ended at.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The position of [`Self::root`] among its bundle's roots.
    pub(crate) fn root_index(&self) -> usize {
        self.root_index
    }

    /// The times (Unix seconds) at which every certificate of the validated path, root
    /// included, is within its validity period.
    pub(crate) fn path_validity(&self) -> std::ops::RangeInclusive<i64> {
        self.path_validity.from..=self.path_validity.until
    }
}

/// Verifies X.509-SVID chains with the signature algorithms of one crypto provider.
///
/// # Example
/// ```
/// # #[cfg(all(unix, feature = "dev-server"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use spiffe_mtls::dev_server::{DevCa, SvidRequest};
/// use spiffe_mtls::rustls::pki_types::UnixTime;
/// use spiffe_mtls::{BundleSet, SvidVerifier};
///
/// let ca = DevCa::new("example.org".parse()?, Duration::from_secs(3600))?;
/// let id = "spiffe://example.org/agent/client".parse()?;
/// let peer = ca.issue(&SvidRequest::new(id, Duration::from_secs(600)))?;
/// let bundles: BundleSet = [ca.bundle()].into_iter().collect();
///
/// let verifier = SvidVerifier::new()?;
/// let svid = verifier.verify(peer.chain(), &bundles, UnixTime::now())?;
/// assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/agent/client");
/// # Ok(())
/// # }
/// # #[cfg(not(all(unix, feature = "dev-server")))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SvidVerifier {
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
}

impl SvidVerifier {
    /// A verifier using the process default crypto provider, else the one of the enabled
    /// `ring` or `aws-lc-rs` feature.
    ///
    /// # Errors
    /// [`VerifyError::NoCryptoProvider`] when there is none.
    pub fn new() -> Result<Self, VerifyError> {
        crate::crypto::default_provider()
            .map(|provider| Self::with_provider(&provider))
            .ok_or(VerifyError::NoCryptoProvider)
    }

    /// A verifier using the signature algorithms of `provider`.
    pub fn with_provider(provider: &CryptoProvider) -> Self {
        Self::with_algorithms(provider.signature_verification_algorithms.all)
    }

    /// A verifier using exactly these signature algorithms.
    pub fn with_algorithms(
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        Self { algorithms }
    }

    /// Verifies `chain` (leaf first, then intermediates) as an X.509-SVID at time `now`,
    /// against the bundle in `bundles` of the leaf's own trust domain.
    ///
    /// # Errors
    /// A [`VerifyError`] naming the first rule the chain breaks.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        bundles: &BundleSet,
        now: UnixTime,
    ) -> Result<VerifiedSvid, VerifyError> {
        if chain.is_empty() {
            return Err(VerifyError::EmptyChain);
        }
        if chain.len() > MAX_CHAIN_LENGTH {
            return Err(VerifyError::ChainTooLong {
                count: chain.len(),
                max: MAX_CHAIN_LENGTH,
            });
        }
        let parsed = ParsedCert::parse_chain(chain)?;
        let spiffe_id = check_leaf(&parsed[0])?;
        let trust_domain = spiffe_id.trust_domain();
        let bundle = bundles
            .get(trust_domain)
            .ok_or_else(|| VerifyError::NoBundle {
                trust_domain: trust_domain.clone(),
            })?;
        if bundle.is_empty() {
            return Err(VerifyError::EmptyBundle {
                trust_domain: trust_domain.clone(),
            });
        }
        for (cert, der) in parsed.iter().zip(chain).skip(1) {
            if !bundle.contains(der) {
                check_signing(cert)?;
            }
        }
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let (path_validity, root_index) = path::validate(
            &parsed,
            bundle.anchors(),
            trust_domain,
            now,
            self.algorithms,
        )?;
        let not_after = parsed[0].x509.validity().not_after.timestamp();
        Ok(VerifiedSvid {
            spiffe_id,
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            not_after,
            path_validity,
            root: bundle.anchors()[root_index].der.clone(),
            root_index,
        })
    }
}

/// Verifies `chain` with [`SvidVerifier::new`]; see [`SvidVerifier::verify`].
///
/// # Errors
/// As [`SvidVerifier::verify`], and [`VerifyError::NoCryptoProvider`].
pub fn verify_svid(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    now: UnixTime,
) -> Result<VerifiedSvid, VerifyError> {
    SvidVerifier::new()?.verify(chain, bundles, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_times_convert_without_overflow() {
        let epoch = SystemTime::UNIX_EPOCH;
        // The last second X.509's GeneralizedTime can write converts exactly.
        assert_eq!(
            system_time_from_unix(253_402_300_799),
            epoch + Duration::from_secs(253_402_300_799)
        );
        assert_eq!(system_time_from_unix(0), epoch);
        // Before the epoch: the epoch, i.e. long expired.
        for secs in [-1, i64::MIN] {
            assert_eq!(system_time_from_unix(secs), epoch, "{secs}");
        }
        // The largest value converts without a panic: exactly where a SystemTime holds it,
        // else the epoch.
        let largest = system_time_from_unix(i64::MAX);
        assert!(
            largest == epoch || largest.duration_since(epoch).unwrap().as_secs() == i64::MAX as u64,
            "{largest:?}"
        );
    }
}
