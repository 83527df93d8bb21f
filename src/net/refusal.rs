//! The responses of the route layers' refusals, and what they decided, for whoever answers
//! or logs after them.

use http::header::{CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use http::{Response, StatusCode};

/// What a refusal of [`RoutePolicyLayer`](super::RoutePolicyLayer) or
/// [`CanonicalPathLayer`](super::CanonicalPathLayer) decided, in the extensions of its
/// response (`403` or `400`): a proxy or a logging layer in front reads it to write its own
/// audit record without parsing the body.
///
/// # Example
/// ```
/// use tower::{Layer, Service, ServiceExt};
/// use spiffe_mtls::net::{CanonicalPathLayer, RouteRefusal};
///
/// # tokio_test_block_on(async {
/// let mut service = CanonicalPathLayer::new().layer(tower::service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// }));
/// let request = http::Request::get("/a%2Fb").body(()).unwrap();
/// let response = service.ready().await.unwrap().call(request).await.unwrap();
/// let refusal = response.extensions().get::<RouteRefusal>().unwrap();
/// assert_eq!(refusal.route(), None);
/// assert_eq!(refusal.path(), "/a%2Fb");
/// assert_eq!(refusal.rule(), "canonical path");
/// assert_eq!(refusal.reason(), "the path has an encoded separator \"%2F\"");
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRefusal {
    pub(crate) route: Option<String>,
    pub(crate) path: String,
    pub(crate) rule: String,
    pub(crate) reason: String,
}

impl RouteRefusal {
    /// The route that was decided; `None` when the path had no canonical form, so no route
    /// could be chosen.
    ///
    /// # Example
    /// See [`RouteRefusal`].
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// The request's path: the canonical one when a route was decided, else as received.
    ///
    /// # Example
    /// See [`RouteRefusal`].
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The rule that refused: the route's rule, or `canonical path`.
    ///
    /// # Example
    /// See [`RouteRefusal`].
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Why the rule refused.
    ///
    /// # Example
    /// See [`RouteRefusal`].
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A `text/plain` refusal with `status` and `body`, carrying `refusal` in its extensions.
pub(crate) fn refusal_response<B: From<String>>(
    status: StatusCode,
    body: String,
    refusal: RouteRefusal,
) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response.extensions_mut().insert(refusal);
    response
}
