//! A tower layer that puts the verified SPIFFE ID into a request header, for handlers and
//! frameworks that only see headers, after removing whatever the client sent under that name.

use std::task::{Context, Poll};

use http::HeaderMap;
use http::Request;
use http::header::{CONNECTION, HeaderName, HeaderValue, InvalidHeaderName};

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
/// case-insensitive, every occurrence goes, and so do the names that equal it once `_` is read
/// as `-`, such as `x_spiffe_id`, which CGI and WSGI servers hand to the application under the
/// same variable) from each request, and takes the header out of a `Connection` header that
/// names it (so no later proxy strips the verified value as hop-by-hop); then, when the request
/// carries a verified [`PeerIdentity`] extension (as [`serve_http`](super::serve_http)
/// inserts), sets the header to the peer's SPIFFE ID. The handler sees exactly one value, the
/// verified one, or none.
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
        remove_claims(headers, &self.name);
        if let Some(value) = verified {
            headers.insert(self.name.clone(), value);
        }
        self.inner.call(request)
    }
}

/// Removes every header that could reach a handler as `name`: `name` itself, and any name
/// equal to it once `_` is read as `-` (`x_spiffe_id`: CGI and WSGI servers map both to
/// `HTTP_X_SPIFFE_ID`); and drops `name` from the `Connection` header, so that a proxy
/// further on cannot strip the verified value as hop-by-hop.
fn remove_claims(headers: &mut HeaderMap, name: &HeaderName) {
    // Names are stored in lower case, so comparing bytes is case-insensitive.
    let spoofs: Vec<HeaderName> = headers
        .keys()
        .filter(|candidate| same_after_cgi_mapping(candidate.as_str(), name.as_str()))
        .cloned()
        .collect();
    for spoof in &spoofs {
        // `remove` takes every value of the name.
        headers.remove(spoof);
    }
    let named =
        |token: &str| same_after_cgi_mapping(&token.trim().to_ascii_lowercase(), name.as_str());
    let connection: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
    if !connection
        .iter()
        .any(|value| value.to_str().is_ok_and(|v| v.split(',').any(named)))
    {
        return;
    }
    headers.remove(CONNECTION);
    for value in connection {
        let Ok(text) = value.to_str() else {
            // Not text, so it names no header this layer must keep.
            headers.append(CONNECTION, value);
            continue;
        };
        let kept: Vec<&str> = text
            .split(',')
            .filter(|token| !named(token))
            .map(str::trim)
            .collect();
        if kept.iter().any(|token| !token.is_empty())
            && let Ok(kept) = HeaderValue::from_str(&kept.join(", "))
        {
            headers.append(CONNECTION, kept);
        }
    }
}

/// Whether two lower-case header names are equal once each `_` is read as `-`.
fn same_after_cgi_mapping(a: &str, b: &str) -> bool {
    let dash = |byte: &u8| if *byte == b'_' { b'-' } else { *byte };
    a.len() == b.len()
        && a.as_bytes()
            .iter()
            .map(dash)
            .eq(b.as_bytes().iter().map(dash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    async fn seen(layer: &IdentityHeaderLayer, request: Request<()>) -> http::HeaderMap {
        let mut service = layer.layer(tower::service_fn(|request: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(request.headers().clone())
        }));
        service.ready().await.unwrap().call(request).await.unwrap()
    }

    #[tokio::test]
    async fn underscore_and_case_variants_of_the_header_are_removed() {
        let request = Request::get("/")
            .header("X_SPIFFE_ID", "spiffe://evil.org/a")
            .header("x_spiffe-id", "spiffe://evil.org/b")
            .header("X-Spiffe-Id", "spiffe://evil.org/c")
            .header("x-spiffe-idx", "kept")
            .header("x-spiffe", "kept")
            .body(())
            .unwrap();
        let headers = seen(&IdentityHeaderLayer::new(), request).await;
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["x-spiffe", "x-spiffe-idx"]);
        // A configured name with an underscore is matched the same way.
        let layer = IdentityHeaderLayer::new().header_name("x_peer").unwrap();
        let request = Request::get("/")
            .header("x-peer", "spoof")
            .body(())
            .unwrap();
        assert!(seen(&layer, request).await.is_empty());
    }

    #[tokio::test]
    async fn connection_no_longer_names_the_identity_header() {
        let request = Request::get("/")
            .header(CONNECTION, "keep-alive, X_Spiffe_Id ,x-other")
            .header(CONNECTION, "x-spiffe-id")
            .body(())
            .unwrap();
        let headers = seen(&IdentityHeaderLayer::new(), request).await;
        let connection: Vec<&str> = headers
            .get_all(CONNECTION)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(connection, ["keep-alive, x-other"]);
        // Its good twin: a Connection header naming other headers is left as it was.
        let request = Request::get("/")
            .header(CONNECTION, "close")
            .body(())
            .unwrap();
        assert_eq!(
            seen(&IdentityHeaderLayer::new(), request).await[CONNECTION],
            "close"
        );
    }
}
