//! A connection to a Workload API endpoint, its calls answered in this crate's checked types,
//! and requests that carry the required header.

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Streaming};

use super::address::EndpointAddress;
use super::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use super::proto::{X509BundlesRequest, X509svidRequest, X509svidResponse};
use crate::bundle::BundleSet;
#[cfg(feature = "jwt")]
use crate::jwt::{JwtBundle, JwtBundleSet};
use crate::source::{UpdateLimits, X509Context};
#[cfg(feature = "jwt")]
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The gRPC metadata key every Workload API call must carry with the value `true`.
pub const WORKLOAD_HEADER: &str = "workload.spiffe.io";

/// The largest Workload API message the client decodes (tonic's default, made explicit).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why the Workload API could not be reached or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// No connection to the endpoint.
    #[error("cannot connect to the Workload API at {address}: {reason}")]
    Connect {
        /// The endpoint.
        address: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("Workload API error: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The stream ended before the first message.
    #[error("the Workload API closed the stream without an update")]
    StreamEnded,
    /// A message could not be used.
    #[error("invalid Workload API response: {0}")]
    InvalidResponse(String),
}

/// A Workload API client: the calls a workload makes, answered in this crate's types and
/// checked by its rules (every SVID and bundle as strictly as the verifier checks a peer's,
/// within [`UpdateLimits`]).
///
/// Most services want a [`WorkloadApiSource`](crate::source::WorkloadApiSource), which keeps
/// the stream open, reconnects and feeds rustls configs; this is for tools and one-off reads.
/// Cloning it is cheap and shares the connection.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::workload::{EndpointAddress, WorkloadClient};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = WorkloadClient::connect(&EndpointAddress::from_env()?).await?;
/// let context = client.fetch_x509_context().await?;
/// println!("I am {}", context.default_svid().spiffe_id());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WorkloadClient {
    inner: SpiffeWorkloadApiClient<Channel>,
    limits: UpdateLimits,
}

impl WorkloadClient {
    /// Connects to the Workload API at `address`, with the default [`UpdateLimits`].
    ///
    /// # Errors
    /// [`WorkloadError::Connect`] when nothing listens there.
    ///
    /// # Example
    /// See [`WorkloadClient`].
    pub async fn connect(address: &EndpointAddress) -> Result<Self, WorkloadError> {
        let channel = open_channel(address).await?;
        Ok(Self {
            inner: SpiffeWorkloadApiClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            limits: UpdateLimits::default(),
        })
    }

    /// The same client, checking updates against `limits` instead of the defaults.
    ///
    /// # Example
    /// ```no_run
    /// # use spiffe_mtls::{source::UpdateLimits, workload::WorkloadClient};
    /// # async fn run(client: WorkloadClient) {
    /// let limits = UpdateLimits::default().with_max_svids(4);
    /// let client = client.with_limits(limits);
    /// # }
    /// ```
    #[must_use]
    pub fn with_limits(mut self, limits: UpdateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The caller's first X.509 context: its SVIDs and the bundles it trusts.
    ///
    /// # Errors
    /// The server's status, [`WorkloadError::StreamEnded`], or
    /// [`WorkloadError::InvalidResponse`] when an SVID or bundle breaks a rule.
    ///
    /// # Example
    /// See [`WorkloadClient`].
    pub async fn fetch_x509_context(&mut self) -> Result<X509Context, WorkloadError> {
        self.watch_x509_contexts()
            .await?
            .next()
            .await?
            .ok_or(WorkloadError::StreamEnded)
    }

    /// The stream of the caller's X.509 contexts: the current one, then one per rotation.
    ///
    /// # Errors
    /// The server's status when it refuses the call.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(mut client: spiffe_mtls::workload::WorkloadClient) -> Result<(), spiffe_mtls::workload::WorkloadError> {
    /// let mut contexts = client.watch_x509_contexts().await?;
    /// while let Some(context) = contexts.next().await? {
    ///     println!("now {}", context.default_svid().spiffe_id());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn watch_x509_contexts(&mut self) -> Result<X509ContextStream, WorkloadError> {
        let stream = self
            .inner
            .fetch_x509svid(request(X509svidRequest {}))
            .await?
            .into_inner();
        Ok(X509ContextStream {
            stream,
            limits: self.limits,
        })
    }

    /// The bundles the caller trusts (`FetchX509Bundles`'s first answer), for workloads that
    /// verify peers but hold no SVID of their own.
    ///
    /// # Errors
    /// As [`fetch_x509_context`](Self::fetch_x509_context).
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(mut client: spiffe_mtls::workload::WorkloadClient) -> Result<(), spiffe_mtls::workload::WorkloadError> {
    /// let bundles = client.fetch_x509_bundles().await?;
    /// for bundle in bundles.iter() {
    ///     println!("trusts {}", bundle.trust_domain());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fetch_x509_bundles(&mut self) -> Result<BundleSet, WorkloadError> {
        let mut stream = self
            .inner
            .fetch_x509_bundles(request(X509BundlesRequest {}))
            .await?
            .into_inner();
        let response = stream.message().await?.ok_or(WorkloadError::StreamEnded)?;
        crate::source::bundles_from_response(&response, &self.limits)
            .map_err(|e| WorkloadError::InvalidResponse(e.to_string()))
    }

    /// JWT-SVIDs for `audience` (at least one): one per identity of the caller, or the one
    /// `spiffe_id` names. The tokens come from the Workload API, which the caller trusts; they
    /// are not validated here (the receiving side does that).
    ///
    /// # Errors
    /// The server's status (`InvalidArgument` without an audience, `PermissionDenied`
    /// without an identity), or [`WorkloadError::InvalidResponse`] for an answer that names
    /// no valid SPIFFE ID.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(mut client: spiffe_mtls::workload::WorkloadClient) -> Result<(), spiffe_mtls::workload::WorkloadError> {
    /// let svids = client.fetch_jwt_svids(&["spiffe://example.org/reports".into()], None).await?;
    /// let token = svids[0].token();
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub async fn fetch_jwt_svids(
        &mut self,
        audience: &[String],
        spiffe_id: Option<&SpiffeId>,
    ) -> Result<Vec<IssuedJwtSvid>, WorkloadError> {
        let response = self
            .inner
            .fetch_jwtsvid(request(super::proto::JwtsvidRequest {
                audience: audience.to_vec(),
                spiffe_id: spiffe_id.map(ToString::to_string).unwrap_or_default(),
            }))
            .await?
            .into_inner();
        if response.svids.len() > self.limits.max_svids {
            return Err(WorkloadError::InvalidResponse(format!(
                "{} JWT-SVIDs, over the limit of {}",
                response.svids.len(),
                self.limits.max_svids
            )));
        }
        response
            .svids
            .into_iter()
            .map(|svid| {
                let id = svid.spiffe_id.parse().map_err(|e| {
                    WorkloadError::InvalidResponse(format!(
                        "JWT-SVID for {:?}: {e}",
                        svid.spiffe_id
                    ))
                })?;
                Ok(IssuedJwtSvid {
                    spiffe_id: id,
                    token: svid.svid,
                    hint: (!svid.hint.is_empty()).then_some(svid.hint),
                })
            })
            .collect()
    }

    /// The JWT bundles the caller trusts (`FetchJWTBundles`'s first answer): the local and
    /// federated trust domains' JWT-SVID keys.
    ///
    /// # Errors
    /// The server's status, [`WorkloadError::StreamEnded`], or
    /// [`WorkloadError::InvalidResponse`] for a bundle that is not a usable JWKS.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(mut client: spiffe_mtls::workload::WorkloadClient) -> Result<(), spiffe_mtls::workload::WorkloadError> {
    /// let bundles = client.fetch_jwt_bundles().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub async fn fetch_jwt_bundles(&mut self) -> Result<JwtBundleSet, WorkloadError> {
        let mut stream = self
            .inner
            .fetch_jwt_bundles(request(super::proto::JwtBundlesRequest {}))
            .await?
            .into_inner();
        let response = stream.message().await?.ok_or(WorkloadError::StreamEnded)?;
        if response.bundles.len() > self.limits.max_bundles {
            return Err(WorkloadError::InvalidResponse(format!(
                "{} JWT bundles, over the limit of {}",
                response.bundles.len(),
                self.limits.max_bundles
            )));
        }
        let mut bundles = JwtBundleSet::new();
        for (key, jwks) in &response.bundles {
            let name = key.strip_prefix("spiffe://").unwrap_or(key);
            let invalid = |reason: String| {
                WorkloadError::InvalidResponse(format!("JWT bundle {key:?}: {reason}"))
            };
            let trust_domain: TrustDomain = name.parse().map_err(|e| invalid(format!("{e}")))?;
            let bundle =
                JwtBundle::parse(trust_domain, jwks).map_err(|e| invalid(e.to_string()))?;
            bundles.insert(bundle);
        }
        Ok(bundles)
    }

    /// The generated gRPC client on the same connection, for calls this type does not offer.
    /// Each request must carry the `workload.spiffe.io` header: build it with [`request`].
    ///
    /// # Example
    /// ```no_run
    /// use spiffe_mtls::workload::{proto::X509svidRequest, request, WorkloadClient};
    /// # async fn run(client: WorkloadClient) -> Result<(), tonic::Status> {
    /// let mut raw = client.into_raw();
    /// let mut stream = raw.fetch_x509svid(request(X509svidRequest {})).await?.into_inner();
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_raw(self) -> SpiffeWorkloadApiClient<Channel> {
        self.inner
    }
}

/// A JWT-SVID as the Workload API issued it: [`WorkloadClient::fetch_jwt_svids`].
///
/// Its `Debug` output shows the SPIFFE ID and hint, never the token.
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedJwtSvid {
    spiffe_id: SpiffeId,
    token: String,
    hint: Option<String>,
}

#[cfg(feature = "jwt")]
impl std::fmt::Debug for IssuedJwtSvid {
    /// Never shows the token (a bearer credential).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedJwtSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("hint", &self.hint)
            .field("token", &format_args!("<redacted>"))
            .finish()
    }
}

#[cfg(feature = "jwt")]
impl IssuedJwtSvid {
    /// The identity it was issued for.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The token, to send as `Authorization: Bearer <token>`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The entry's hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// The X.509 contexts of a [`WorkloadClient::watch_x509_contexts`] call, each checked.
#[derive(Debug)]
pub struct X509ContextStream {
    stream: Streaming<X509svidResponse>,
    limits: UpdateLimits,
}

impl X509ContextStream {
    /// The next context; `None` when the server ended the stream.
    ///
    /// # Errors
    /// The server's status, or [`WorkloadError::InvalidResponse`] for an update that breaks a
    /// rule (the stream can still be read after it).
    ///
    /// # Example
    /// See [`WorkloadClient::watch_x509_contexts`].
    pub async fn next(&mut self) -> Result<Option<X509Context>, WorkloadError> {
        match self.stream.message().await? {
            Some(response) => X509Context::from_response(response, &self.limits)
                .map(Some)
                .map_err(|e| WorkloadError::InvalidResponse(e.to_string())),
            None => Ok(None),
        }
    }
}

/// A channel to the endpoint: TCP, or a Unix socket where the platform has them.
async fn open_channel(address: &EndpointAddress) -> Result<Channel, WorkloadError> {
    let fail = |e: &dyn std::fmt::Display| WorkloadError::Connect {
        address: address.to_string(),
        reason: e.to_string(),
    };
    match address {
        EndpointAddress::Tcp(addr) => Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| fail(&e))?
            .connect()
            .await
            .map_err(|e| fail(&source_chain(&e))),
        #[cfg(unix)]
        EndpointAddress::Unix(path) => {
            let path = path.clone();
            // The URI is not used: the connector dials the socket.
            Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(|e| fail(&source_chain(&e)))
        }
        #[cfg(not(unix))]
        EndpointAddress::Unix(_) => Err(fail(&"Unix domain sockets need a Unix platform")),
    }
}

/// A request with the `workload.spiffe.io: true` metadata.
pub fn request<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        WORKLOAD_HEADER,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    request
}

/// An error and its sources, one line.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
