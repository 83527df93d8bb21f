//! Agent cards signed by the serving workload's X.509-SVID, as A2A v1.0
//! `AgentCardSignature`s: a JWS (RFC 7515) with a detached payload, the RFC 8785 canonical
//! JSON of the card without its `signatures` member and without empty members (as the A2A
//! SDKs canonicalize a card: see [`without_empty_members`](super::without_empty_members)),
//! and a protected header holding `alg`, `kid` (the SHA-256 of the signing leaf, hex), `typ`
//! `JOSE` and `x5c` (the SVID chain).
//!
//! A signature covers the document it is in, member for member: sign each card document a
//! client reads (a reader that drops members it does not know, as the SDKs' typed cards do,
//! verifies only if the card holds none).
//!
//! Verification trusts no key a card names: the `x5c` chain is verified as an X.509-SVID
//! against the bundle of its own trust domain (the crate's verifier), the signer's SPIFFE ID
//! must be the one the caller expects (the mTLS peer's), the `alg` must be the signing key's,
//! and a header that names a key of its own (`jwk`, `jku`, `x5u`) or a critical extension is
//! refused. Each refusal names the rule it broke ([`CardSignatureError`]).

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::{CertificateDer, UnixTime};
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

use super::canonical::{CanonicalError, canonical_json, without_empty_members};
use crate::bundle::BundleSet;
use crate::jwt::{Algorithm, JwtKey, JwtSignError, JwtSigner};
use crate::spiffe_id::SpiffeId;
use crate::svid::X509Svid;
use crate::verify::{SvidVerifier, VerifyError};

/// The member of a card that holds its signatures (left out of what they cover).
const SIGNATURES: &str = "signatures";

/// Header parameters that name a key of the signer's choosing: a verifier that followed them
/// would trust whatever key the card brings (A2A #2096).
const SELF_NAMED_KEYS: [&str; 3] = ["jwk", "jku", "x5u"];

/// The most signatures a card may carry: each costs a chain verification.
pub const MAX_SIGNATURES: usize = 8;

/// The algorithms tried for a key, in order: the one a key suits is its algorithm.
const KEY_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::ES512,
    Algorithm::RS256,
];

/// Why a card signature was not made or not accepted: each names the rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardSignatureError {
    /// The card is not a JSON object.
    #[error("an agent card is a JSON object")]
    NotACard,
    /// The card has no signature to check.
    #[error("the agent card is not signed (no \"signatures\")")]
    Unsigned,
    /// The card carries more signatures than are checked.
    #[error("the agent card carries {0} signatures: at most {MAX_SIGNATURES} are checked")]
    TooManySignatures(usize),
    /// A signature is not a JWS this module reads.
    #[error("signature {index}: malformed: {reason}")]
    Malformed {
        /// Its position in `signatures`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The header names a key of its own.
    #[error(
        "signature {index}: the header names its own key ({parameter:?}): refused, the key comes \
         only from the x5c chain verified against the bundle of its trust domain"
    )]
    SelfNamedKey {
        /// Its position in `signatures`.
        index: usize,
        /// `jwk`, `jku` or `x5u`.
        parameter: &'static str,
    },
    /// The header lists critical extensions.
    #[error(
        "signature {index}: the header has critical extensions (\"crit\") this verifier does not know"
    )]
    Critical {
        /// Its position in `signatures`.
        index: usize,
    },
    /// The chain is not an X.509-SVID of a trusted trust domain (or not valid now).
    #[error("signature {index}: the x5c chain is not a valid X.509-SVID: {error}")]
    Chain {
        /// Its position in `signatures`.
        index: usize,
        /// The verifier's reason.
        error: VerifyError,
    },
    /// The `alg` is not the signing key's.
    #[error("signature {index}: alg {alg} does not match the signing key")]
    AlgorithmMismatch {
        /// Its position in `signatures`.
        index: usize,
        /// The `alg` of the header.
        alg: String,
    },
    /// The signature does not verify over the card.
    #[error(
        "signature {index}: does not verify over the card: it was changed after signing, or \
         signed with another key"
    )]
    BadSignature {
        /// Its position in `signatures`.
        index: usize,
    },
    /// The signer is not the workload expected.
    #[error("signature {index}: signed by {signer}, expected {expected}")]
    WrongSigner {
        /// Its position in `signatures`.
        index: usize,
        /// The SVID that signed.
        signer: Box<SpiffeId>,
        /// The ID expected (the mTLS peer's, or the caller's).
        expected: Box<SpiffeId>,
    },
    /// The card cannot be canonicalized.
    #[error("the card has no canonical form: {0}")]
    Canonical(#[from] CanonicalError),
    /// Signing failed.
    #[error("cannot sign the card: {0}")]
    Sign(#[from] JwtSignError),
    /// The signer has no SVID to sign with.
    #[error("no SVID to sign the agent card with: {0}")]
    NoSvid(String),
    /// The card declares a SPIFFE ID other than the signer's.
    #[error(
        "the agent card declares {declared} but is signed by {signer}: clients would refuse it"
    )]
    DeclaredIdNotSigner {
        /// The ID the card declares (`server_id`).
        declared: Box<SpiffeId>,
        /// The SVID that signs.
        signer: Box<SpiffeId>,
    },
    /// No crypto provider to sign or verify with.
    #[error("no rustls crypto provider: enable the ring or aws-lc-rs feature, or install one")]
    NoCryptoProvider,
}

/// `card` signed by `svid`: its `signatures` member replaced by one signature of the SVID's
/// key (ES256 for a P-256 key, ES384 for P-384, ES512 for P-521, RS256 for RSA), its header
/// carrying the SVID chain.
///
/// # Errors
/// [`CardSignatureError`] when the card is not an object, has no canonical form, or the key
/// cannot sign.
pub fn sign_card(card: &Value, svid: &X509Svid) -> Result<Value, CardSignatureError> {
    let Value::Object(members) = card else {
        return Err(CardSignatureError::NotACard);
    };
    let mut unsigned = members.clone();
    unsigned.remove(SIGNATURES);
    let payload = payload_of(&unsigned)?;
    let spki = leaf_spki(svid.leaf()).ok_or(CardSignatureError::NotACard)?;
    let key = JwtKey::from_spki(String::new(), &spki).map_err(JwtSignError::Key)?;
    let alg = KEY_ALGORITHMS
        .into_iter()
        .find(|alg| key.suits(*alg))
        .ok_or_else(|| JwtSignError::Key("no JWS algorithm for this key".to_owned()))?;
    let kid = crate::audit::sha256_hex(svid.leaf()).ok_or(CardSignatureError::NoCryptoProvider)?;
    let chain: Vec<String> = svid
        .chain()
        .iter()
        .map(|der| STANDARD.encode(der))
        .collect();
    let header = json!({"alg": alg.as_str(), "kid": kid, "typ": "JOSE", "x5c": chain});
    let signer = JwtSigner::new(svid.private_key().clone_key(), alg, kid)?;
    let token = signer.sign_parts(&header.to_string(), &payload)?;
    let mut parts = token.split('.');
    let (Some(protected), Some(_), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtSignError::Sign("a JWS without three parts".to_owned()).into());
    };
    unsigned.insert(
        SIGNATURES.to_owned(),
        json!([{"protected": protected, "signature": signature}]),
    );
    Ok(Value::Object(unsigned))
}

/// Verifies the signatures of `card` (each rule a [`CardSignatureError`] names): one must be by an
/// X.509-SVID valid at `now` in `bundles`, of exactly `expected`, over this card. Returns the
/// signer.
///
/// # Errors
/// [`CardSignatureError`] naming the rule the first signature broke, when none passes.
pub fn verify_card(
    card: &Value,
    bundles: &BundleSet,
    expected: &SpiffeId,
    now: SystemTime,
) -> Result<SpiffeId, CardSignatureError> {
    let Value::Object(members) = card else {
        return Err(CardSignatureError::NotACard);
    };
    let signatures = match members.get(SIGNATURES) {
        Some(Value::Array(signatures)) if signatures.len() > MAX_SIGNATURES => {
            return Err(CardSignatureError::TooManySignatures(signatures.len()));
        }
        Some(Value::Array(signatures)) if !signatures.is_empty() => signatures,
        _ => return Err(CardSignatureError::Unsigned),
    };
    let mut unsigned = members.clone();
    unsigned.remove(SIGNATURES);
    let payload = URL_SAFE_NO_PAD.encode(payload_of(&unsigned)?);
    let provider = crate::crypto::default_provider().ok_or(CardSignatureError::NoCryptoProvider)?;
    let verifier = SvidVerifier::with_provider(&provider);
    let algorithms = provider.signature_verification_algorithms.all;
    let now = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let mut first_error = None;
    for (index, signature) in signatures.iter().enumerate() {
        let checked = check_one(
            index, signature, &payload, bundles, expected, now, &verifier, algorithms,
        );
        match checked {
            Ok(signer) => return Ok(signer),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(CardSignatureError::Unsigned))
}

/// Checks signature `index` over the base64url `payload`.
#[allow(clippy::too_many_arguments)] // one signature's check and everything it is checked by
fn check_one(
    index: usize,
    signature: &Value,
    payload: &str,
    bundles: &BundleSet,
    expected: &SpiffeId,
    now: UnixTime,
    verifier: &SvidVerifier,
    algorithms: &[&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
) -> Result<SpiffeId, CardSignatureError> {
    let malformed = |reason: &str| CardSignatureError::Malformed {
        index,
        reason: reason.to_owned(),
    };
    let text = |name: &str| signature.get(name).and_then(Value::as_str);
    let protected = text("protected").ok_or_else(|| malformed("no \"protected\" header"))?;
    let encoded = text("signature").ok_or_else(|| malformed("no \"signature\""))?;
    if let Some(Value::Object(unprotected)) = signature.get("header")
        && let Some(parameter) = SELF_NAMED_KEYS
            .into_iter()
            .find(|p| unprotected.contains_key(*p))
    {
        return Err(CardSignatureError::SelfNamedKey { index, parameter });
    }
    let header: Value = URL_SAFE_NO_PAD
        .decode(protected)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(Value::is_object)
        .ok_or_else(|| malformed("the protected header is not base64url JSON object"))?;
    if let Some(parameter) = SELF_NAMED_KEYS
        .into_iter()
        .find(|p| header.get(*p).is_some())
    {
        return Err(CardSignatureError::SelfNamedKey { index, parameter });
    }
    if header.get("crit").is_some() {
        return Err(CardSignatureError::Critical { index });
    }
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no \"alg\""))?;
    let chain = header
        .get("x5c")
        .and_then(Value::as_array)
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| malformed("no \"x5c\" chain: the signer's SVID is required"))?
        .iter()
        .map(|cert| {
            cert.as_str()
                .and_then(|b64| STANDARD.decode(b64).ok())
                .map(CertificateDer::from)
                .ok_or_else(|| malformed("an x5c certificate is not base64 DER"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The signer named by the leaf, before any signature is checked (a card of another
    // workload costs no cryptography); the chain's verification confirms it below.
    if let Some(named) = crate::tls::leaf_spiffe_id(&chain[0])
        && &named != expected
    {
        return Err(CardSignatureError::WrongSigner {
            index,
            signer: Box::new(named),
            expected: Box::new(expected.clone()),
        });
    }
    let verified = verifier
        .verify(&chain, bundles, now)
        .map_err(|error| CardSignatureError::Chain { index, error })?;
    let mismatch = || CardSignatureError::AlgorithmMismatch {
        index,
        alg: alg_name.to_owned(),
    };
    let alg: Algorithm = alg_name.parse().map_err(|_| mismatch())?;
    let spki = leaf_spki(&chain[0]).ok_or_else(|| malformed("the leaf has no public key"))?;
    let key = JwtKey::from_spki(String::new(), &spki)
        .map_err(|reason| malformed(&format!("the leaf's key: {reason}")))?;
    if !key.suits(alg) {
        return Err(mismatch());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| malformed("the signature is not base64url"))?;
    let input = format!("{protected}.{payload}");
    key.verify(alg, input.as_bytes(), &bytes, algorithms)
        .map_err(|_| CardSignatureError::BadSignature { index })?;
    let signer = verified.spiffe_id().clone();
    if &signer != expected {
        return Err(CardSignatureError::WrongSigner {
            index,
            signer: Box::new(signer),
            expected: Box::new(expected.clone()),
        });
    }
    Ok(signer)
}

/// What a signature covers: the canonical JSON of the card's members (its `signatures` left
/// out), without empty members.
fn payload_of(unsigned: &serde_json::Map<String, Value>) -> Result<String, CanonicalError> {
    let cleaned =
        without_empty_members(&Value::Object(unsigned.clone())).unwrap_or_else(|| json!({}));
    canonical_json(&cleaned)
}

/// The `SubjectPublicKeyInfo` of a certificate.
fn leaf_spki(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(cert.public_key().raw.to_vec())
}
