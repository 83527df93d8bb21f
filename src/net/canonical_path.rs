//! One canonical request path ([`canonical_path`]), decided on and forwarded alike: the
//! request rewritten to it, or refused with `400` (see the function for the rules and why).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};

use super::refusal::{RouteRefusal, refusal_response};
pub use crate::authorize::{PathError, canonical_path};
use crate::tls::{self, PeerIdentity};

/// Rewrites `request`'s target to its canonical path (the query as received); the refusal
/// when the path has no canonical form.
pub(crate) fn canonicalize_request<B>(request: &mut Request<B>) -> Result<(), PathError> {
    let path = request.uri().path();
    let canonical = match canonical_path(path)? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(canonical) => canonical,
    };
    let target = match request.uri().query() {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    // The canonical path holds only bytes the received one held, or unreserved characters:
    // it parses wherever the original did.
    let path_and_query = PathAndQuery::try_from(target).map_err(|_| PathError::BadPercent)?;
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.path_and_query = Some(path_and_query);
    *request.uri_mut() = Uri::from_parts(parts).map_err(|_| PathError::BadPercent)?;
    Ok(())
}

/// The `400 Bad Request` for a path with no canonical form, after its audit event.
pub(crate) fn refuse_path<B, ReqBody>(request: &Request<ReqBody>, error: &PathError) -> Response<B>
where
    B: From<String>,
{
    let peer = request.extensions().get::<PeerIdentity>();
    let path = request.uri().path();
    let shown = format!("{path:?}");
    tls::route_denied(
        peer.map(PeerIdentity::spiffe_id),
        &shown,
        &"canonical path",
        error,
        &|event| tls::request_evidence(event, request.method().as_str(), peer, None),
    );
    let refusal = RouteRefusal {
        route: None,
        path: path.to_owned(),
        rule: "canonical path".to_owned(),
        reason: error.to_string(),
    };
    let body = format!("bad request: path {shown} refused: {error}\n");
    refusal_response(StatusCode::BAD_REQUEST, body, refusal)
}

/// Gives every request one canonical path ([`canonical_path`]) before the inner service sees
/// it, and answers `400 Bad Request` (`text/plain`, naming the rule) to a path that has none,
/// with an audit event (`decision=denied`, `rule="canonical path"`) and a
/// [`RouteRefusal`](super::RouteRefusal) in the response's extensions.
///
/// [`RoutePolicyLayer`](super::RoutePolicyLayer) does the same itself; this layer is for a
/// service that decides on paths in other ways (its own router, a file server, a proxy).
///
/// # Example
/// ```
/// use axum::{Router, routing::get};
/// use spiffe_mtls::net::CanonicalPathLayer;
///
/// let app: Router = Router::new()
///     .route("/files/{name}", get(|| async { "file\n" }))
///     .layer(CanonicalPathLayer::new());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CanonicalPathLayer;

impl CanonicalPathLayer {
    /// The layer.
    ///
    /// # Example
    /// See [`CanonicalPathLayer`].
    pub fn new() -> Self {
        Self
    }
}

impl<S> tower::Layer<S> for CanonicalPathLayer {
    type Service = CanonicalPath<S>;

    fn layer(&self, inner: S) -> CanonicalPath<S> {
        CanonicalPath { inner }
    }
}

/// The service of [`CanonicalPathLayer`].
///
/// # Example
/// ```
/// use tower::Layer;
/// use spiffe_mtls::net::{CanonicalPath, CanonicalPathLayer};
///
/// let service: CanonicalPath<_> = CanonicalPathLayer::new()
///     .layer(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// ```
#[derive(Debug, Clone)]
pub struct CanonicalPath<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for CanonicalPath<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match canonicalize_request(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(error) => Box::pin(std::future::ready(Ok(refuse_path(&request, &error)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_target_is_rewritten_with_its_query() {
        let mut request = Request::get("http://h/%61dmin/x?a=%2F&b").body(()).unwrap();
        canonicalize_request(&mut request).unwrap();
        assert_eq!(request.uri().to_string(), "http://h/admin/x?a=%2F&b");
        let mut request = Request::get("/%7e/caf%c3%a9").body(()).unwrap();
        canonicalize_request(&mut request).unwrap();
        assert_eq!(request.uri().to_string(), "/~/caf%C3%A9");
        let mut request = Request::get("/admin%2fx?q").body(()).unwrap();
        assert_eq!(
            canonicalize_request(&mut request),
            Err(PathError::EncodedSeparator("%2f".into()))
        );
    }
}
