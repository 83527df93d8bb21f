//! Bearer JWT-SVIDs over HTTP: a server layer that validates `Authorization: Bearer` and hands
//! the identity to handlers as a [`PeerIdentity`], the way mutual TLS does (so
//! [`RoutePolicyLayer`](super::RoutePolicyLayer) and handlers work unchanged); and a client
//! layer that attaches a fresh JWT-SVID for the target's audience.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};

use crate::authorize::Authorizer;
use crate::jwt::{JwtBundleSource, JwtError, JwtSvidValidator};
use crate::tls::{self, PeerIdentity};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Debug)]
struct Settings {
    source: Arc<dyn JwtBundleSource>,
    audience: String,
    validator: JwtSvidValidator,
    or_mtls: bool,
    authorizer: Option<Authorizer>,
}

/// A tower layer that lets a request through only with a valid JWT-SVID for `audience` in
/// `Authorization: Bearer <token>` (validated against the source's JWT bundles), and inserts
/// the token's [`PeerIdentity`] into the request's extensions (replacing any other). The
/// `Authorization` header is marked sensitive, so `Debug` of the request's headers does not
/// show the token (nor does `Debug` of the `PeerIdentity`).
///
/// Refusals: no token (or another scheme) is `401` with `WWW-Authenticate: Bearer
/// realm="spiffe"`; an invalid token is `401` with `error="invalid_token"` and the broken rule
/// in `error_description`; no JWT bundles at all is `503`. Each decision is an audit event
/// (target `spiffe_mtls::audit`): `accepted` with the ID, or `denied` with the rule.
///
/// With [`or_mtls`](Self::or_mtls), a request without an `Authorization` header that
/// arrived over mutual TLS (a [`PeerIdentity`] from the handshake) passes as it is: a server
/// that accepts either credential.
///
/// # Example
/// ```no_run
/// use axum::{Extension, Router, routing::get};
/// use spiffe_mtls::jwt::JwtBundleFiles;
/// use spiffe_mtls::net::{JwtAuthLayer, PeerIdentity};
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bundles = JwtBundleFiles::open("/run/jwt-bundles")?;
/// let app: Router = Router::new()
///     .route("/reports", get(|Extension(peer): Extension<PeerIdentity>| async move {
///         format!("hello {peer}\n")
///     }))
///     .layer(JwtAuthLayer::new(bundles, "spiffe://example.org/reports")?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JwtAuthLayer {
    settings: Arc<Settings>,
}

impl JwtAuthLayer {
    /// Requires a JWT-SVID for `audience`, validated against `source`'s bundles with the
    /// default [`JwtSvidValidator`].
    ///
    /// # Errors
    /// [`JwtError::NoCryptoProvider`] when no crypto provider is available.
    pub fn new(
        source: impl JwtBundleSource + 'static,
        audience: impl Into<String>,
    ) -> Result<Self, JwtError> {
        Ok(Self {
            settings: Arc::new(Settings {
                source: Arc::new(source),
                audience: audience.into(),
                validator: JwtSvidValidator::new()?,
                or_mtls: false,
                authorizer: None,
            }),
        })
    }

    /// Validates with `validator` (a leeway, another size cap).
    #[must_use]
    pub fn validator(self, validator: JwtSvidValidator) -> Self {
        self.with(|settings| settings.validator = validator)
    }

    /// Lets a request without `Authorization` through when it carries a mutual TLS
    /// [`PeerIdentity`].
    #[must_use]
    pub fn or_mtls(self) -> Self {
        self.with(|settings| settings.or_mtls = true)
    }

    /// Lets in only the token IDs `authorizer` allows (a valid token of another ID is `403`,
    /// with an audit event), as a server config's authorizer does for mutual TLS peers.
    #[must_use]
    pub fn authorizer(self, authorizer: Authorizer) -> Self {
        self.with(|settings| settings.authorizer = Some(authorizer))
    }

    fn with(self, edit: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings {
            source: Arc::clone(&self.settings.source),
            audience: self.settings.audience.clone(),
            validator: self.settings.validator.clone(),
            or_mtls: self.settings.or_mtls,
            authorizer: self.settings.authorizer.clone(),
        };
        edit(&mut settings);
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl<S> tower::Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> JwtAuth<S> {
        JwtAuth {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// The service of [`JwtAuthLayer`].
#[derive(Debug, Clone)]
pub struct JwtAuth<S> {
    inner: S,
    settings: Arc<Settings>,
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 2.1; the scheme is
/// case-insensitive).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

fn refusal<B: From<String>>(
    status: StatusCode,
    challenge: Option<String>,
    body: String,
) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    response
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for JwtAuth<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // A handler that logs the request's headers must not log the bearer token.
        if let Some(value) = request.headers_mut().get_mut(AUTHORIZATION) {
            value.set_sensitive(true);
        }
        let settings = &self.settings;
        let audience = settings.audience.as_str();
        let refuse = |status, challenge, body| -> Self::Future {
            Box::pin(std::future::ready(Ok(refusal(status, challenge, body))))
        };
        let Some(header) = request.headers().get(AUTHORIZATION) else {
            let mtls_peer = request
                .extensions()
                .get::<PeerIdentity>()
                .filter(|peer| peer.jwt_svid().is_none());
            if settings.or_mtls
                && let Some(peer) = mtls_peer
            {
                // The handshake checked the certificate once; a connection can outlive it.
                if peer.is_expired() {
                    let id = peer.spiffe_id().clone();
                    tls::jwt_denied(
                        Some(&id),
                        audience,
                        "a certificate valid now",
                        &"the peer's certificate expired after its handshake",
                        &|event| tls::with_peer(event, peer),
                    );
                    return refuse(
                        StatusCode::UNAUTHORIZED,
                        Some("Bearer realm=\"spiffe\"".to_owned()),
                        format!(
                            "unauthorized: {id}'s certificate expired after the handshake; \
                             send a JWT-SVID or connect again\n"
                        ),
                    );
                }
                return Box::pin(self.inner.call(request));
            }
            tls::jwt_denied(
                None,
                audience,
                "token",
                &"no bearer token",
                &tls::no_evidence,
            );
            return refuse(
                StatusCode::UNAUTHORIZED,
                Some("Bearer realm=\"spiffe\"".to_owned()),
                "unauthorized: a JWT-SVID bearer token is required\n".to_owned(),
            );
        };
        let Some(token) = bearer_token(header) else {
            tls::jwt_denied(
                None,
                audience,
                "token",
                &"not an Authorization: Bearer <token> header",
                &tls::no_evidence,
            );
            return refuse(
                StatusCode::UNAUTHORIZED,
                Some("Bearer realm=\"spiffe\", error=\"invalid_request\"".to_owned()),
                "unauthorized: expected Authorization: Bearer <JWT-SVID>\n".to_owned(),
            );
        };
        let bundles = match settings.source.jwt_bundles() {
            Ok(bundles) => bundles,
            Err(error) => {
                tls::jwt_denied(None, audience, "bundle", &error, &tls::no_evidence);
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "no JWT bundles to validate tokens with\n".to_owned(),
                );
            }
        };
        match settings.validator.validate(token, audience, &bundles) {
            Ok(svid) => {
                if let Some(authorizer) = &settings.authorizer
                    && let Err(error) = authorizer.authorize(svid.spiffe_id())
                {
                    tls::jwt_denied(
                        Some(svid.spiffe_id()),
                        audience,
                        "authorizer",
                        &error,
                        &|event| jwt_evidence(event, &svid, Some(authorizer)),
                    );
                    return refuse(
                        StatusCode::FORBIDDEN,
                        None,
                        format!("forbidden: {} is not allowed here\n", svid.spiffe_id()),
                    );
                }
                tls::jwt_accepted(svid.spiffe_id(), audience, &|event| {
                    jwt_evidence(event, &svid, settings.authorizer.as_ref())
                });
                request
                    .extensions_mut()
                    .insert(PeerIdentity::from_jwt_svid(svid));
                Box::pin(self.inner.call(request))
            }
            Err(error) => {
                tls::jwt_denied(None, audience, error.rule(), &error, &tls::no_evidence);
                refuse(
                    StatusCode::UNAUTHORIZED,
                    Some(format!(
                        "Bearer realm=\"spiffe\", error=\"invalid_token\", error_description=\"JWT-SVID rule: {}\"",
                        error.rule()
                    )),
                    format!(
                        "unauthorized: invalid JWT-SVID ({}): {error}\n",
                        error.rule()
                    ),
                )
            }
        }
    }
}

/// `event` with the token's `jti` and the digest of the policy of `authorizer`.
fn jwt_evidence(
    mut event: crate::audit::AuditEvent,
    svid: &crate::jwt::JwtSvid,
    authorizer: Option<&crate::Authorizer>,
) -> crate::audit::AuditEvent {
    event.jti = svid
        .claims()
        .get("jti")
        .and_then(|jti| jti.as_str())
        .map(str::to_owned);
    event.policy_sha256 = authorizer
        .and_then(crate::Authorizer::policy_sha256)
        .map(|digest| digest.to_string());
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        let token =
            |text: &str| bearer_token(&HeaderValue::from_str(text).unwrap()).map(str::to_owned);
        assert_eq!(token("Bearer a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(token("bearer  a.b.c").as_deref(), Some("a.b.c"));
        assert_eq!(token("Basic dXNlcg=="), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Bearer a b"), None);
    }

    /// With `or_mtls`, a request over mutual TLS without a token passes while the peer's
    /// certificate is valid, and is refused (401, naming the expiry) once it has expired
    /// since the handshake.
    #[cfg(feature = "dev-server")]
    #[tokio::test]
    async fn an_mtls_peer_whose_certificate_expired_needs_a_token() {
        use std::time::{Duration, SystemTime};
        use tower::{Layer, Service, ServiceExt};

        use crate::dev_server::{DevCa, SvidRequest};
        use crate::jwt::{JwtBundleSet, StaticJwtBundles};

        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let peer = |not_after: SystemTime| {
            let request = SvidRequest::new(
                "spiffe://example.org/agent/client".parse().unwrap(),
                Duration::from_secs(600),
            )
            .valid_between(SystemTime::now() - Duration::from_secs(120), not_after);
            PeerIdentity::for_tests(ca.issue(&request).unwrap().chain().to_vec()).unwrap()
        };
        let layer = JwtAuthLayer::new(
            StaticJwtBundles::new(JwtBundleSet::default()),
            "spiffe://example.org/reports",
        )
        .unwrap()
        .or_mtls();
        let mut service = layer.layer(tower::service_fn(|_request: Request<String>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
        }));
        for (not_after, status) in [
            (SystemTime::now() + Duration::from_secs(600), StatusCode::OK),
            (
                SystemTime::now() - Duration::from_secs(60),
                StatusCode::UNAUTHORIZED,
            ),
        ] {
            let mut request = Request::get("/reports").body(String::new()).unwrap();
            request.extensions_mut().insert(peer(not_after));
            let response = service.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.status(), status);
        }
    }
}
