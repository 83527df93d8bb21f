//! The X.509-SVID profile
//! ([spec](https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md)): the rules for
//! the leaf SVID and for the certificates that sign it.

use super::certificate::ParsedCert;
use super::error::VerifyError;
use crate::spiffe_id::SpiffeId;

/// The leaf rules: exactly one URI SAN, a SPIFFE ID with a path, not a CA, a critical key
/// usage with digitalSignature and neither keyCertSign nor cRLSign, and an extended key usage
/// (when present) with both serverAuth and clientAuth. Returns the SPIFFE ID.
pub(crate) fn check_leaf(leaf: &ParsedCert<'_>) -> Result<SpiffeId, VerifyError> {
    let mut uris = leaf.uris();
    let uri = match (uris.next(), uris.count()) {
        (Some(uri), 0) => uri,
        (first, rest) => {
            return Err(VerifyError::LeafUriSanCount {
                count: usize::from(first.is_some()) + rest,
            });
        }
    };
    let id = SpiffeId::new(uri).map_err(VerifyError::LeafIdInvalid)?;
    if id.path().is_empty() {
        return Err(VerifyError::LeafIdWithoutPath { id: id.to_string() });
    }
    if leaf.ca().0 {
        return Err(VerifyError::LeafIsCa);
    }
    let key_usage = match leaf.x509.key_usage() {
        Ok(Some(ku)) => ku,
        _ => return Err(VerifyError::LeafKeyUsageMissing),
    };
    if !key_usage.critical {
        return Err(VerifyError::LeafKeyUsageNotCritical);
    }
    if !key_usage.value.digital_signature() {
        return Err(VerifyError::LeafMissingDigitalSignature);
    }
    if key_usage.value.key_cert_sign() {
        return Err(VerifyError::LeafHasKeyCertSign);
    }
    if key_usage.value.crl_sign() {
        return Err(VerifyError::LeafHasCrlSign);
    }
    if let Ok(Some(eku)) = leaf.x509.extended_key_usage() {
        let missing = match (eku.value.server_auth, eku.value.client_auth) {
            (true, true) => None,
            (false, true) => Some("serverAuth"),
            (true, false) => Some("clientAuth"),
            (false, false) => Some("serverAuth and clientAuth"),
        };
        if let Some(missing) = missing {
            return Err(VerifyError::LeafExtendedKeyUsage { missing });
        }
    }
    Ok(id)
}

/// The rules for a certificate that signs the chain: the CA flag, keyCertSign, and a SPIFFE
/// ID (any `spiffe:` URI SAN) that is a valid trust domain ID without path.
pub(crate) fn check_signing(cert: &ParsedCert<'_>) -> Result<(), VerifyError> {
    let position = cert.position;
    if !cert.ca().0 {
        return Err(VerifyError::SigningCertNotCa { position });
    }
    match cert.x509.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() => {}
        _ => return Err(VerifyError::SigningCertMissingKeyCertSign { position }),
    }
    for uri in cert.uris().filter(|uri| has_spiffe_scheme(uri)) {
        let id = SpiffeId::new(uri)
            .map_err(|error| VerifyError::SigningCertIdInvalid { position, error })?;
        if !id.path().is_empty() {
            return Err(VerifyError::SigningCertIdWithPath {
                position,
                id: id.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether a URI is meant as a SPIFFE ID: its scheme is `spiffe` in any case, so that an
/// upper-case scheme is checked (and refused), not skipped.
fn has_spiffe_scheme(uri: &str) -> bool {
    uri.split_once(':')
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("spiffe"))
}
