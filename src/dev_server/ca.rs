//! The development CA: a self-signed root that issues X.509-SVIDs.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::bundle::X509Bundle;
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::svid::{SvidError, X509Svid};

/// How far validity starts before "now", for clocks that lag a little.
const BACKDATE: Duration = Duration::from_secs(10);

/// Why the development CA could not issue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCaError {
    /// rcgen refused the parameters or failed to generate a key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A validity bound is out of the representable range.
    #[error("validity time out of range")]
    TimeOutOfRange,
    /// The issued SVID does not load (a bug: the CA issues profile-conformant SVIDs).
    #[error("issued SVID does not load: {0}")]
    Svid(#[from] SvidError),
    /// The JWT-SVID signing key does not load into the crypto provider.
    #[error("JWT signing key: {0}")]
    Jwt(#[from] crate::jwt::JwtSignError),
}

/// A fresh ES256 JWT-SVID signing key. Its key ID is the first 16 bytes of its public point's
/// x coordinate, base64url: distinct for distinct keys, and it says nothing secret.
pub(crate) fn new_jwt_signer() -> Result<crate::jwt::JwtSigner, DevCaError> {
    use base64::Engine;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let point = key.public_key_raw();
    let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&point[1..17]);
    let der = PrivatePkcs8KeyDer::from(key.serialize_der());
    Ok(crate::jwt::JwtSigner::new(
        der.into(),
        crate::jwt::Algorithm::ES256,
        kid,
    )?)
}

/// What to issue: the ID, its DNS names and its validity.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SvidRequest {
    /// The SPIFFE ID of the SVID.
    pub id: SpiffeId,
    /// DNS SANs beside the URI SAN (optional).
    pub dns_names: Vec<String>,
    /// Start of validity (before it, the SVID is not valid).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl SvidRequest {
    /// An SVID for `id` valid from now (less a few seconds of clock slack) for `ttl` (a `ttl`
    /// past what a `SystemTime` holds is cut to the latest time it does; the CA cuts it further
    /// to its own expiry).
    pub fn new(id: SpiffeId, ttl: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            id,
            dns_names: Vec::new(),
            not_before: now.checked_sub(BACKDATE).unwrap_or(now),
            not_after: later_by(now, ttl),
        }
    }

    /// Adds DNS SANs.
    pub fn with_dns_names(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.dns_names.extend(names);
        self
    }

    /// Sets the validity period.
    pub fn valid_between(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

/// An in-memory CA of one trust domain.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use spiffe_mtls::dev_server::{DevCa, SvidRequest};
///
/// let ca = DevCa::new("example.org".parse()?, Duration::from_secs(3600))?;
/// let id = "spiffe://example.org/agent/server".parse()?;
/// let svid = ca.issue(&SvidRequest::new(id, Duration::from_secs(600)))?;
/// assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/agent/server");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DevCa {
    trust_domain: TrustDomain,
    params: CertificateParams,
    key: KeyPair,
    root: CertificateDer<'static>,
    not_after: SystemTime,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// `ttl` after `now` by checked arithmetic: the latest time a certificate can write
/// (9999-12-31T23:59:59Z) when the sum is later than that or overflows.
fn later_by(now: SystemTime, ttl: Duration) -> SystemTime {
    let latest = SystemTime::UNIX_EPOCH + Duration::from_secs(LATEST_CERTIFICATE_TIME);
    now.checked_add(ttl).map_or(latest, |end| end.min(latest))
}

/// 9999-12-31T23:59:59Z in Unix seconds: the last second X.509's GeneralizedTime can write.
const LATEST_CERTIFICATE_TIME: u64 = 253_402_300_799;

fn offset(time: SystemTime) -> Result<time::OffsetDateTime, DevCaError> {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| DevCaError::TimeOutOfRange)?
        .as_secs();
    let secs = i64::try_from(secs).map_err(|_| DevCaError::TimeOutOfRange)?;
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| DevCaError::TimeOutOfRange)
}

impl DevCa {
    /// A new root for `trust_domain`, valid from now for `ttl`.
    ///
    /// # Errors
    /// [`DevCaError`] when key generation or signing fails;
    /// [`DevCaError::TimeOutOfRange`] when `ttl` ends after 9999-12-31T23:59:59Z.
    pub fn new(trust_domain: TrustDomain, ttl: Duration) -> Result<Self, DevCaError> {
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "spiffe-mtls dev server");
        dn.push(DnType::CommonName, format!("{trust_domain} dev CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(trust_domain.id_string().try_into()?)];
        params.not_before = offset(now.checked_sub(BACKDATE).unwrap_or(now))?;
        // whole seconds, as the certificate stores them
        let end = now.checked_add(ttl).ok_or(DevCaError::TimeOutOfRange)?;
        let not_after = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(
                offset(end)?.unix_timestamp().unsigned_abs(),
            ))
            .ok_or(DevCaError::TimeOutOfRange)?;
        params.not_after = offset(not_after)?;
        let key = KeyPair::generate()?;
        let root = params.self_signed(&key)?.der().clone();
        Ok(Self {
            trust_domain,
            params,
            key,
            root,
            not_after,
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// When the root expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// A bundle holding this root.
    pub fn bundle(&self) -> X509Bundle {
        X509Bundle::new(self.trust_domain.clone(), [self.root.clone()])
            .expect("the CA's own root parses")
    }

    /// Issues an X.509-SVID (chain of the leaf alone, a fresh P-256 key) for `request`.
    ///
    /// The leaf follows the X.509-SVID profile: one URI SAN, not a CA, critical key usage
    /// with digitalSignature, serverAuth and clientAuth. The ID need not belong to this
    /// CA's trust domain (tests use that to forge cross-domain SVIDs). The validity is cut
    /// to end no later than the CA's.
    ///
    /// # Errors
    /// [`DevCaError`] when key generation or signing fails.
    pub fn issue(&self, request: &SvidRequest) -> Result<X509Svid, DevCaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "spiffe-mtls dev server");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = vec![SanType::URI(request.id.to_string().try_into()?)];
        for name in &request.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.as_str().try_into()?));
        }
        params.not_before = offset(request.not_before)?;
        params.not_after = offset(request.not_after.min(self.not_after))?;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let leaf = params.signed_by(&key, &issuer)?.der().clone();
        let key_der = PrivatePkcs8KeyDer::from(key.serialize_der());
        Ok(X509Svid::from_der(vec![leaf], key_der.into())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::SvidVerifier;
    use rustls_pki_types::UnixTime;

    #[test]
    fn issued_svids_pass_the_verifier() {
        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let id: SpiffeId = "spiffe://example.org/agent/server".parse().unwrap();
        let svid = ca
            .issue(
                &SvidRequest::new(id.clone(), Duration::from_secs(60))
                    .with_dns_names(["localhost".to_string()]),
            )
            .unwrap();
        let bundles = [ca.bundle()].into_iter().collect();
        let verified = SvidVerifier::new()
            .unwrap()
            .verify(svid.chain(), &bundles, UnixTime::now())
            .unwrap();
        assert_eq!(verified.spiffe_id(), &id);
    }

    #[test]
    fn lifetimes_past_what_a_certificate_holds_are_refused_or_cut_not_a_panic() {
        let td: TrustDomain = "example.org".parse().unwrap();
        for ttl in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
            assert!(matches!(
                DevCa::new(td.clone(), ttl),
                Err(DevCaError::TimeOutOfRange)
            ));
        }
        // An SVID asked for Duration::MAX ends with the CA, the good twin of a short one.
        let ca = DevCa::new(td, Duration::from_secs(3600)).unwrap();
        let id: SpiffeId = "spiffe://example.org/agent/server".parse().unwrap();
        let long = ca
            .issue(&SvidRequest::new(id.clone(), Duration::MAX))
            .unwrap();
        assert_eq!(long.expires_at(), ca.not_after());
        let short = ca
            .issue(&SvidRequest::new(id, Duration::from_secs(60)))
            .unwrap();
        assert!(short.expires_at() < ca.not_after());
    }
}
