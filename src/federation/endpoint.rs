//! The serving side: a SPIFFE bundle endpoint publishing the local trust domain's bundle.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::BundleDocument;
use crate::jwt::JwtBundleSource;
use crate::source::X509Source;

/// The refresh hint published unless [`BundleEndpoint::refresh_hint`] says otherwise.
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);

/// A SPIFFE bundle endpoint: the current bundle of the local trust domain (the trust domain
/// of the source's default SVID) as a SPIFFE bundle document, its X.509 roots and, with
/// [`jwt_bundles`](Self::jwt_bundles), its JWT-SVID keys.
///
/// `spiffe_sequence` changes with the bundle: it starts at the Unix time the endpoint first
/// serves, and each change takes the next number, or the Unix time if that is larger, so it
/// keeps increasing across restarts (unless the bundle changes more than once a second on
/// average). `spiffe_refresh_hint` is [`DEFAULT_REFRESH_HINT`] unless set.
///
/// Serve [`router`](Self::router) over TLS: with the workload's SVID for the `https_spiffe`
/// profile ([`tls::tls_server_config`](crate::tls::tls_server_config)), or with a web PKI
/// certificate for `https_web`; clients present no certificate
/// ([`HttpServer::allow_anonymous_clients`](crate::net::HttpServer::allow_anonymous_clients)).
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use spiffe_mtls::federation::BundleEndpoint;
/// use spiffe_mtls::jwt::JwtSource;
/// use spiffe_mtls::source::WorkloadApiSource;
/// use spiffe_mtls::{net, tls};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Arc::new(WorkloadApiSource::builder().build().await?);
/// let jwt = JwtSource::connect(spiffe_mtls::workload::EndpointAddress::from_env()?).await?;
/// let endpoint = BundleEndpoint::new(Arc::clone(&source)).jwt_bundles(jwt);
/// let config = tls::tls_server_config(source).build()?; // https_spiffe
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// net::HttpServer::new(listener, Arc::new(config))
///     .allow_anonymous_clients()
///     .serve(endpoint.router())
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct BundleEndpoint {
    x509: Arc<dyn X509Source>,
    jwt: Option<Arc<dyn JwtBundleSource>>,
    refresh_hint: Duration,
    served: Mutex<Served>,
}

/// The last document served, without its sequence, and its sequence.
#[derive(Default)]
struct Served {
    keys: Option<Value>,
    sequence: u64,
}

/// Why no bundle can be served now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The X.509 source has no usable context.
    #[error("no X.509 bundle to serve: {0}")]
    X509(String),
    /// The JWT bundle source failed.
    #[error("no JWT bundle to serve: {0}")]
    Jwt(String),
}

impl std::fmt::Debug for BundleEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleEndpoint")
            .field("x509", &self.x509)
            .field("jwt", &self.jwt.is_some())
            .field("refresh_hint", &self.refresh_hint)
            .finish_non_exhaustive()
    }
}

impl BundleEndpoint {
    /// An endpoint serving the X.509 roots of `x509`'s local trust domain.
    ///
    /// # Example
    /// See [`BundleEndpoint`].
    pub fn new(x509: impl X509Source + 'static) -> Self {
        Self {
            x509: Arc::new(x509),
            jwt: None,
            refresh_hint: DEFAULT_REFRESH_HINT,
            served: Mutex::new(Served::default()),
        }
    }

    /// Serves the local trust domain's JWT-SVID keys from `source` too.
    #[must_use]
    pub fn jwt_bundles(mut self, source: impl JwtBundleSource + 'static) -> Self {
        self.jwt = Some(Arc::new(source));
        self
    }

    /// The `spiffe_refresh_hint` published (whole seconds, at least one).
    #[must_use]
    pub fn refresh_hint(mut self, hint: Duration) -> Self {
        self.refresh_hint = hint.max(Duration::from_secs(1));
        self
    }

    /// The document served now.
    ///
    /// # Errors
    /// [`EndpointError`] when a source has nothing to serve (an expired SVID, a closed
    /// source).
    pub fn document(&self) -> Result<BundleDocument, EndpointError> {
        let context = self
            .x509
            .x509_context()
            .map_err(|e| EndpointError::X509(e.to_string()))?;
        let trust_domain = context.default_svid().spiffe_id().trust_domain().clone();
        let x509 = context
            .bundles()
            .get(&trust_domain)
            .cloned()
            .ok_or_else(|| EndpointError::X509(format!("no bundle of {trust_domain}")))?;
        let jwt = match &self.jwt {
            None => None,
            Some(source) => source
                .jwt_bundles()
                .map_err(|e| EndpointError::Jwt(e.to_string()))?
                .get(&trust_domain)
                .cloned(),
        };
        let mut document = BundleDocument {
            x509,
            jwt,
            sequence: None,
            refresh_hint: Some(self.refresh_hint),
        };
        let keys = document.to_json().get("keys").cloned();
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if served.keys != keys {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            served.sequence = (served.sequence + 1).max(now);
            served.keys = keys;
        }
        document.sequence = Some(served.sequence);
        Ok(document)
    }

    /// The router: `GET /` answers the current document (`application/json`), or 503 with
    /// the reason when there is none.
    ///
    /// # Example
    /// See [`BundleEndpoint`].
    pub fn router(self) -> Router {
        let endpoint = Arc::new(self);
        Router::new().route(
            "/",
            get(move || {
                let endpoint = Arc::clone(&endpoint);
                async move { endpoint.respond() }
            }),
        )
    }

    fn respond(&self) -> Response {
        match self.document() {
            Ok(document) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                document.to_json().to_string(),
            )
                .into_response(),
            Err(error) => {
                tracing::warn!(%error, "the bundle endpoint has nothing to serve");
                (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response()
            }
        }
    }
}
