//! The fetching side: a bundle endpoint's document over HTTPS, authenticated by one of the
//! federation spec's two endpoint profiles, and a watch that fetches again as the document's
//! refresh hint asks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::sync::watch;

use super::{
    BundleDocument, DocumentError, MAX_DOCUMENT_BYTES, MAX_REFRESH_HINT, MIN_REFRESH_HINT,
};
use crate::bundle::{BundleSet, X509Bundle};
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::verify::SvidVerifier;

/// How long one fetch may take in all.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a document without a refresh hint is fetched again.
pub const DEFAULT_REFETCH: Duration = Duration::from_secs(300);

/// How a bundle endpoint's server is authenticated (SPIFFE Federation, section 5).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EndpointProfile {
    /// `https_web`: a certificate for the URL's host name, verified against these web PKI
    /// roots (give the system's, or a private CA's).
    HttpsWeb {
        /// The roots the endpoint's certificate chains to.
        roots: Vec<CertificateDer<'static>>,
    },
    /// `https_spiffe`: the endpoint presents an X.509-SVID of `endpoint_id`, verified against
    /// `bundle`, the bundle of the endpoint's trust domain. When that is the trust domain
    /// fetched (the usual case), `bundle` is the bootstrap bundle, and each fetched document
    /// replaces it for the next fetch.
    HttpsSpiffe {
        /// The endpoint server's SPIFFE ID.
        endpoint_id: SpiffeId,
        /// The bundle its SVID verifies against.
        bundle: X509Bundle,
    },
    /// `https_spiffe` bootstrapped from a root's SHA-256 instead of a bundle file: the first
    /// document is taken only if it holds a root with this digest and the endpoint's SVID
    /// (of exactly `endpoint_id`, with the key it proved in the handshake) verifies against
    /// that root; from then on the client is [`HttpsSpiffe`](Self::HttpsSpiffe) with the
    /// document's roots. For a trust domain whose endpoint serves its own bundle.
    HttpsSpiffePinned {
        /// The endpoint server's SPIFFE ID.
        endpoint_id: SpiffeId,
        /// The SHA-256 of one of the trust domain's roots (DER), as its operator published it.
        root_sha256: [u8; 32],
    },
}

/// Why a bundle could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No rustls crypto provider.
    #[error("no rustls crypto provider: enable the ring or aws-lc-rs feature, or install one")]
    NoCryptoProvider,
    /// The HTTPS client could not be built.
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
    /// The connection, the handshake (an endpoint not authenticated by its profile) or the
    /// exchange failed.
    #[error("cannot fetch the bundle of {trust_domain} from {url}: {reason}")]
    Fetch {
        /// The trust domain fetched.
        trust_domain: TrustDomain,
        /// The endpoint's URL.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// The document is not a valid bundle document.
    #[error("the bundle of {trust_domain} from {url} is invalid: {error}")]
    Document {
        /// The trust domain fetched.
        trust_domain: TrustDomain,
        /// The endpoint's URL.
        url: String,
        /// What is wrong.
        error: DocumentError,
    },
}

/// A client of one trust domain's bundle endpoint.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::federation::{BundleEndpointClient, EndpointProfile};
///
/// # async fn run(bootstrap: spiffe_mtls::X509Bundle) -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = BundleEndpointClient::new(
///     "https://partner.example:8443/",
///     "partner.example".parse()?,
///     EndpointProfile::HttpsSpiffe {
///         endpoint_id: "spiffe://partner.example/spire/server".parse()?,
///         bundle: bootstrap,
///     },
/// );
/// let document = client.fetch().await?;
/// println!("{} roots, sequence {:?}", document.x509.roots().len(), document.sequence);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BundleEndpointClient {
    url: String,
    trust_domain: TrustDomain,
    profile: EndpointProfile,
    last_sequence: Option<u64>,
    /// The keys of the last document taken (a document with its sequence must hold them).
    last_keys: Option<serde_json::Value>,
}

impl BundleEndpointClient {
    /// A client fetching `trust_domain`'s bundle from `url` (`https://`), authenticating the
    /// endpoint by `profile`.
    pub fn new(
        url: impl Into<String>,
        trust_domain: TrustDomain,
        profile: EndpointProfile,
    ) -> Self {
        Self {
            url: url.into(),
            trust_domain,
            profile,
            last_sequence: None,
            last_keys: None,
        }
    }

    /// The trust domain fetched.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Fetches the document once. With `https_spiffe` for the trust domain fetched, the
    /// document's roots authenticate the endpoint from then on.
    ///
    /// A document is refused (and nothing of it used) when it has no X.509 root, a root that
    /// names another trust domain, or, once a document with a `spiffe_sequence` was taken, a
    /// lower sequence or none (an older copy: a rollback), or the same sequence with other
    /// keys (a forked copy).
    ///
    /// # Errors
    /// [`FetchError`]: the endpoint could not be reached or authenticated, answered other than
    /// 200, or sent a document that is invalid, refused as above, or larger than
    /// [`MAX_DOCUMENT_BYTES`].
    pub async fn fetch(&mut self) -> Result<BundleDocument, FetchError> {
        let fetch_error = |reason: String| FetchError::Fetch {
            trust_domain: self.trust_domain.clone(),
            url: self.url.clone(),
            reason,
        };
        let (config, recorded) = self.tls_config()?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        let mut response = http.get(&self.url).send().await.map_err(|e| {
            let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), chain);
            fetch_error(cause)
        })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(fetch_error(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_error(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(self.document_error(DocumentError::TooLarge));
            }
            body.extend_from_slice(&chunk);
        }
        let document = BundleDocument::parse(self.trust_domain.clone(), &body)
            .map_err(|error| self.document_error(error))?;
        // Checked before anything of it is used, the endpoint's bundle included.
        if document.x509.is_empty() {
            return Err(self.document_error(DocumentError::NoRoots));
        }
        document
            .x509
            .check_root_names()
            .map_err(|error| self.document_error(DocumentError::X509(error)))?;
        if let Some(last) = self.last_sequence
            && document.sequence.is_none_or(|got| got < last)
        {
            return Err(self.document_error(DocumentError::Older {
                last,
                got: document.sequence,
            }));
        }
        let keys = document.to_json().get("keys").cloned();
        if document.sequence.is_some()
            && document.sequence == self.last_sequence
            && keys != self.last_keys
        {
            return Err(self.document_error(DocumentError::Conflicting {
                sequence: document.sequence.unwrap_or_default(),
            }));
        }
        if let (
            Some(presented),
            EndpointProfile::HttpsSpiffePinned {
                endpoint_id,
                root_sha256,
            },
        ) = (&recorded, &self.profile)
        {
            let chain = presented.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let bundle = pinned_bootstrap(&document, &chain, endpoint_id, root_sha256)
                .map_err(fetch_error)?;
            self.profile = EndpointProfile::HttpsSpiffe {
                endpoint_id: endpoint_id.clone(),
                bundle,
            };
        }
        if let EndpointProfile::HttpsSpiffe {
            endpoint_id,
            bundle,
        } = &mut self.profile
            && endpoint_id.trust_domain() == &self.trust_domain
        {
            *bundle = document.x509.clone();
        }
        self.last_sequence = document.sequence.or(self.last_sequence);
        self.last_keys = keys;
        Ok(document)
    }

    fn document_error(&self, error: DocumentError) -> FetchError {
        FetchError::Document {
            trust_domain: self.trust_domain.clone(),
            url: self.url.clone(),
            error,
        }
    }

    /// The rustls config of the profile, and (for a pinned bootstrap) where the chain the
    /// server presents is recorded.
    fn tls_config(&self) -> Result<(ClientConfig, Option<Recorded>), FetchError> {
        let provider = crate::crypto::default_provider().ok_or(FetchError::NoCryptoProvider)?;
        let mut recorded = None;
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        let mut config = match &self.profile {
            EndpointProfile::HttpsWeb { roots } => {
                let mut store = RootCertStore::empty();
                for root in roots {
                    store
                        .add(root.clone())
                        .map_err(|e| FetchError::Client(format!("a web root: {e}")))?;
                }
                builder.with_root_certificates(store).with_no_client_auth()
            }
            EndpointProfile::HttpsSpiffe {
                endpoint_id,
                bundle,
            } => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EndpointVerifier {
                    check: ChainCheck::Svid {
                        endpoint_id: endpoint_id.clone(),
                        bundles: [bundle.clone()].into_iter().collect(),
                    },
                    provider,
                }))
                .with_no_client_auth(),
            EndpointProfile::HttpsSpiffePinned { .. } => {
                let presented = Recorded::default();
                recorded = Some(Arc::clone(&presented));
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(EndpointVerifier {
                        check: ChainCheck::Record(presented),
                        provider,
                    }))
                    .with_no_client_auth()
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok((config, recorded))
    }
}

/// An error and its causes, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    for _ in 0..8 {
        let Some(cause) = source else { break };
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The chain a server presented, recorded in a pinned bootstrap's first handshake.
type Recorded = Arc<std::sync::Mutex<Vec<CertificateDer<'static>>>>;

/// The first document of a pinned bootstrap, checked: it holds the pinned root, and the
/// chain the server presented is an X.509-SVID of `endpoint_id` valid now against that root
/// alone. The document's roots, to authenticate the endpoint from then on.
fn pinned_bootstrap(
    document: &BundleDocument,
    chain: &[CertificateDer<'static>],
    endpoint_id: &SpiffeId,
    root_sha256: &[u8; 32],
) -> Result<X509Bundle, String> {
    let provider = crate::crypto::default_provider().ok_or("no rustls crypto provider")?;
    let pinned = document
        .x509
        .roots()
        .find(|root| {
            crate::crypto::sha256(root)
                .as_ref()
                .is_some_and(|d| d == root_sha256)
        })
        .cloned()
        .ok_or("the document holds no root with the pinned SHA-256")?;
    let anchor =
        X509Bundle::new(document.trust_domain().clone(), [pinned]).map_err(|e| e.to_string())?;
    let now = UnixTime::since_unix_epoch(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let verified = SvidVerifier::with_provider(&provider)
        .verify(chain, &[anchor].into_iter().collect(), now)
        .map_err(|e| format!("the bundle endpoint's SVID against the pinned root: {e}"))?;
    if verified.spiffe_id() != endpoint_id {
        return Err(format!(
            "the bundle endpoint is {}, expected {endpoint_id}",
            verified.spiffe_id()
        ));
    }
    Ok(document.x509.clone())
}

/// How the endpoint's chain is checked in the handshake.
#[derive(Debug)]
enum ChainCheck {
    /// `https_spiffe`: an X.509-SVID of exactly this ID, verified against these bundles by
    /// this crate's verifier (the web PKI's rules, host names included, do not apply to
    /// SVIDs).
    Svid {
        endpoint_id: SpiffeId,
        bundles: BundleSet,
    },
    /// The first fetch of a pinned bootstrap: the chain is recorded, to be verified once the
    /// document (which holds the pinned root) has arrived; nothing in the document is used
    /// before that ([`pinned_bootstrap`]).
    Record(Recorded),
}

/// The server verifier of the `https_spiffe` profiles. Either way the server's handshake
/// signature is verified with the leaf's key: it proved it holds the key of the chain
/// checked (or recorded).
#[derive(Debug)]
struct EndpointVerifier {
    check: ChainCheck,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        match &self.check {
            ChainCheck::Record(presented) => {
                *presented.lock().unwrap_or_else(|e| e.into_inner()) = chain;
            }
            ChainCheck::Svid {
                endpoint_id,
                bundles,
            } => {
                let verified = SvidVerifier::with_provider(&self.provider)
                    .verify(&chain, bundles, now)
                    .map_err(|e| {
                        rustls::Error::General(format!("the bundle endpoint's SVID: {e}"))
                    })?;
                if verified.spiffe_id() != endpoint_id {
                    return Err(rustls::Error::General(format!(
                        "the bundle endpoint is {}, expected {endpoint_id}",
                        verified.spiffe_id()
                    )));
                }
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A trust domain's bundle, fetched from its endpoint again and again as its refresh hint
/// asks (between [`MIN_REFRESH_HINT`] and [`MAX_REFRESH_HINT`]; [`DEFAULT_REFETCH`] without
/// one; after a failure, again in 1 s, doubling up to 5 min). A document the client refuses
/// (an older copy, replayed or from a stale replica; no roots) is not taken: the bundle in
/// use stays, and [`last_error`](Self::last_error) says why. Dropping it stops the fetching.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::federation::{BundleEndpointClient, EndpointProfile, FederatedBundle};
///
/// # async fn run(client: BundleEndpointClient) {
/// let bundle = FederatedBundle::watch(client);
/// let mut changes = bundle.changes();
/// while changes.changed().await.is_ok() {
///     if let Some(document) = bundle.current() {
///         println!("{} roots now", document.x509.roots().len());
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct FederatedBundle {
    current: watch::Receiver<Option<Arc<BundleDocument>>>,
    last_error: Arc<std::sync::Mutex<Option<(SystemTime, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FederatedBundle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FederatedBundle {
    /// Starts fetching with `client` (the first fetch now). Needs a tokio runtime.
    pub fn watch(client: BundleEndpointClient) -> Self {
        let (publish, current) = watch::channel(None);
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let task = tokio::spawn(follow(client, publish, Arc::clone(&last_error)));
        Self {
            current,
            last_error,
            task,
        }
    }

    /// The last document taken (`None` before the first fetch succeeded).
    pub fn current(&self) -> Option<Arc<BundleDocument>> {
        self.current.borrow().clone()
    }

    /// Wakes when a new document is taken.
    pub fn changes(&self) -> watch::Receiver<Option<Arc<BundleDocument>>> {
        self.current.clone()
    }

    /// When the last fetch failed and why (`None` once one succeeds).
    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn follow(
    mut client: BundleEndpointClient,
    publish: watch::Sender<Option<Arc<BundleDocument>>>,
    last_error: Arc<std::sync::Mutex<Option<(SystemTime, String)>>>,
) {
    let mut backoff = MIN_REFRESH_HINT;
    loop {
        let wait = match client.fetch().await {
            Ok(document) => {
                *last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                backoff = MIN_REFRESH_HINT;
                let wait = document
                    .refresh_hint
                    .unwrap_or(DEFAULT_REFETCH)
                    .clamp(MIN_REFRESH_HINT, MAX_REFRESH_HINT);
                publish.send_if_modified(|current| {
                    let changed = current.as_ref().is_none_or(|c| {
                        c.sequence != document.sequence || c.to_json() != document.to_json()
                    });
                    if changed {
                        *current = Some(Arc::new(document));
                    }
                    changed
                });
                wait
            }
            Err(error) => {
                tracing::warn!(%error, "bundle endpoint fetch failed");
                *last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((SystemTime::now(), error.to_string()));
                let wait = backoff;
                backoff = (backoff * 2).min(DEFAULT_REFETCH);
                wait
            }
        };
        tokio::time::sleep(wait).await;
        if publish.is_closed() && publish.receiver_count() == 0 {
            return;
        }
    }
}
