//! The resource-server side: an authorization server's access tokens (JWTs) validated against
//! its published keys.
//!
//! Written here rather than taken from a JOSE crate because the rules must be this crate's
//! strict ones (the same parsing as JWT-SVIDs: a member named twice refused, no key from the
//! token's own header, signatures by the rustls provider's algorithms), and the keys come
//! only from the issuer's `jwks_uri`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{AuthorizationServer, AuthorizationServerHttp};
use crate::jwt::json_object::JsonObject;
use crate::jwt::token::CompactToken;
use crate::jwt::{Algorithm, JwtKey};

/// The largest token read.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 16 * 1024;

/// How often the keys may be fetched again for a token whose `kid` is unknown: a rotated key
/// is found within a second, and tokens with made-up `kid`s cost the issuer at most one
/// fetch a second.
const REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long the issuer's keys are used before they are fetched again (a key it withdrew is
/// refused from then on).
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(300);

/// How long keys keep working while they cannot be fetched again.
pub const KEYS_GRACE: Duration = Duration::from_secs(1800);

/// How long fetching the issuer's keys may take.
const KEYS_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest lifetime an access token may claim (its `exp` beyond now).
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Header parameters that would let a token name its own key.
const SELF_NAMED_KEYS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// An access token that passed validation: who it was issued to and what it allows.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedAccessToken {
    subject: Option<String>,
    client_id: Option<String>,
    scopes: BTreeSet<String>,
    expires_at: SystemTime,
    claims: serde_json::Map<String, Value>,
}

impl std::fmt::Debug for VerifiedAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedAccessToken")
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl VerifiedAccessToken {
    /// `sub`, if the token has one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The client the token was issued to (`client_id`, else `azp`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The scopes it grants (`scope`, space-separated).
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.scopes
    }

    /// Whether it grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Every claim.
    pub fn claims(&self) -> &serde_json::Map<String, Value> {
        &self.claims
    }

    /// A token granting `scopes`, unvalidated: for unit tests only.
    #[cfg(test)]
    pub(crate) fn granting(scopes: &[&str]) -> Self {
        Self {
            subject: None,
            client_id: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: UNIX_EPOCH,
            claims: serde_json::Map::new(),
        }
    }
}

/// Why an access token was refused: each names the rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTokenError {
    /// Not a JWT this validator reads.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The `alg` is missing, unknown, symmetric or `none`.
    #[error("alg {0:?} is not an asymmetric JWS algorithm")]
    Algorithm(String),
    /// The header names a key, a critical extension, or another type than a JWT.
    #[error(
        "the header has {0:?}: keys come only from the issuer's jwks_uri, and a token is a JWT"
    )]
    Header(String),
    /// No key of the issuer has the token's `kid`.
    #[error("no key {0:?} among the issuer's keys")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the signature does not verify with the issuer's key {0:?}")]
    Signature(String),
    /// `iss` is not the issuer.
    #[error("iss is {found:?}, not {expected:?}")]
    Issuer {
        /// The issuer expected.
        expected: String,
        /// What the token says.
        found: String,
    },
    /// The token has expired (or has no `exp`).
    #[error("expired or without exp")]
    Expired,
    /// The token is not valid yet.
    #[error("not valid before nbf")]
    NotYetValid,
    /// `aud` does not hold the audience expected.
    #[error("aud does not include {0:?}")]
    Audience(String),
    /// The keys could not be fetched.
    #[error("the issuer's keys: {0}")]
    Keys(String),
}

impl AccessTokenError {
    /// The rule broken, in a word (audit events, `error_description`).
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "format",
            Self::Algorithm(_) => "alg",
            Self::Header(_) => "header",
            Self::UnknownKey(_) => "kid",
            Self::Signature(_) => "signature",
            Self::Issuer { .. } => "iss",
            Self::Expired => "exp",
            Self::NotYetValid => "nbf",
            Self::Audience(_) => "aud",
            Self::Keys(_) => "jwks",
        }
    }
}

/// The audience rule.
#[derive(Debug, Clone)]
enum Audience {
    /// Neither `audience` nor `any_audience` was called: every token is refused.
    Unset,
    /// Any `aud`.
    Any,
    /// `aud` must include this.
    Required(String),
}

/// The issuer's keys, when they were last fetched, and when a fetch was last tried.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, JwtKey>,
    fetched: Option<Instant>,
    tried: Option<Instant>,
}

/// Validates an authorization server's access tokens (JWT access tokens, RFC 9068 and
/// Keycloak's): signature by a key of the server's `jwks_uri` chosen by `kid` (fetched again,
/// at most every second, for a `kid` not known yet: key rotation), `iss` exactly the issuer,
/// `exp` and `nbf` with a leeway of 30 s, `aud` when an audience is set, and the `scope`
/// claim read. A header naming a key (`jwk`, `jku`, `x5u`, `x5c`) or a critical extension, a
/// symmetric or `none` algorithm, and a token over 16 KiB are refused.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::oauth::{AccessTokenValidator, AuthorizationServer, AuthorizationServerHttp};
///
/// # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let http = AuthorizationServerHttp::new([])?;
/// let server = AuthorizationServer::discover(&http, "https://auth.example.org/realms/agents").await?;
/// let validator = AccessTokenValidator::new(http, server).audience("spiffe://example.org/agent/server");
/// let verified = validator.validate(token).await?;
/// assert!(verified.has_scope("agent:execute"));
/// # Ok(())
/// # }
/// ```
pub struct AccessTokenValidator {
    http: AuthorizationServerHttp,
    server: AuthorizationServer,
    audience: Audience,
    leeway: Duration,
    keys_max_age: Duration,
    keys: std::sync::Mutex<Keys>,
    algorithms: &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
}

impl std::fmt::Debug for AccessTokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenValidator")
            .field("issuer", &self.server.issuer())
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl AccessTokenValidator {
    /// A validator of `server`'s tokens, fetching its keys over `http`.
    pub fn new(http: AuthorizationServerHttp, server: AuthorizationServer) -> Self {
        let algorithms = crate::crypto::default_provider().map_or(&[][..], |provider| {
            provider.signature_verification_algorithms.all
        });
        Self {
            http,
            server,
            audience: Audience::Unset,
            leeway: Duration::from_secs(30),
            keys_max_age: KEYS_MAX_AGE,
            keys: std::sync::Mutex::new(Keys::default()),
            algorithms,
        }
    }

    /// Requires `aud` to include `audience` (this resource server's identifier). One of
    /// this or [`any_audience`](Self::any_audience) is needed: without either, every token
    /// is refused (a token one agent received must not open another).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Audience::Required(audience.into());
        self
    }

    /// Uses the issuer's keys for at most `age` before fetching them again
    /// ([`KEYS_MAX_AGE`] by default): how long a key the issuer withdrew keeps working.
    #[must_use]
    pub fn keys_max_age(mut self, age: Duration) -> Self {
        self.keys_max_age = age.max(REFETCH_INTERVAL);
        self
    }

    /// Accepts a token of the issuer whatever its `aud` (an issuer that names no audience).
    #[must_use]
    pub fn any_audience(mut self) -> Self {
        self.audience = Audience::Any;
        self
    }

    /// The issuer whose tokens are validated.
    pub fn issuer(&self) -> &str {
        self.server.issuer()
    }

    /// Validates `token` now.
    ///
    /// # Errors
    /// [`AccessTokenError`] naming the rule it broke.
    pub async fn validate(&self, token: &str) -> Result<VerifiedAccessToken, AccessTokenError> {
        if token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(AccessTokenError::Malformed(format!(
                "larger than {MAX_ACCESS_TOKEN_BYTES} bytes"
            )));
        }
        let parsed = CompactToken::parse(token).map_err(AccessTokenError::Malformed)?;
        if let Some(name) = SELF_NAMED_KEYS
            .iter()
            .chain(&["crit"])
            .find(|name| parsed.header.get(name).is_some())
        {
            return Err(AccessTokenError::Header((*name).to_owned()));
        }
        if let Some(typ) = parsed.header.get("typ").and_then(Value::as_str)
            && !["jwt", "at+jwt", "application/at+jwt"]
                .iter()
                .any(|t| typ.eq_ignore_ascii_case(t))
        {
            return Err(AccessTokenError::Header(format!("typ {typ}")));
        }
        let alg_name = parsed
            .header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let alg: Algorithm = alg_name
            .parse()
            .map_err(|_| AccessTokenError::Algorithm(alg_name.to_owned()))?;
        let kid = parsed
            .header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| AccessTokenError::UnknownKey(String::new()))?;
        let key = self.key(kid).await?;
        key.verify(
            alg,
            parsed.signing_input,
            &parsed.signature,
            self.algorithms,
        )
        .map_err(|_| AccessTokenError::Signature(kid.to_owned()))?;
        self.check_claims(&parsed.claims)
    }

    /// The claims' rules, once the signature verified.
    fn check_claims(&self, claims: &JsonObject) -> Result<VerifiedAccessToken, AccessTokenError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let found = text("iss").unwrap_or_default();
        if found != self.server.issuer() {
            return Err(AccessTokenError::Issuer {
                expected: self.server.issuer().to_owned(),
                found,
            });
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let leeway = self.leeway.as_secs();
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AccessTokenError::Expired)?;
        if exp.saturating_add(leeway) <= now {
            return Err(AccessTokenError::Expired);
        }
        if exp > now.saturating_add(MAX_LIFETIME.as_secs()) {
            return Err(AccessTokenError::Malformed(format!(
                "exp is more than {} h away",
                MAX_LIFETIME.as_secs() / 3600
            )));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_u64().ok_or(AccessTokenError::NotYetValid)?;
            if nbf > now.saturating_add(leeway) {
                return Err(AccessTokenError::NotYetValid);
            }
        }
        match &self.audience {
            Audience::Unset => {
                return Err(AccessTokenError::Audience(
                    "(none configured: call audience() or any_audience())".to_owned(),
                ));
            }
            Audience::Any => {}
            Audience::Required(audience) => {
                let holds = match claims.get("aud") {
                    Some(Value::String(aud)) => aud == audience,
                    Some(Value::Array(auds)) => {
                        auds.iter().any(|aud| aud.as_str() == Some(audience))
                    }
                    _ => false,
                };
                if !holds {
                    return Err(AccessTokenError::Audience(audience.clone()));
                }
            }
        }
        // An ID token of the same issuer (signed by the same key) is no access token: its
        // OpenID Connect members give it away.
        if let Some(member) = ["nonce", "at_hash", "c_hash"]
            .iter()
            .find(|member| claims.get(member).is_some())
        {
            return Err(AccessTokenError::Malformed(format!(
                "it has {member:?}: an ID token, not an access token"
            )));
        }
        // Keycloak's ID and refresh tokens are signed by the same key for the same issuer.
        if let Some(typ) = claims.get("typ").and_then(Value::as_str)
            && !typ.eq_ignore_ascii_case("bearer")
        {
            return Err(AccessTokenError::Malformed(format!(
                "typ {typ:?}: not an access token"
            )));
        }
        let scopes = text("scope")
            .map(|scope| {
                scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(VerifiedAccessToken {
            subject: text("sub"),
            client_id: text("client_id").or_else(|| text("azp")),
            scopes,
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
            claims: claims.0.iter().cloned().collect(),
        })
    }

    /// The key `kid`. The keys are fetched again when `kid` is unknown, or when they are
    /// older than their maximum age (a key the issuer withdrew stops working then), at most
    /// once a second, outside the lock: tokens of known keys never wait for another's
    /// fetch. When a fetch fails, keys younger than [`KEYS_GRACE`] keep working.
    async fn key(&self, kid: &str) -> Result<JwtKey, AccessTokenError> {
        {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            let age = keys.fetched.map(|at| at.elapsed());
            let fresh = age.is_some_and(|age| age < self.keys_max_age);
            let due = keys.tried.is_none_or(|at| at.elapsed() >= REFETCH_INTERVAL);
            if let Some(key) = keys.by_kid.get(kid)
                && (fresh || !due)
            {
                if age.is_some_and(|age| age >= KEYS_GRACE) {
                    return Err(AccessTokenError::Keys(
                        "the issuer's keys could not be fetched again for too long".to_owned(),
                    ));
                }
                return Ok(key.clone());
            }
            if !due {
                return Err(AccessTokenError::UnknownKey(kid.to_owned()));
            }
            keys.tried = Some(Instant::now());
        }
        let fetched = self
            .http
            .get_json_within(self.server.jwks_uri(), KEYS_TIMEOUT)
            .await
            .map(|jwks| signing_keys(&jwks));
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match fetched {
            Ok(fetched) => {
                keys.by_kid = fetched;
                keys.fetched = Some(Instant::now());
            }
            Err(error) => {
                let young = keys.fetched.is_some_and(|at| at.elapsed() < KEYS_GRACE);
                match keys.by_kid.get(kid) {
                    Some(key) if young => return Ok(key.clone()),
                    _ => return Err(AccessTokenError::Keys(error.to_string())),
                }
            }
        }
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| AccessTokenError::UnknownKey(kid.to_owned()))
    }
}

/// The signing keys of a JWK Set (`use` `sig` or none, with a `kid`); others are skipped.
fn signing_keys(jwks: &Value) -> HashMap<String, JwtKey> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|jwk| matches!(jwk.get("use").and_then(Value::as_str), None | Some("sig")))
        .filter_map(|jwk| {
            let kid = jwk.get("kid")?.as_str()?.to_owned();
            let object = JsonObject(jwk.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            let key = JwtKey::from_jwk(&object).ok()?;
            Some((kid, key))
        })
        .collect()
}
