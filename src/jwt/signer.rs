//! Minting JWT-SVIDs with a private key, through the rustls crypto provider's signing keys:
//! what the dev server issues, and what tests need to build tokens.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::SignatureScheme;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::SigningKey;
use serde_json::Value;

use super::algorithm::Algorithm;
use super::der;
use super::key::JwtKey;
use crate::spiffe_id::SpiffeId;

/// Why a signer could not be made or could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtSignError {
    /// The crypto provider cannot load the key.
    #[error("unusable private key: {0}")]
    Key(String),
    /// The key cannot sign with the algorithm (wrong kind, or the provider lacks it).
    #[error("this key cannot sign {0} with this crypto provider")]
    Algorithm(Algorithm),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// No crypto provider is installed or enabled.
    #[error("no rustls crypto provider: enable the ring or aws-lc-rs feature, or install one")]
    NoCryptoProvider,
}

/// Signs JWT-SVIDs with one key: header `{"alg", "kid", "typ": "JWT"}`.
#[derive(Clone)]
pub struct JwtSigner {
    key: Arc<dyn SigningKey>,
    public_key: JwtKey,
    alg: Algorithm,
    kid: String,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The TLS signature scheme that computes `alg`'s signature.
fn scheme(alg: Algorithm) -> SignatureScheme {
    match alg {
        Algorithm::RS256 => SignatureScheme::RSA_PKCS1_SHA256,
        Algorithm::RS384 => SignatureScheme::RSA_PKCS1_SHA384,
        Algorithm::RS512 => SignatureScheme::RSA_PKCS1_SHA512,
        Algorithm::PS256 => SignatureScheme::RSA_PSS_SHA256,
        Algorithm::PS384 => SignatureScheme::RSA_PSS_SHA384,
        Algorithm::PS512 => SignatureScheme::RSA_PSS_SHA512,
        Algorithm::ES256 => SignatureScheme::ECDSA_NISTP256_SHA256,
        Algorithm::ES384 => SignatureScheme::ECDSA_NISTP384_SHA384,
        Algorithm::ES512 => SignatureScheme::ECDSA_NISTP521_SHA512,
    }
}

/// The field size of an ECDSA algorithm's curve, in bytes.
fn ecdsa_field_bytes(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::ES256 => Some(32),
        Algorithm::ES384 => Some(48),
        Algorithm::ES512 => Some(66),
        _ => None,
    }
}

impl JwtSigner {
    /// A signer of `alg` with `private_key` (PKCS#8, SEC1 or PKCS#1 DER), publishing `kid`, on
    /// the default crypto provider.
    ///
    /// # Errors
    /// [`JwtSignError`] when the key cannot be loaded or cannot sign `alg`.
    pub fn new(
        private_key: PrivateKeyDer<'static>,
        alg: Algorithm,
        kid: impl Into<String>,
    ) -> Result<Self, JwtSignError> {
        let provider = crate::crypto::default_provider().ok_or(JwtSignError::NoCryptoProvider)?;
        Self::with_provider(&provider, private_key, alg, kid)
    }

    /// As [`new`](Self::new), on `provider`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_provider(
        provider: &Arc<CryptoProvider>,
        private_key: PrivateKeyDer<'static>,
        alg: Algorithm,
        kid: impl Into<String>,
    ) -> Result<Self, JwtSignError> {
        let key = provider
            .key_provider
            .load_private_key(private_key)
            .map_err(|e| JwtSignError::Key(e.to_string()))?;
        if key.choose_scheme(&[scheme(alg)]).is_none() {
            return Err(JwtSignError::Algorithm(alg));
        }
        let kid = kid.into();
        let spki = key
            .public_key()
            .ok_or_else(|| JwtSignError::Key("the provider gives no public key".to_owned()))?;
        let public_key =
            JwtKey::from_spki(kid.clone(), spki.as_ref()).map_err(JwtSignError::Key)?;
        Ok(Self {
            key,
            public_key,
            alg,
            kid,
        })
    }

    /// The public key, to publish in the JWT bundle of the signer's trust domain.
    pub fn public_key(&self) -> &JwtKey {
        &self.public_key
    }

    /// The key ID in the tokens' header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// A JWT-SVID for `spiffe_id` with `audience`, expiring at `expiry`, issued now.
    ///
    /// # Errors
    /// [`JwtSignError::Sign`] when the provider fails to sign.
    pub fn sign_svid(
        &self,
        spiffe_id: &SpiffeId,
        audience: &[String],
        expiry: SystemTime,
    ) -> Result<String, JwtSignError> {
        let seconds = |time: SystemTime| {
            time.duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs())
        };
        let aud = match audience {
            [one] => Value::from(one.as_str()),
            many => Value::from(many.to_vec()),
        };
        let claims = serde_json::json!({
            "sub": spiffe_id.to_string(),
            "aud": aud,
            "exp": seconds(expiry),
            "iat": seconds(SystemTime::now()),
        });
        self.sign_claims(&claims)
    }

    /// A token with these claims, exactly (tests use it to build tokens that break rules).
    ///
    /// # Errors
    /// [`JwtSignError::Sign`] when the provider fails to sign.
    pub fn sign_claims(&self, claims: &Value) -> Result<String, JwtSignError> {
        let header = serde_json::json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": "JWT"});
        self.sign_parts(&header.to_string(), &claims.to_string())
    }

    /// A token with this header and payload JSON text, byte for byte.
    ///
    /// # Errors
    /// [`JwtSignError::Sign`] when the provider fails to sign.
    pub fn sign_parts(
        &self,
        header_json: &str,
        payload_json: &str,
    ) -> Result<String, JwtSignError> {
        let mut token = URL_SAFE_NO_PAD.encode(header_json);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload_json));
        let signer = self
            .key
            .choose_scheme(&[scheme(self.alg)])
            .ok_or(JwtSignError::Algorithm(self.alg))?;
        let signature = signer
            .sign(token.as_bytes())
            .map_err(|e| JwtSignError::Sign(e.to_string()))?;
        let signature = match ecdsa_field_bytes(self.alg) {
            // TLS signs ECDSA in DER; JWS wants `r || s`.
            Some(size) => der::ecdsa_signature_fixed(&signature, size)
                .ok_or_else(|| JwtSignError::Sign("unexpected ECDSA signature".to_owned()))?,
            None => signature,
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}
