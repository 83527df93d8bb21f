//! The SPIFFE bundle document a bundle endpoint serves: a JWK Set holding the trust domain's
//! X.509 roots (`use` `x509-svid`, the certificate in `x5c`) and JWT-SVID keys (`use`
//! `jwt-svid`), with `spiffe_sequence` and `spiffe_refresh_hint`
//! ([SPIFFE Trust Domain and Bundle, section 4](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#4-spiffe-bundle-format)).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use x509_parser::prelude::FromDer;

use crate::bundle::{BundleError, X509Bundle};
use crate::jwt::{JwtBundle, JwtBundleError, JwtKey};
use crate::spiffe_id::TrustDomain;

/// The longest refresh hint a client honours: a hint asking for less frequent fetches is
/// taken as this (a bundle endpoint cannot make its clients miss a root rotation for days).
pub const MAX_REFRESH_HINT: Duration = Duration::from_secs(24 * 3600);

/// The shortest refresh hint a client honours (a hint of zero would make it fetch in a loop).
pub const MIN_REFRESH_HINT: Duration = Duration::from_secs(1);

/// The largest bundle document read.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// A trust domain's bundle as a SPIFFE bundle document carries it.
#[derive(Debug, Clone)]
pub struct BundleDocument {
    /// The X.509 roots.
    pub x509: X509Bundle,
    /// The JWT-SVID keys (`None`: the document carries none).
    pub jwt: Option<JwtBundle>,
    /// `spiffe_sequence`: increases with every change of the bundle.
    pub sequence: Option<u64>,
    /// `spiffe_refresh_hint`: how often a client should fetch again.
    pub refresh_hint: Option<Duration>,
}

/// Why a bundle document cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("the bundle document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// Its X.509 part is invalid.
    #[error("the bundle document's X.509 roots: {0}")]
    X509(#[from] BundleError),
    /// Its JWT part is invalid.
    #[error("the bundle document's JWT-SVID keys: {0}")]
    Jwt(#[from] JwtBundleError),
    /// A federated bundle with no X.509 root (it would trust nothing of that trust domain).
    #[error("the bundle document has no X.509 root")]
    NoRoots,
    /// An older document than one taken before: `spiffe_sequence` went down (or went away).
    #[error("the bundle document's spiffe_sequence is {got:?}, after {last}: an older copy")]
    Older {
        /// The sequence of the last document taken.
        last: u64,
        /// This one's.
        got: Option<u64>,
    },
    /// The same `spiffe_sequence` as the last document taken, with other keys.
    #[error(
        "the bundle document's spiffe_sequence {sequence} is the last one's, with other keys: a forked copy"
    )]
    Conflicting {
        /// The sequence both carry.
        sequence: u64,
    },
    /// `spiffe_refresh_hint` or `spiffe_sequence` is not a non-negative integer.
    #[error("the bundle document's {0} is not a non-negative integer")]
    Number(&'static str),
}

impl BundleDocument {
    /// Reads the document of `trust_domain`'s bundle.
    ///
    /// # Errors
    /// [`DocumentError`] for a document too large, not a SPIFFE bundle, or with a
    /// `spiffe_sequence` or `spiffe_refresh_hint` that is not a non-negative integer.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::federation::BundleDocument;
    /// let document = BundleDocument::parse(
    ///     "example.org".parse()?,
    ///     br#"{"keys": [], "spiffe_sequence": 3, "spiffe_refresh_hint": 60}"#,
    /// )?;
    /// assert_eq!(document.sequence, Some(3));
    /// assert_eq!(document.refresh_hint, Some(std::time::Duration::from_secs(60)));
    /// assert!(document.x509.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(trust_domain: TrustDomain, bytes: &[u8]) -> Result<Self, DocumentError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge);
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| DocumentError::X509(BundleError::Json(e.to_string())))?;
        let number = |name: &'static str| match value.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(number) => number.as_u64().map(Some).ok_or(DocumentError::Number(name)),
        };
        let sequence = number("spiffe_sequence")?;
        let refresh_hint = number("spiffe_refresh_hint")?.map(Duration::from_secs);
        let x509 = X509Bundle::from_jwks(trust_domain.clone(), bytes)?;
        let has_jwt_keys = value
            .get("keys")
            .and_then(Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .any(|key| key.get("use") == Some(&json!("jwt-svid")))
            });
        let jwt = if has_jwt_keys {
            Some(jwt_keys_of(trust_domain, &value)?)
        } else {
            None
        };
        Ok(Self {
            x509,
            jwt,
            sequence,
            refresh_hint,
        })
    }

    /// The document as JSON: the roots as `x509-svid` keys (the key parameters of each root's
    /// public key, the certificate in `x5c`), the JWT keys as `jwt-svid` keys, the sequence
    /// and the refresh hint (in seconds) when set.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::federation::BundleDocument;
    /// let document = BundleDocument {
    ///     x509: spiffe_mtls::X509Bundle::empty("example.org".parse()?),
    ///     jwt: None,
    ///     sequence: Some(7),
    ///     refresh_hint: Some(std::time::Duration::from_secs(300)),
    /// };
    /// let json = document.to_json();
    /// assert_eq!(json["spiffe_sequence"], 7);
    /// assert_eq!(json["spiffe_refresh_hint"], 300);
    /// assert_eq!(json["keys"], serde_json::json!([]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_json(&self) -> Value {
        let mut keys: Vec<Value> = self
            .x509
            .roots()
            .filter_map(|root| root_jwk(root))
            .collect();
        if let Some(jwt) = &self.jwt
            && let Some(Value::Array(jwt_keys)) = jwt.to_jwks().get_mut("keys").map(Value::take)
        {
            keys.extend(jwt_keys);
        }
        let mut document = Map::new();
        document.insert("keys".to_owned(), Value::Array(keys));
        if let Some(sequence) = self.sequence {
            document.insert("spiffe_sequence".to_owned(), json!(sequence));
        }
        if let Some(hint) = self.refresh_hint {
            document.insert("spiffe_refresh_hint".to_owned(), json!(hint.as_secs()));
        }
        Value::Object(document)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.x509.trust_domain()
    }
}

/// The `jwt-svid` keys of a document (the others left out, so that an `x509-svid` key is
/// never taken for a JWT key).
fn jwt_keys_of(trust_domain: TrustDomain, document: &Value) -> Result<JwtBundle, JwtBundleError> {
    let keys: Vec<Value> = document
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|key| key.get("use") == Some(&json!("jwt-svid")))
        .cloned()
        .collect();
    JwtBundle::parse(trust_domain, json!({ "keys": keys }).to_string().as_bytes())
}

/// A root as an `x509-svid` JWK: its public key's parameters and the certificate.
fn root_jwk(root: &rustls::pki_types::CertificateDer<'_>) -> Option<Value> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(root).ok()?;
    let key = JwtKey::from_spki(String::new(), cert.public_key().raw).ok()?;
    let Value::Object(mut jwk) = key.to_jwk() else {
        return None;
    };
    jwk.remove("kid");
    jwk.remove("alg");
    jwk.insert("use".to_owned(), json!("x509-svid"));
    jwk.insert("x5c".to_owned(), json!([STANDARD.encode(root)]));
    Some(Value::Object(jwk))
}
