//! A JWT-SVID signing key's public half, from a JWK (RFC 7517/7518 section 6), and the check
//! of a signature with it.
//!
//! Written here rather than taken from a JOSE library: the rules are the JWT-SVID
//! specification's, stricter than a general JOSE library's (only RSA and the three NIST curves,
//! RSA moduli of 2048 to 8192 bits, no private members, an `alg` on the key binding it), and
//! the signature itself is checked by the rustls crypto provider's algorithms, the same ones
//! that check X.509-SVIDs (P-521 by the RustCrypto `p521` crate when the provider lacks it,
//! as ring does).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::alg_id;
use rustls::pki_types::{AlgorithmIdentifier, SignatureVerificationAlgorithm};
use serde_json::Value;

use super::algorithm::{Algorithm, KeyFamily};
use super::der;
use super::json_object::JsonObject;

/// Members that only a private key has: a bundle must never carry them.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The smallest and largest RSA moduli accepted, in bits (the crypto providers' range).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The public key material.
#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// `RSAPublicKey` DER, and the magnitudes it encodes (for publishing).
    Rsa {
        public_key: Vec<u8>,
        n: Vec<u8>,
        e: Vec<u8>,
        bits: usize,
    },
    /// The uncompressed point `04 || x || y` on the curve of this JWK `crv`.
    Ec { crv: &'static str, point: Vec<u8> },
}

/// One key of a JWT bundle: its key ID and public key.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtKey {
    kid: String,
    alg: Option<Algorithm>,
    material: Material,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.material {
            Material::Rsa { bits, .. } => format!("RSA {bits}"),
            Material::Ec { crv, .. } => format!("EC {crv}"),
        };
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("key", &kind)
            .field("alg", &self.alg)
            .finish()
    }
}

/// The field size of a JWK curve, in bytes.
fn field_bytes(crv: &str) -> Option<(&'static str, usize)> {
    match crv {
        "P-256" => Some(("P-256", 32)),
        "P-384" => Some(("P-384", 48)),
        "P-521" => Some(("P-521", 66)),
        _ => None,
    }
}

fn string<'a>(jwk: &'a JsonObject, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("\"{name}\" is not a string")),
    }
}

fn base64_member(jwk: &JsonObject, name: &str) -> Result<Vec<u8>, String> {
    let text = string(jwk, name)?.ok_or_else(|| format!("no \"{name}\""))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| format!("\"{name}\" is not base64url without padding: {e}"))
}

impl JwtKey {
    /// Reads a public JWK: `kid` (non-empty), `kty` `RSA` (`n`, `e`) or `EC` (`crv` P-256,
    /// P-384 or P-521, `x`, `y` of the curve's size), an optional `alg` that must suit it.
    ///
    /// # Errors
    /// A message naming the member at fault, or private key material.
    pub(crate) fn from_jwk(jwk: &JsonObject) -> Result<Self, String> {
        jwk.check_distinct()?;
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| jwk.get(m).is_some()) {
            return Err(format!(
                "private key member \"{private}\": a bundle holds public keys only"
            ));
        }
        let kid = string(jwk, "kid")?
            .filter(|kid| !kid.is_empty())
            .ok_or("no \"kid\": every JWT-SVID key needs a key ID")?
            .to_owned();
        let material = match string(jwk, "kty")?.ok_or("no \"kty\"")? {
            "RSA" => rsa_material(&base64_member(jwk, "n")?, base64_member(jwk, "e")?)?,
            "EC" => {
                let crv = string(jwk, "crv")?.ok_or("no \"crv\"")?;
                ec_material(crv, &base64_member(jwk, "x")?, &base64_member(jwk, "y")?)?
            }
            "oct" => return Err("a symmetric key (kty \"oct\") never verifies a JWT-SVID".into()),
            other => return Err(format!("key type {other:?} (RSA and EC accepted)")),
        };
        let alg = match string(jwk, "alg")? {
            None => None,
            Some(name) => {
                let alg = name
                    .parse::<Algorithm>()
                    .map_err(|e| format!("\"alg\" {e} is not a JWT-SVID algorithm"))?;
                let key = Self {
                    kid: kid.clone(),
                    alg: None,
                    material: material.clone(),
                };
                if !key.suits(alg) {
                    return Err(format!("\"alg\" {alg} does not suit this key"));
                }
                Some(alg)
            }
        };
        Ok(Self { kid, alg, material })
    }

    /// The public key of a `SubjectPublicKeyInfo` (how a signing key gives its public half).
    ///
    /// # Errors
    /// A message when it is neither an RSA key nor an EC key on P-256, P-384 or P-521.
    pub(crate) fn from_spki(kid: String, spki: &[u8]) -> Result<Self, String> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).map_err(|e| {
            let reason = crate::verify::parse_error::certificate_error(&e);
            format!("not a SubjectPublicKeyInfo: {reason}")
        })?;
        let parsed = info
            .parsed()
            .map_err(|e| crate::verify::parse_error::x509_error(&e))?;
        let material = match parsed {
            PublicKey::RSA(rsa) => rsa_material(rsa.modulus, rsa.exponent.to_vec())?,
            PublicKey::EC(point) => {
                let point = point.data();
                let crv = match point.len() {
                    65 => "P-256",
                    97 => "P-384",
                    133 => "P-521",
                    other => return Err(format!("an EC point of {other} bytes")),
                };
                let size = (point.len() - 1) / 2;
                if point[0] != 4 {
                    return Err("a compressed EC point".to_owned());
                }
                ec_material(crv, &point[1..=size], &point[1 + size..])?
            }
            _ => return Err("neither an RSA nor an EC key".to_owned()),
        };
        Ok(Self {
            kid,
            alg: None,
            material,
        })
    }

    /// The key ID.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm the JWK names, if any (then it is the only one the key verifies).
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// Whether `alg` may be used with this key.
    pub fn suits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|bound| bound != alg) {
            return false;
        }
        match (alg.key_family(), &self.material) {
            (KeyFamily::Rsa, Material::Rsa { .. }) => true,
            (KeyFamily::Ec(curve), Material::Ec { crv, .. }) => curve == *crv,
            _ => false,
        }
    }

    /// The public JWK, as a SPIFFE bundle publishes it (`use` `jwt-svid`).
    pub fn to_jwk(&self) -> Value {
        let mut jwk = serde_json::Map::new();
        jwk.insert("use".into(), "jwt-svid".into());
        jwk.insert("kid".into(), self.kid.clone().into());
        match &self.material {
            Material::Ec { crv, point } => {
                let size = (point.len() - 1) / 2;
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), (*crv).into());
                jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(&point[1..=size]).into());
                jwk.insert(
                    "y".into(),
                    URL_SAFE_NO_PAD.encode(&point[1 + size..]).into(),
                );
            }
            Material::Rsa { n, e, .. } => {
                jwk.insert("kty".into(), "RSA".into());
                jwk.insert("n".into(), URL_SAFE_NO_PAD.encode(n).into());
                jwk.insert("e".into(), URL_SAFE_NO_PAD.encode(e).into());
            }
        }
        if let Some(alg) = self.alg {
            jwk.insert("alg".into(), alg.as_str().into());
        }
        Value::Object(jwk)
    }

    /// Checks `signature` over `message` with `alg`, by the provider's `algorithms`.
    ///
    /// # Errors
    /// A message when the key does not suit `alg`, the provider cannot check `alg`, or the
    /// signature does not verify.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
        algorithms: &[&'static dyn SignatureVerificationAlgorithm],
    ) -> Result<(), SignatureError> {
        if !self.suits(alg) {
            return Err(SignatureError::KeyMismatch);
        }
        let (public_key, encoded) = match &self.material {
            Material::Rsa { public_key, .. } => (public_key.as_slice(), signature.to_vec()),
            Material::Ec { crv, point } => {
                let (_, size) = field_bytes(crv).ok_or(SignatureError::KeyMismatch)?;
                let der = der::ecdsa_signature(signature, size).ok_or(SignatureError::Invalid)?;
                (point.as_slice(), der)
            }
        };
        let (key_id, signature_id) = identifiers(alg);
        let provided = algorithms.iter().find(|candidate| {
            candidate.public_key_alg_id() == key_id && candidate.signature_alg_id() == signature_id
        });
        match provided {
            Some(algorithm) => algorithm
                .verify_signature(public_key, message, &encoded)
                .map_err(|_| SignatureError::Invalid),
            None if alg == Algorithm::ES512 => verify_p521(public_key, message, signature),
            None => Err(SignatureError::Unsupported),
        }
    }
}

/// An RSA public key from its modulus and exponent magnitudes.
fn rsa_material(modulus: &[u8], exponent: Vec<u8>) -> Result<Material, String> {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let magnitude = &modulus[start..];
    let bits = magnitude
        .first()
        .map_or(0, |top| magnitude.len() * 8 - top.leading_zeros() as usize);
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "an RSA modulus of {bits} bits (2048 to 8192 accepted)"
        ));
    }
    let exponent_start = exponent
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(exponent.len());
    let exponent = exponent[exponent_start..].to_vec();
    let odd = exponent.last().is_some_and(|b| b & 1 == 1);
    if !odd || exponent == [1] {
        return Err("an RSA public exponent that is not an odd number above 1".into());
    }
    Ok(Material::Rsa {
        public_key: der::rsa_public_key(magnitude, &exponent),
        n: magnitude.to_vec(),
        e: exponent,
        bits,
    })
}

/// An EC public key on the curve named `crv`.
fn ec_material(crv: &str, x: &[u8], y: &[u8]) -> Result<Material, String> {
    let (crv, size) =
        field_bytes(crv).ok_or_else(|| format!("curve {crv:?} (P-256, P-384, P-521 accepted)"))?;
    if x.len() != size || y.len() != size {
        return Err(format!(
            "\"x\" and \"y\" of {crv} must be {size} bytes each"
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(4);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    Ok(Material::Ec { crv, point })
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// The key is not of the algorithm's kind (or curve), or its JWK names another `alg`.
    KeyMismatch,
    /// The crypto provider has no such algorithm.
    Unsupported,
    /// The signature does not verify.
    Invalid,
}

/// The X.509 algorithm identifiers the provider knows `alg` by.
fn identifiers(alg: Algorithm) -> (AlgorithmIdentifier, AlgorithmIdentifier) {
    match alg {
        Algorithm::RS256 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PKCS1_SHA256),
        Algorithm::RS384 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PKCS1_SHA384),
        Algorithm::RS512 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PKCS1_SHA512),
        Algorithm::PS256 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PSS_SHA256),
        Algorithm::PS384 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PSS_SHA384),
        Algorithm::PS512 => (alg_id::RSA_ENCRYPTION, alg_id::RSA_PSS_SHA512),
        Algorithm::ES256 => (alg_id::ECDSA_P256, alg_id::ECDSA_SHA256),
        Algorithm::ES384 => (alg_id::ECDSA_P384, alg_id::ECDSA_SHA384),
        Algorithm::ES512 => (alg_id::ECDSA_P521, alg_id::ECDSA_SHA512),
    }
}

/// ES512 where the provider has no P-521 (ring): RustCrypto's `p521`.
fn verify_p521(point: &[u8], message: &[u8], fixed: &[u8]) -> Result<(), SignatureError> {
    use p521::ecdsa::signature::Verifier;
    let key =
        p521::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|_| SignatureError::Invalid)?;
    let signature =
        p521::ecdsa::Signature::from_slice(fixed).map_err(|_| SignatureError::Invalid)?;
    key.verify(message, &signature)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::JwtKey;

    /// A public key that is not DER is refused in words, not in the parser's internals.
    #[test]
    fn a_broken_public_key_is_refused_in_words() {
        let truncated = JwtKey::from_spki("k".to_owned(), &[0x30, 0x10, 0x30]).unwrap_err();
        assert_eq!(
            truncated,
            "not a SubjectPublicKeyInfo: truncated (DER ended early)"
        );
        let not_der = JwtKey::from_spki("k".to_owned(), &[0x04, 0x01, 0x00]).unwrap_err();
        assert!(
            not_der.starts_with("not a SubjectPublicKeyInfo: "),
            "{not_der}"
        );
        for message in [truncated, not_der] {
            assert!(!message.contains("Nom"), "{message}");
        }
    }
}
