//! Tower layers: one that attaches an access token to a client's requests, one that requires
//! a valid token (and scopes) of a server's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};

use super::{AccessTokenError, AccessTokenValidator, OAuthError, TokenClient};
use crate::tls::PeerIdentity;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The header [`OAuthLayer`] sets to the token's scopes (space-separated) for what runs
/// behind it (the A2A `agent_router` sets its own from the token, for its `SkillPolicy`); a
/// client's own is removed.
pub const SCOPE_HEADER: &str = "x-oauth-scope";

/// `request` with `Authorization: Bearer` and a token of `client` for `scopes`.
///
/// # Errors
/// [`OAuthError`] when no token can be had.
///
/// # Example
/// ```no_run
/// # async fn run(http: reqwest::Client, tokens: &spiffe_mtls::oauth::TokenClient) -> Result<(), Box<dyn std::error::Error>> {
/// let request = http.get("https://agents.example.org/a2a");
/// let response = spiffe_mtls::oauth::bearer(request, tokens, &["agent:execute"]).await?.send().await?;
/// # Ok(())
/// # }
/// ```
pub async fn bearer(
    request: reqwest::RequestBuilder,
    client: &TokenClient,
    scopes: &[&str],
) -> Result<reqwest::RequestBuilder, OAuthError> {
    let token = client.token(scopes).await?;
    Ok(request.bearer_auth(token.token))
}

/// A tower layer for clients (hyper, tonic): every request gets `Authorization: Bearer` with
/// a token of the [`TokenClient`] for the layer's scopes (cached there, replaced before it
/// expires). A request whose token cannot be had fails with the [`OAuthError`].
#[derive(Debug, Clone)]
pub struct OAuthBearerLayer {
    client: Arc<TokenClient>,
    scopes: Arc<[String]>,
}

impl OAuthBearerLayer {
    /// Tokens of `client` for `scopes`.
    pub fn new(
        client: Arc<TokenClient>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            client,
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }
}

impl<S> tower::Layer<S> for OAuthBearerLayer {
    type Service = OAuthBearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuthBearer {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`OAuthBearerLayer`].
#[derive(Debug, Clone)]
pub struct OAuthBearer<S> {
    inner: S,
    layer: OAuthBearerLayer,
}

impl<S, B> tower::Service<Request<B>> for OAuthBearer<S>
where
    S: tower::Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: From<OAuthError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The ready service goes with this call; the clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let scopes: Vec<&str> = layer.scopes.iter().map(String::as_str).collect();
            let token = layer.client.token(&scopes).await?;
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.token)).map_err(|_| {
                    OAuthError::Token {
                        url: layer.client.server().token_endpoint().to_owned(),
                        reason: "the access token is not a header value".to_owned(),
                    }
                })?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
            inner.call(request).await
        })
    }
}

/// A tower layer for servers: a request passes only with a valid access token of the
/// [`AccessTokenValidator`]'s issuer in `Authorization: Bearer` granting every scope the
/// layer requires. The token goes to handlers as a
/// [`VerifiedAccessToken`](super::VerifiedAccessToken) request extension, its scopes in
/// [`SCOPE_HEADER`] (a client's own is always removed).
///
/// Refusals (RFC 6750): no token is `401` with `WWW-Authenticate: Bearer`; an invalid one
/// `401` with `error="invalid_token"` and the rule broken; a missing scope `403` with
/// `error="insufficient_scope"` and `scope` naming what is missing. Each decision is an audit
/// event, naming the mutual TLS peer when there is one: stacked with a
/// [`RoutePolicyLayer`](crate::net::RoutePolicyLayer) (or a server config's authorizer),
/// a request needs both the SPIFFE ID and the scopes.
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use axum::{Extension, Router, routing::post};
/// use spiffe_mtls::oauth::{AccessTokenValidator, OAuthLayer, VerifiedAccessToken};
///
/// # fn run(validator: AccessTokenValidator) {
/// let app: Router = Router::new()
///     .route("/a2a", post(|Extension(token): Extension<VerifiedAccessToken>| async move {
///         format!("hello {:?}\n", token.client_id())
///     }))
///     .layer(OAuthLayer::new(Arc::new(validator)).require_scopes(["agent:execute"]));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct OAuthLayer {
    validator: Arc<AccessTokenValidator>,
    required: Arc<[String]>,
    optional: bool,
}

impl OAuthLayer {
    /// Requires a valid token of `validator`'s issuer.
    pub fn new(validator: Arc<AccessTokenValidator>) -> Self {
        Self {
            validator,
            required: Arc::new([]),
            optional: false,
        }
    }

    /// Lets a request without `Authorization` through, with no token and no scopes, for
    /// what runs behind to decide: an agent whose card is public and whose
    /// [`SkillPolicy`](crate::a2a::SkillPolicy) requires scopes per skill. A token that is
    /// there must still be valid; with [`require_scopes`](Self::require_scopes), a request
    /// without one is refused all the same.
    #[must_use]
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Requires the token to grant each of `scopes` too.
    #[must_use]
    pub fn require_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.required = scopes.into_iter().map(Into::into).collect();
        self
    }
}

impl<S> tower::Layer<S> for OAuthLayer {
    type Service = OAuthGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuthGuard {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`OAuthLayer`].
#[derive(Debug, Clone)]
pub struct OAuthGuard<S> {
    inner: S,
    layer: OAuthLayer,
}

fn refusal<B: From<String>>(status: StatusCode, challenge: String, body: String) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for OAuthGuard<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        request.headers_mut().remove(SCOPE_HEADER);
        if let Some(value) = request.headers_mut().get_mut(AUTHORIZATION) {
            value.set_sensitive(true);
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let peer = request
                .extensions()
                .get::<PeerIdentity>()
                .map(|peer| peer.spiffe_id().clone());
            let rule = format!(
                "OAuth token of {}{}",
                layer.validator.issuer(),
                if layer.required.is_empty() {
                    String::new()
                } else {
                    format!(" with scope {}", layer.required.join(" "))
                }
            );
            let token = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| {
                    let (scheme, token) = value.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then(|| token.trim().to_owned())
                });
            // Optional: a request with no token passes, unless the layer requires scopes.
            if token.is_none()
                && layer.optional
                && layer.required.is_empty()
                && !request.headers().contains_key(AUTHORIZATION)
            {
                return inner.call(request).await;
            }
            let Some(token) = token else {
                crate::tls::token_denied(
                    peer.as_ref(),
                    &rule,
                    &"no bearer token",
                    &crate::tls::no_evidence,
                );
                return Ok(refusal(
                    StatusCode::UNAUTHORIZED,
                    "Bearer".to_owned(),
                    "unauthorized: an OAuth access token is required (Authorization: Bearer)\n"
                        .to_owned(),
                ));
            };
            let verified = match layer.validator.validate(&token).await {
                Ok(verified) => verified,
                Err(error) => {
                    crate::tls::token_denied(
                        peer.as_ref(),
                        &rule,
                        &error,
                        &crate::tls::no_evidence,
                    );
                    return Ok(refusal(
                        StatusCode::UNAUTHORIZED,
                        format!(
                            "Bearer error=\"invalid_token\", error_description=\"access token rule: {}\"",
                            error.rule()
                        ),
                        match error {
                            // Why the keys cannot be had is the server's business (URLs,
                            // network errors): the audit event has it, the client does not.
                            AccessTokenError::Keys(_) => format!(
                                "unauthorized: the access token cannot be checked now ({})\n",
                                error.rule()
                            ),
                            _ => format!(
                                "unauthorized: invalid access token ({}): {error}\n",
                                error.rule()
                            ),
                        },
                    ));
                }
            };
            let missing: Vec<&str> = layer
                .required
                .iter()
                .map(String::as_str)
                .filter(|scope| !verified.has_scope(scope))
                .collect();
            if !missing.is_empty() {
                let reason = format!("the token lacks the scope {}", missing.join(" "));
                crate::tls::token_denied(peer.as_ref(), &rule, &reason, &crate::tls::no_evidence);
                return Ok(refusal(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                        layer.required.join(" ")
                    ),
                    format!("forbidden: {reason}\n"),
                ));
            }
            crate::tls::token_accepted(peer.as_ref(), &rule, &crate::tls::no_evidence);
            let scopes: Vec<&str> = verified.scopes().iter().map(String::as_str).collect();
            if let Ok(value) = HeaderValue::from_str(&scopes.join(" ")) {
                request.headers_mut().insert(SCOPE_HEADER, value);
            }
            request.extensions_mut().insert(verified);
            inner.call(request).await
        })
    }
}
