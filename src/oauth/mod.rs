//! OAuth 2.0 for agents with no client secret: the agent's SVID is its client credential
//! (draft-ietf-oauth-spiffe-client-auth: a JWT-SVID as client assertion, or the X.509-SVID
//! over mutual TLS), tokens cached per scope set, token exchange for the next hop; and the
//! resource server's side, access tokens validated and required per route or A2A skill.
//!
//! | Piece | What it does |
//! |---|---|
//! | [`AuthorizationServer`] | the server's issuer, token endpoint and keys (by hand or [discovered](AuthorizationServer::discover)) |
//! | [`AuthorizationServerHttp`] | HTTPS to it against given roots (plain HTTP to loopback only), no redirects, bounded |
//! | [`TokenClient`] | client credentials with [`ClientAuth::JwtSvid`] or [`ClientAuth::MutualTls`]; tokens cached per scope set and replaced 60 s before expiry; [`exchange`](TokenClient::exchange) (RFC 8693) |
//! | [`OAuthBearerLayer`], [`bearer`] | a tower client layer and a `reqwest` helper that attach the token |
//! | [`AccessTokenValidator`] | the server's JWT access tokens checked against its `jwks_uri` (`iss`, `exp`, `aud`, `scope`) |
//! | [`OAuthLayer`] | a tower server layer: a valid token required, scopes required, the token handed to handlers, an audit event per decision; composes with the mTLS identity |

mod access_token;
mod client;
mod layer;
mod server;

pub use access_token::{
    AccessTokenError, AccessTokenValidator, KEYS_GRACE, KEYS_MAX_AGE, MAX_ACCESS_TOKEN_BYTES,
    VerifiedAccessToken,
};
#[cfg(feature = "workload-api")]
pub use client::JwtSvidsOf;
pub use client::{
    ACCESS_TOKEN_TYPE, AccessToken, AssertionFuture, ClientAuth, JWT_SPIFFE_ASSERTION_TYPE,
    JwtSvidAssertions, REFRESH_BEFORE_EXPIRY, TOKEN_EXCHANGE_GRANT, TokenClient,
};
pub use layer::{OAuthBearer, OAuthBearerLayer, OAuthGuard, OAuthLayer, SCOPE_HEADER, bearer};
pub use server::{AuthorizationServer, AuthorizationServerHttp};

/// Why an OAuth exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The server could not be reached, or answered other than expected.
    #[error("{url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server's metadata is unusable.
    #[error("the authorization server's metadata at {url}: {reason}")]
    Metadata {
        /// Where it was read.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No JWT-SVID to authenticate with.
    #[error("no JWT-SVID for the client assertion: {0}")]
    NoAssertion(String),
    /// The server refused (RFC 6749 section 5.2).
    #[error("the authorization server refused (HTTP {status}): {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_client`, `invalid_scope`...).
        error: String,
        /// Its `error_description`.
        description: Option<String>,
    },
    /// The token answer is unusable.
    #[error("the token answer of {url}: {reason}")]
    Token {
        /// The token endpoint.
        url: String,
        /// What is wrong.
        reason: String,
    },
}
