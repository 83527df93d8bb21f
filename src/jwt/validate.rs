//! JWT-SVID validation, rule by rule as the JWT-SVID specification states them, each refusal
//! naming its rule.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::SignatureVerificationAlgorithm;
use serde_json::Value;

use super::algorithm::Algorithm;
use super::bundle::JwtBundleSet;
use super::json_object::JsonObject;
use super::key::SignatureError;
use super::token::CompactToken;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The largest token [`JwtSvidValidator`] reads by default, in bytes. SPIRE's JWT-SVIDs are
/// well under 1 KiB; HTTP servers commonly cap a header line at 8 KiB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The latest NumericDate (`exp`, `nbf`, `iat`) a token may carry, in seconds since the epoch:
/// 9999-12-31T23:59:59Z, the last second RFC 3339 and X.509 can write. A later one is refused
/// as a malformed claim (rule `claim`), so no time a peer sends can overflow the validator's
/// arithmetic.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// The header parameters a JWT-SVID may carry (JWT-SVID section 2: "Any header not described
/// here, registered or private, MUST NOT be included").
const ALLOWED_HEADERS: [&str; 3] = ["alg", "kid", "typ"];

/// Why a token is not a valid JWT-SVID for this audience, now. Each variant is one rule;
/// [`rule`](Self::rule) names it in one word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Longer than the validator's cap; nothing else was looked at.
    #[error("the token is {size} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Its length.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not a compact JWS of three base64url segments holding JSON objects.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` missing or not one of the nine the specification lists (`none`, HMAC, ...).
    #[error("algorithm {0} is not allowed for a JWT-SVID")]
    Algorithm(String),
    /// A `crit` header: no extension is understood, so none may be critical.
    #[error("critical header extensions {0} are not understood")]
    Critical(String),
    /// A header other than `alg`, `kid` and `typ`.
    #[error("header {0:?} is not allowed in a JWT-SVID")]
    Header(String),
    /// `typ` present and neither `JWT` nor `JOSE`.
    #[error("typ {0} is neither \"JWT\" nor \"JOSE\"")]
    Type(String),
    /// No `kid`: the key cannot be chosen.
    #[error("no kid header: the signing key cannot be chosen")]
    MissingKeyId,
    /// No `sub` claim.
    #[error("no sub claim")]
    MissingSubject,
    /// `sub` is not a SPIFFE ID.
    #[error("sub {subject} is not a SPIFFE ID: {reason}")]
    Subject {
        /// The claim, as JSON.
        subject: String,
        /// Why.
        reason: String,
    },
    /// No JWT bundle for the trust domain of `sub`.
    #[error("no JWT bundle for trust domain {0}")]
    NoBundle(TrustDomain),
    /// `kid` is not a key of the bundle of the trust domain of `sub`.
    #[error("key {kid:?} is not in the JWT bundle of {trust_domain}")]
    UnknownKey {
        /// The token's key ID.
        kid: String,
        /// The trust domain of `sub`.
        trust_domain: TrustDomain,
    },
    /// The key is not of the kind `alg` needs (or its JWK names another `alg`).
    #[error("key {kid:?} cannot verify {alg}")]
    KeyMismatch {
        /// The key ID.
        kid: String,
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// The crypto provider has no such algorithm.
    #[error("the crypto provider cannot verify {0}")]
    Unsupported(Algorithm),
    /// The signature does not verify with the key.
    #[error("the signature does not verify")]
    Signature,
    /// No `aud` claim, or an empty one.
    #[error("no aud claim")]
    MissingAudience,
    /// The expected audience is not among the token's.
    #[error("audience {expected:?} is not among the token's {actual:?}")]
    Audience {
        /// What the validator identifies with.
        expected: String,
        /// The token's audiences.
        actual: Vec<String>,
    },
    /// No `exp` claim.
    #[error("no exp claim")]
    MissingExpiry,
    /// `exp` is not in the future (leeway included).
    #[error("expired at {expired_at} (unix time), now is {now}")]
    Expired {
        /// `exp`, in seconds.
        expired_at: u64,
        /// The validation time, in seconds.
        now: u64,
    },
    /// `nbf` is in the future (leeway included).
    #[error("not valid before {not_before} (unix time), now is {now}")]
    NotYetValid {
        /// `nbf`, in seconds.
        not_before: u64,
        /// The validation time, in seconds.
        now: u64,
    },
    /// A registered claim of the wrong type.
    #[error("claim {name}: {reason}")]
    Claim {
        /// The claim.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// No crypto provider is installed or enabled.
    #[error("no rustls crypto provider: enable the ring or aws-lc-rs feature, or install one")]
    NoCryptoProvider,
}

impl JwtError {
    /// The rule broken, in one word: `size`, `format`, `alg`, `crit`, `header`, `typ`, `kid`,
    /// `sub`, `bundle`, `key`, `signature`, `aud`, `exp`, `nbf`, `claim` or `provider`.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "size",
            Self::Malformed(_) => "format",
            Self::Algorithm(_) => "alg",
            Self::Critical(_) => "crit",
            Self::Header(_) => "header",
            Self::Type(_) => "typ",
            Self::MissingKeyId => "kid",
            Self::MissingSubject | Self::Subject { .. } => "sub",
            Self::NoBundle(_) => "bundle",
            Self::UnknownKey { .. } | Self::KeyMismatch { .. } => "key",
            Self::Signature => "signature",
            Self::MissingAudience | Self::Audience { .. } => "aud",
            Self::MissingExpiry | Self::Expired { .. } => "exp",
            Self::NotYetValid { .. } => "nbf",
            Self::Claim { .. } => "claim",
            Self::Unsupported(_) | Self::NoCryptoProvider => "provider",
        }
    }
}

/// A validated JWT-SVID: who it names, for whom, until when, and all its claims.
///
/// Its `Debug` output shows the SPIFFE ID, audience, expiry and claim names, never the token
/// (a bearer credential) nor the claims' values.
#[derive(Clone, PartialEq)]
pub struct JwtSvid {
    token: String,
    spiffe_id: SpiffeId,
    audience: Vec<String>,
    expiry: SystemTime,
    claims: serde_json::Map<String, Value>,
}

impl std::fmt::Debug for JwtSvid {
    /// Never shows the token: whoever reads a log line must not be able to replay it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("audience", &self.audience)
            .field("expiry", &crate::verify::rfc3339_system_time(self.expiry))
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("token", &format_args!("<redacted>"))
            .finish()
    }
}

impl JwtSvid {
    /// The token, as received.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `sub`: the workload's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// `aud`: every audience of the token.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// `exp`.
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }

    /// Every claim of the payload, registered and private.
    pub fn claims(&self) -> &serde_json::Map<String, Value> {
        &self.claims
    }
}

/// Validates JWT-SVIDs: exactly the specification's algorithms; the key chosen by `kid` from
/// the JWT bundle of the trust domain named in `sub`, and from no other; `typ`, if present,
/// `JWT` or `JOSE`; no header beyond `alg`, `kid` and `typ` (so no `crit`); `sub` a SPIFFE ID;
/// `aud` present and holding the expected audience; `exp` present and in the future; `nbf`, if
/// present, past; a size cap before any parsing; no member named twice.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::jwt::{JwtBundle, JwtBundleSet, JwtSvidValidator};
///
/// # fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let bundle = JwtBundle::parse("example.org".parse()?, &std::fs::read("example.org.jwks")?)?;
/// let bundles: JwtBundleSet = [bundle].into_iter().collect();
/// let svid = JwtSvidValidator::new()?.validate(token, "spiffe://example.org/reports", &bundles)?;
/// println!("{} for {:?}", svid.spiffe_id(), svid.audience());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JwtSvidValidator {
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    leeway: Duration,
    max_token_bytes: usize,
}

impl JwtSvidValidator {
    /// A validator on the process default crypto provider, else the one of the enabled `ring`
    /// or `aws-lc-rs` feature; no leeway, [`DEFAULT_MAX_TOKEN_BYTES`].
    ///
    /// # Errors
    /// [`JwtError::NoCryptoProvider`] when there is none.
    pub fn new() -> Result<Self, JwtError> {
        crate::crypto::default_provider()
            .map(|provider| Self::with_provider(&provider))
            .ok_or(JwtError::NoCryptoProvider)
    }

    /// A validator on the signature algorithms of `provider`.
    pub fn with_provider(provider: &Arc<CryptoProvider>) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms.all,
            leeway: Duration::ZERO,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }

    /// How far past `exp` (and before `nbf`) a token is still accepted (default 0).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The longest token read, in bytes (default [`DEFAULT_MAX_TOKEN_BYTES`]).
    #[must_use]
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// Validates `token` for `audience`, now.
    ///
    /// # Errors
    /// The first rule the token breaks.
    pub fn validate(
        &self,
        token: &str,
        audience: &str,
        bundles: &JwtBundleSet,
    ) -> Result<JwtSvid, JwtError> {
        self.validate_at(token, audience, bundles, SystemTime::now())
    }

    /// Validates `token` for `audience` at time `now`.
    ///
    /// # Errors
    /// The first rule the token breaks.
    pub fn validate_at(
        &self,
        token: &str,
        audience: &str,
        bundles: &JwtBundleSet,
        now: SystemTime,
    ) -> Result<JwtSvid, JwtError> {
        if token.len() > self.max_token_bytes {
            return Err(JwtError::TooLarge {
                size: token.len(),
                max: self.max_token_bytes,
            });
        }
        let parsed = CompactToken::parse(token).map_err(JwtError::Malformed)?;
        let (alg, kid) = check_header(&parsed.header)?;
        let spiffe_id = subject(&parsed.claims)?;
        let trust_domain = spiffe_id.trust_domain();
        let bundle = bundles
            .get(trust_domain)
            .ok_or_else(|| JwtError::NoBundle(trust_domain.clone()))?;
        let key = bundle.key(kid).ok_or_else(|| JwtError::UnknownKey {
            kid: kid.to_owned(),
            trust_domain: trust_domain.clone(),
        })?;
        key.verify(
            alg,
            parsed.signing_input,
            &parsed.signature,
            self.algorithms,
        )
        .map_err(|error| match error {
            SignatureError::KeyMismatch => JwtError::KeyMismatch {
                kid: kid.to_owned(),
                alg,
            },
            SignatureError::Unsupported => JwtError::Unsupported(alg),
            SignatureError::Invalid => JwtError::Signature,
        })?;
        let audiences = audiences(&parsed.claims)?;
        if !audiences.iter().any(|a| a == audience) {
            return Err(JwtError::Audience {
                expected: audience.to_owned(),
                actual: audiences,
            });
        }
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let expiry = numeric_date(&parsed.claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
        if now_secs >= expiry.saturating_add(self.leeway) {
            return Err(JwtError::Expired {
                expired_at: expiry.as_secs(),
                now: now_secs.as_secs(),
            });
        }
        if let Some(not_before) = numeric_date(&parsed.claims, "nbf")?
            && now_secs.saturating_add(self.leeway) < not_before
        {
            return Err(JwtError::NotYetValid {
                not_before: not_before.as_secs(),
                now: now_secs.as_secs(),
            });
        }
        numeric_date(&parsed.claims, "iat")?;
        // Cannot fail: `numeric_date` bounds every date by MAX_NUMERIC_DATE.
        let expiry_time = UNIX_EPOCH
            .checked_add(expiry)
            .ok_or_else(|| JwtError::Claim {
                name: "exp",
                reason: format!("{} is not a representable time", expiry.as_secs()),
            })?;
        Ok(JwtSvid {
            token: token.to_owned(),
            spiffe_id,
            audience: audiences,
            expiry: expiry_time,
            claims: parsed.claims.0.into_iter().collect(),
        })
    }
}

/// The algorithm and key ID of a header that follows JWT-SVID section 2.
fn check_header(header: &JsonObject) -> Result<(Algorithm, &str), JwtError> {
    let alg = match header.get("alg") {
        Some(Value::String(name)) => name.parse::<Algorithm>().map_err(JwtError::Algorithm)?,
        Some(other) => return Err(JwtError::Algorithm(other.to_string())),
        None => return Err(JwtError::Algorithm("(none given)".to_owned())),
    };
    if let Some(crit) = header.get("crit") {
        return Err(JwtError::Critical(crit.to_string()));
    }
    if let Some(name) = header.names().find(|name| !ALLOWED_HEADERS.contains(name)) {
        return Err(JwtError::Header(name.to_owned()));
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ == "JWT" || typ == "JOSE" => {}
        Some(other) => return Err(JwtError::Type(other.to_string())),
    }
    match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => Ok((alg, kid)),
        _ => Err(JwtError::MissingKeyId),
    }
}

fn subject(claims: &JsonObject) -> Result<SpiffeId, JwtError> {
    match claims.get("sub") {
        None => Err(JwtError::MissingSubject),
        Some(Value::String(sub)) => sub.parse().map_err(|e: crate::IdError| JwtError::Subject {
            subject: Value::from(sub.as_str()).to_string(),
            reason: e.to_string(),
        }),
        Some(other) => Err(JwtError::Subject {
            subject: other.to_string(),
            reason: "not a string".to_owned(),
        }),
    }
}

/// `aud`: a string or a non-empty array of strings (RFC 7519 4.1.3).
fn audiences(claims: &JsonObject) -> Result<Vec<String>, JwtError> {
    match claims.get("aud") {
        None => Err(JwtError::MissingAudience),
        Some(Value::String(one)) => Ok(vec![one.clone()]),
        Some(Value::Array(many)) if many.is_empty() => Err(JwtError::MissingAudience),
        Some(Value::Array(many)) => many
            .iter()
            .map(|value| match value {
                Value::String(text) => Ok(text.clone()),
                other => Err(JwtError::Claim {
                    name: "aud",
                    reason: format!("{other} is not a string"),
                }),
            })
            .collect(),
        Some(other) => Err(JwtError::Claim {
            name: "aud",
            reason: format!("{other} is neither a string nor an array of strings"),
        }),
    }
}

/// A NumericDate claim (RFC 7519 section 2: seconds since the epoch, non-negative, maybe
/// fractional) no later than [`MAX_NUMERIC_DATE`], or `None` when absent.
fn numeric_date(claims: &JsonObject, name: &'static str) -> Result<Option<Duration>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let invalid = || JwtError::Claim {
        name,
        reason: format!("{value} is not a non-negative NumericDate"),
    };
    let too_late = || JwtError::Claim {
        name,
        reason: format!(
            "{value} is after {MAX_NUMERIC_DATE} (9999-12-31T23:59:59Z), the latest NumericDate accepted"
        ),
    };
    let since_epoch = match value.as_u64() {
        Some(whole) if whole > MAX_NUMERIC_DATE => return Err(too_late()),
        Some(whole) => Duration::from_secs(whole),
        None => {
            let seconds = value.as_f64().ok_or_else(invalid)?;
            // MAX_NUMERIC_DATE is below 2^53: exact as an f64.
            if seconds > MAX_NUMERIC_DATE as f64 {
                return Err(too_late());
            }
            Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?
        }
    };
    if since_epoch > Duration::from_secs(MAX_NUMERIC_DATE) {
        return Err(too_late());
    }
    Ok(Some(since_epoch))
}
