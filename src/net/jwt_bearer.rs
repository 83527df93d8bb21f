//! The client side of bearer JWT-SVIDs: attach a fresh token for the target's audience to
//! every request (a tower layer for hyper-util's client and any HTTP service; a helper for
//! reqwest).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};

use crate::jwt::{JwtSource, JwtSourceError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower layer that sets `Authorization: Bearer <JWT-SVID>` on every request, the token
/// fetched from a [`JwtSource`] for `audience` (cached by the source until half its lifetime,
/// never sent expired). A request that already has an `Authorization` header is left alone.
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use spiffe_mtls::jwt::JwtSource;
/// use spiffe_mtls::net::JwtBearerLayer;
/// use spiffe_mtls::workload::EndpointAddress;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Arc::new(JwtSource::connect(EndpointAddress::from_env()?).await?);
/// let client = Client::builder(TokioExecutor::new()).build_http::<String>();
/// let client = tower::ServiceBuilder::new()
///     .layer(JwtBearerLayer::new(source, ["spiffe://example.org/reports"]))
///     .service(client);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct JwtBearerLayer {
    source: Arc<JwtSource>,
    audience: Arc<[String]>,
}

impl JwtBearerLayer {
    /// Tokens from `source` for `audience` (at least one).
    pub fn new(
        source: Arc<JwtSource>,
        audience: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            source,
            audience: audience.into_iter().map(Into::into).collect(),
        }
    }
}

impl<S> tower::Layer<S> for JwtBearerLayer {
    type Service = JwtBearer<S>;

    fn layer(&self, inner: S) -> JwtBearer<S> {
        JwtBearer {
            inner,
            source: Arc::clone(&self.source),
            audience: Arc::clone(&self.audience),
        }
    }
}

/// The service of [`JwtBearerLayer`]. Its errors are the inner service's, or the
/// [`JwtSourceError`] that left the request without a token (it is then not sent).
#[derive(Debug, Clone)]
pub struct JwtBearer<S> {
    inner: S,
    source: Arc<JwtSource>,
    audience: Arc<[String]>,
}

/// `Bearer <token>` as a header value, marked sensitive: `Debug` of the headers shows
/// `Sensitive` instead, and HTTP/2 never puts it in the HPACK table.
fn bearer(token: &str) -> Result<HeaderValue, JwtSourceError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| JwtSourceError::Invalid("the token is not a header value".to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}

impl<S, B> tower::Service<Request<B>> for JwtBearer<S>
where
    S: tower::Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was made ready goes with this call; the fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = Arc::clone(&self.source);
        let audience = Arc::clone(&self.audience);
        Box::pin(async move {
            if !request.headers().contains_key(AUTHORIZATION) {
                let svid = source.fetch_svid(&audience).await?;
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, bearer(svid.token())?);
            }
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// `request` with `Authorization: Bearer <JWT-SVID>` for `audience`, from `source`: the
/// reqwest counterpart of [`JwtBearerLayer`].
///
/// # Errors
/// Why the source has no valid token (the request is then not to be sent).
///
/// # Example
/// ```no_run
/// # async fn run(client: reqwest::Client, source: spiffe_mtls::jwt::JwtSource) -> Result<(), Box<dyn std::error::Error>> {
/// let request = client.get("https://reports.example.org/daily");
/// let audience = ["spiffe://example.org/reports".to_owned()];
/// let response = spiffe_mtls::net::reqwest_bearer(request, &source, &audience).await?.send().await?;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub async fn reqwest_bearer(
    request: reqwest::RequestBuilder,
    source: &JwtSource,
    audience: &[String],
) -> Result<reqwest::RequestBuilder, JwtSourceError> {
    let svid = source.fetch_svid(audience).await?;
    Ok(request.header(AUTHORIZATION, bearer(svid.token())?))
}
