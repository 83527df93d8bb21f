//! The client side: access tokens for an agent, with its SVID as the client credential.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{AuthorizationServer, AuthorizationServerHttp, OAuthError};

/// The client assertion type of a JWT-SVID (draft-ietf-oauth-spiffe-client-auth).
pub const JWT_SPIFFE_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// The grant type of a token exchange (RFC 8693).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The token type of an access token (RFC 8693 section 3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// How long before its expiry a cached token is replaced.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60);

/// The most scope sets whose tokens are cached.
const MAX_CACHED: usize = 64;

/// The longest lifetime a token is cached for, whatever `expires_in` says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The lifetime assumed for a token whose answer gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// A future returned by [`JwtSvidAssertions::jwt_svid`].
pub type AssertionFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Where JWT-SVIDs for client assertions come from: a JWT-SVID of the agent's identity for
/// one audience (the authorization server's issuer). [`JwtSource`](crate::jwt::JwtSource)
/// is one.
pub trait JwtSvidAssertions: std::fmt::Debug + Send + Sync {
    /// A JWT-SVID for `audience`.
    fn jwt_svid<'a>(&'a self, audience: &'a str) -> AssertionFuture<'a>;
}

#[cfg(feature = "workload-api")]
impl JwtSvidAssertions for crate::jwt::JwtSource {
    fn jwt_svid<'a>(&'a self, audience: &'a str) -> AssertionFuture<'a> {
        Box::pin(async move {
            self.fetch_svid(&[audience.to_owned()])
                .await
                .map(|svid| svid.token().to_owned())
                .map_err(|e| e.to_string())
        })
    }
}

/// JWT-SVIDs of one of the workload's identities (when it has several): the assertions of
/// that identity's client.
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use spiffe_mtls::jwt::JwtSource;
/// use spiffe_mtls::oauth::{ClientAuth, JwtSvidsOf};
///
/// # async fn run(source: Arc<JwtSource>) -> Result<(), Box<dyn std::error::Error>> {
/// let auth = ClientAuth::JwtSvid(Arc::new(JwtSvidsOf::new(source, "spiffe://example.org/agent/client".parse()?)));
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "workload-api")]
#[derive(Debug, Clone)]
pub struct JwtSvidsOf {
    source: Arc<crate::jwt::JwtSource>,
    id: crate::SpiffeId,
}

#[cfg(feature = "workload-api")]
impl JwtSvidsOf {
    /// The JWT-SVIDs of `id` from `source`.
    pub fn new(source: Arc<crate::jwt::JwtSource>, id: crate::SpiffeId) -> Self {
        Self { source, id }
    }
}

#[cfg(feature = "workload-api")]
impl JwtSvidAssertions for JwtSvidsOf {
    fn jwt_svid<'a>(&'a self, audience: &'a str) -> AssertionFuture<'a> {
        Box::pin(async move {
            self.source
                .fetch_svid_of(&[audience.to_owned()], Some(&self.id))
                .await
                .map(|svid| svid.token().to_owned())
                .map_err(|e| e.to_string())
        })
    }
}

impl<T: JwtSvidAssertions + ?Sized> JwtSvidAssertions for Arc<T> {
    fn jwt_svid<'a>(&'a self, audience: &'a str) -> AssertionFuture<'a> {
        (**self).jwt_svid(audience)
    }
}

/// How the agent authenticates to the authorization server: never with a secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A JWT-SVID for the issuer as audience, in `client_assertion` with
    /// [`JWT_SPIFFE_ASSERTION_TYPE`]; the server finds the client by the SVID's SPIFFE ID.
    JwtSvid(Arc<dyn JwtSvidAssertions>),
    /// The X.509-SVID in the TLS handshake (RFC 8705 mutual TLS client authentication): the
    /// [`AuthorizationServerHttp`] must present it
    /// ([`AuthorizationServerHttp::with_tls`]); `client_id` names the client.
    MutualTls {
        /// The client ID registered for the SVID.
        client_id: String,
    },
}

/// An access token and what it is good for.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token, for `Authorization: Bearer`.
    pub token: String,
    /// When it expires (as the server said, from when it was received).
    pub expires_at: SystemTime,
    /// The scopes granted (the server's `scope`, else those asked for).
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl AccessToken {
    /// When a cache replaces it: [`REFRESH_BEFORE_EXPIRY`] before it expires, or at half its
    /// lifetime when that is shorter.
    fn refresh_at(&self, received: SystemTime) -> SystemTime {
        let lifetime = self.expires_at.duration_since(received).unwrap_or_default();
        let early = REFRESH_BEFORE_EXPIRY.min(lifetime / 2);
        self.expires_at.checked_sub(early).unwrap_or(received)
    }
}

/// A cached token and when it is replaced.
#[derive(Debug, Clone)]
struct Cached {
    token: AccessToken,
    refresh_at: SystemTime,
}

/// An OAuth 2.0 client for an agent, authenticating with its SVID: the client credentials
/// grant, tokens cached per scope set and replaced [`REFRESH_BEFORE_EXPIRY`] before they
/// expire, and token exchange (RFC 8693) for a narrower token for the next hop.
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use spiffe_mtls::jwt::JwtSource;
/// use spiffe_mtls::oauth::{AuthorizationServer, AuthorizationServerHttp, ClientAuth, TokenClient};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let http = AuthorizationServerHttp::new([])?; // + the web PKI roots of the server
/// let server = AuthorizationServer::discover(&http, "https://auth.example.org/realms/agents").await?;
/// let svids = JwtSource::connect(spiffe_mtls::workload::EndpointAddress::from_env()?).await?;
/// let client = TokenClient::new(http, server, ClientAuth::JwtSvid(Arc::new(svids)));
/// let token = client.token(&["agent:execute"]).await?;
/// println!("scopes {:?}, expires {:?}", token.scopes, token.expires_at);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TokenClient {
    http: AuthorizationServerHttp,
    server: AuthorizationServer,
    auth: ClientAuth,
    cache: Mutex<HashMap<Vec<String>, Cached>>,
    /// One token request at a time (a burst of calls asks once).
    requesting: tokio::sync::Mutex<()>,
}

impl TokenClient {
    /// A client of `server` over `http`, authenticating by `auth`.
    pub fn new(
        http: AuthorizationServerHttp,
        server: AuthorizationServer,
        auth: ClientAuth,
    ) -> Self {
        Self {
            http,
            server,
            auth,
            cache: Mutex::new(HashMap::new()),
            requesting: tokio::sync::Mutex::new(()),
        }
    }

    /// The authorization server.
    pub fn server(&self) -> &AuthorizationServer {
        &self.server
    }

    /// A token for `scopes` (client credentials grant), from the cache until it is due for
    /// replacement.
    ///
    /// # Errors
    /// [`OAuthError`]: no JWT-SVID, the server unreachable, or its refusal (`invalid_client`,
    /// `invalid_scope`...) with its description.
    pub async fn token(&self, scopes: &[&str]) -> Result<AccessToken, OAuthError> {
        let key = scope_key(scopes);
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let _one = self.requesting.lock().await;
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let scope = key.join(" ");
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        let received = SystemTime::now();
        let token = self.request(form, &key).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
            cache.clear();
        }
        cache.insert(
            key,
            Cached {
                refresh_at: token.refresh_at(received),
                token: token.clone(),
            },
        );
        Ok(token)
    }

    /// Exchanges `subject_token` (a token this agent received) for one with `scopes` (RFC
    /// 8693), optionally for `audience`: an agent calling the next hop with no more than the
    /// hop needs. Not cached.
    ///
    /// # Errors
    /// As [`token`](Self::token); a server that refuses to widen the scopes answers
    /// `invalid_scope`.
    pub async fn exchange(
        &self,
        subject_token: &str,
        scopes: &[&str],
        audience: Option<&str>,
    ) -> Result<AccessToken, OAuthError> {
        let key = scope_key(scopes);
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT.to_owned()),
            ("subject_token", subject_token.to_owned()),
            ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
            ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
        ];
        if !key.is_empty() {
            form.push(("scope", key.join(" ")));
        }
        if let Some(audience) = audience {
            form.push(("audience", audience.to_owned()));
        }
        self.request(form, &key).await
    }

    /// Drops the cached tokens (after the server revoked them, say).
    pub fn clear(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn cached(&self, key: &[String]) -> Option<AccessToken> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let cached = cache.get(key)?;
        (SystemTime::now() < cached.refresh_at).then(|| cached.token.clone())
    }

    /// Sends a token request with the client's authentication added.
    async fn request(
        &self,
        mut form: Vec<(&'static str, String)>,
        asked: &[String],
    ) -> Result<AccessToken, OAuthError> {
        match &self.auth {
            ClientAuth::JwtSvid(assertions) => {
                let assertion = assertions
                    .jwt_svid(self.server.issuer())
                    .await
                    .map_err(OAuthError::NoAssertion)?;
                form.push((
                    "client_assertion_type",
                    JWT_SPIFFE_ASSERTION_TYPE.to_owned(),
                ));
                form.push(("client_assertion", assertion));
            }
            ClientAuth::MutualTls { client_id } => form.push(("client_id", client_id.clone())),
        }
        let pairs: Vec<(&str, &str)> = form.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let url = self.server.token_endpoint();
        let (status, body) = self.http.post_form(url, &pairs).await?;
        if status != 200 {
            return Err(refusal(status, &body));
        }
        parse_token(&body, asked).map_err(|reason| OAuthError::Token {
            url: url.to_owned(),
            reason,
        })
    }
}

/// Scopes sorted and without repeats: the cache key and the `scope` sent.
fn scope_key(scopes: &[&str]) -> Vec<String> {
    let mut key: Vec<String> = scopes
        .iter()
        .flat_map(|scope| scope.split(' '))
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect();
    key.sort_unstable();
    key.dedup();
    key
}

/// The server's refusal: its `error` and `error_description` (RFC 6749 section 5.2).
fn refusal(status: u16, body: &Value) -> OAuthError {
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(|text| text.chars().take(512).collect::<String>())
    };
    OAuthError::Refused {
        status,
        error: text("error").unwrap_or_else(|| "no OAuth error code".to_owned()),
        description: text("error_description"),
    }
}

/// A successful token answer (RFC 6749 section 5.1).
fn parse_token(body: &Value, asked: &[String]) -> Result<AccessToken, String> {
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or("no access_token")?;
    let token_type = body
        .get("token_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(format!("token_type {token_type:?}, not Bearer"));
    }
    let lifetime = match body.get("expires_in") {
        None => DEFAULT_LIFETIME,
        Some(seconds) => Duration::from_secs(
            seconds
                .as_u64()
                .ok_or("expires_in is not a non-negative integer")?,
        ),
    };
    let scopes = match body.get("scope").and_then(Value::as_str) {
        Some(scope) => scope
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect(),
        None => asked.to_vec(),
    };
    Ok(AccessToken {
        token: token.to_owned(),
        // A lifetime past a day is taken as a day (and never overflows the clock).
        expires_at: SystemTime::now() + lifetime.min(MAX_LIFETIME),
        scopes,
    })
}
