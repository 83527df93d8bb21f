//! A tower layer that puts the verified SPIFFE ID into a request header, for handlers and
//! frameworks that only see headers, after removing whatever the client sent under that name.

use std::task::{Context, Poll};

use http::Request;
use http::header::{HeaderName, HeaderValue, InvalidHeaderName};

use crate::tls::PeerIdentity;

/// The header [`IdentityHeaderLayer`] sets by default.
///
/// # Example
/// ```
/// use spiffe_mtls::net::{IdentityHeaderLayer, SPIFFE_ID_HEADER};
/// assert_eq!(IdentityHeaderLayer::new().name().as_str(), SPIFFE_ID_HEADER);
/// ```
pub const SPIFFE_ID_HEADER: &str = "x-spiffe-id";

/// Removes every client-supplied value of a header (`x-spiffe-id` by default; names are
/// case-insensitive, every occurrence goes) from each request, then, when the request carries
/// a verified [`PeerIdentity`] extension (as [`serve_http`](super::serve_http) inserts), sets
/// the header to the peer's SPIFFE ID.
///
/// A header that claims an identity is only as good as whoever set it: with this layer in
/// front, the handler's header is the handshake's verdict or absent, never the client's word.
///
/// # Example
/// ```
/// use axum::{Router, http::HeaderMap, routing::get};
/// use spiffe_mtls::net::IdentityHeaderLayer;
///
/// async fn who(headers: HeaderMap) -> String {
///     match headers.get("x-spiffe-id") {
///         Some(id) => format!("hello {}\n", id.to_str().unwrap_or("?")),
///         None => "who are you?\n".to_owned(),
///     }
/// }
/// let app: Router = Router::new()
///     .route("/", get(who))
///     .layer(IdentityHeaderLayer::new().header_name("x-peer-id")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct IdentityHeaderLayer {
    name: HeaderName,
}

impl IdentityHeaderLayer {
    /// The layer with the header `x-spiffe-id`.
    ///
    /// # Example
    /// See [`IdentityHeaderLayer`].
    pub fn new() -> Self {
        Self {
            name: HeaderName::from_static(SPIFFE_ID_HEADER),
        }
    }

    /// Uses the header `name` (any case) instead.
    ///
    /// # Errors
    /// [`InvalidHeaderName`] when `name` is not a valid header name.
    ///
    /// # Example
    /// ```
    /// let layer = spiffe_mtls::net::IdentityHeaderLayer::new().header_name("X-Client-Id")?;
    /// assert_eq!(layer.name().as_str(), "x-client-id");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header_name(self, name: &str) -> Result<Self, InvalidHeaderName> {
        Ok(Self {
            name: HeaderName::from_bytes(name.as_bytes())?,
        })
    }

    /// The header the layer sets.
    ///
    /// # Example
    /// ```
    /// let layer = spiffe_mtls::net::IdentityHeaderLayer::new();
    /// assert_eq!(layer.name().as_str(), "x-spiffe-id");
    /// ```
    pub fn name(&self) -> &HeaderName {
        &self.name
    }
}

impl Default for IdentityHeaderLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for IdentityHeaderLayer {
    type Service = IdentityHeader<S>;

    fn layer(&self, inner: S) -> IdentityHeader<S> {
        IdentityHeader {
            inner,
            name: self.name.clone(),
        }
    }
}

/// The service of [`IdentityHeaderLayer`].
///
/// # Example
/// ```
/// use tower::Layer;
/// use spiffe_mtls::net::{IdentityHeader, IdentityHeaderLayer};
///
/// let service: IdentityHeader<_> = IdentityHeaderLayer::new()
///     .layer(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     }));
/// ```
#[derive(Debug, Clone)]
pub struct IdentityHeader<S> {
    inner: S,
    name: HeaderName,
}

impl<S, B> tower::Service<Request<B>> for IdentityHeader<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let verified = request
            .extensions()
            .get::<PeerIdentity>()
            .and_then(|peer| HeaderValue::try_from(peer.spiffe_id().to_string()).ok());
        let headers = request.headers_mut();
        // `remove` takes every value of the name; names are stored in lower case.
        headers.remove(&self.name);
        if let Some(value) = verified {
            headers.insert(self.name.clone(), value);
        }
        self.inner.call(request)
    }
}
