//! The SPIFFE bundle document: a JWK Set whose `x509-svid` keys carry the X.509 roots
//! ([SPIFFE Trust Domain and Bundle, section 4](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#4-spiffe-bundle-format)).

use base64::Engine;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::BundleError;

#[derive(Deserialize)]
struct Document {
    keys: Option<Vec<Key>>,
    spiffe_sequence: Option<u64>,
}

#[derive(Deserialize)]
struct Key {
    #[serde(rename = "use")]
    key_use: Option<String>,
    kid: Option<String>,
    x5c: Option<Vec<String>>,
}

/// The X.509 roots of a SPIFFE bundle document, and its `spiffe_sequence` if it has one.
///
/// Keys whose `use` is `x509-svid` give their single `x5c` certificate; `jwt-svid` keys must
/// have a `kid`; keys of any other `use` are ignored. `"keys": []` is a valid bundle that
/// trusts nothing; a document without `keys` is not a bundle.
pub(crate) fn x509_roots(
    json: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, Option<u64>), BundleError> {
    let document: Document =
        serde_json::from_slice(json).map_err(|e| BundleError::Json(e.to_string()))?;
    let keys = document.keys.ok_or(BundleError::JwksWithoutKeys)?;
    let mut roots = Vec::new();
    for (index, key) in keys.into_iter().enumerate() {
        match key.key_use.as_deref() {
            Some("x509-svid") => {
                let x5c = key.x5c.unwrap_or_default();
                let [encoded] = x5c.as_slice() else {
                    return Err(BundleError::JwksX5cCount {
                        index,
                        count: x5c.len(),
                    });
                };
                let der = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| BundleError::JwksX5cEncoding {
                        index,
                        reason: e.to_string(),
                    })?;
                roots.push(CertificateDer::from(der));
            }
            Some("jwt-svid") if key.kid.as_deref().unwrap_or_default().is_empty() => {
                return Err(BundleError::JwksMissingKid { index });
            }
            _ => {}
        }
    }
    Ok((roots, document.spiffe_sequence))
}
