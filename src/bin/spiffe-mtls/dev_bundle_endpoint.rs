//! `dev-server --bundle-endpoint ADDR`: the dev server's trust domain bundle served as a
//! SPIFFE bundle endpoint (`https_spiffe`), with an SVID the dev server issues to itself
//! (`spiffe://<trust-domain>/spiffe-mtls/bundle-endpoint`, given to no caller); and
//! `--federate-endpoint`: another trust domain's bundle followed from its endpoint.

use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::dev_server::{DevServer, SvidRequest};
use spiffe_mtls::federation::{
    BundleEndpoint, BundleEndpointClient, EndpointProfile, FederatedBundle,
};
use spiffe_mtls::jwt::{JwtBundle, JwtBundleSet, StaticJwtBundles};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::{SpiffeId, TrustDomain, X509Bundle, net, tls};
use tokio::time::Instant;

/// The path of the endpoint's SPIFFE ID in the dev server's trust domain.
const ENDPOINT_PATH: &str = "/spiffe-mtls/bundle-endpoint";

/// The SPIFFE ID of a dev server's bundle endpoint in `trust_domain`.
pub fn endpoint_id(trust_domain: &TrustDomain) -> Result<SpiffeId, String> {
    SpiffeId::new(&format!("{}{ENDPOINT_PATH}", trust_domain.id_string()))
        .map_err(|e| e.to_string())
}

/// The served endpoint and what it follows.
pub struct DevBundleEndpoint {
    id: SpiffeId,
    ttl: Duration,
    source: Arc<StaticSource>,
    jwt: Arc<StaticJwtBundles>,
    renew_at: Instant,
    /// The HTTPS server.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DevBundleEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DevBundleEndpoint {
    /// Listens on `listen` and serves; prints `bundle endpoint ... listening on URL`.
    pub async fn start(
        server: &DevServer,
        listen: &str,
        ttl: Duration,
        refresh_hint: Duration,
    ) -> Result<Self, crate::Failure> {
        let trust_domain = server
            .svids()
            .first()
            .map(|svid| svid.spiffe_id().trust_domain().clone())
            .ok_or_else(|| "the dev server issued no SVID".to_owned())?;
        let id = endpoint_id(&trust_domain)?;
        let context = context(server, &id, ttl).await?;
        let source = Arc::new(StaticSource::new(context));
        let jwt = Arc::new(StaticJwtBundles::new(jwt_bundles(server)));
        let endpoint = BundleEndpoint::new(Arc::clone(&source))
            .jwt_bundles(Arc::clone(&jwt))
            .refresh_hint(refresh_hint);
        let config = tls::tls_server_config(Arc::clone(&source))
            .build()
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            crate::Failure::Usage(format!("--bundle-endpoint: cannot listen on {listen}: {e}"))
        })?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move {
            if let Err(error) = net::HttpServer::new(listener, Arc::new(config))
                .allow_anonymous_clients()
                .serve(endpoint.router())
                .await
            {
                eprintln!("the bundle endpoint stopped: {error}");
            }
        });
        let root = server
            .roots()
            .last()
            .and_then(|root| spiffe_mtls::audit::sha256_hex(root))
            .unwrap_or_default();
        println!(
            "bundle endpoint for trust domain {trust_domain} listening on https://{address}/ (https_spiffe, endpoint SPIFFE ID {id}, root sha256 {root})"
        );
        Ok(Self {
            id,
            ttl,
            source,
            jwt,
            renew_at: Instant::now() + ttl / 2,
            task,
        })
    }

    /// When the endpoint's SVID is renewed even without a push.
    pub fn renew_at(&self) -> Instant {
        self.renew_at
    }

    /// After a push or at [`renew_at`](Self::renew_at): a new SVID from the CA signing now,
    /// and the current roots and JWT keys.
    pub async fn refresh(&mut self, server: &DevServer) {
        match context(server, &self.id, self.ttl).await {
            Ok(context) => {
                self.source.replace(context);
                self.renew_at = Instant::now() + self.ttl / 2;
            }
            Err(error) => {
                eprintln!("the bundle endpoint's SVID: {error}; retrying in 1 s");
                self.renew_at = Instant::now() + Duration::from_secs(1);
            }
        }
        self.jwt.set(jwt_bundles(server));
    }
}

/// A context of a fresh endpoint SVID and the local bundle.
async fn context(server: &DevServer, id: &SpiffeId, ttl: Duration) -> Result<X509Context, String> {
    let svid = server
        .issue_svid(SvidRequest::new(id.clone(), ttl))
        .await
        .ok_or("the dev server stopped")?
        .map_err(|e| e.to_string())?;
    let bundle =
        X509Bundle::new(id.trust_domain().clone(), server.roots()).map_err(|e| e.to_string())?;
    X509Context::new(vec![svid], [bundle].into_iter().collect()).map_err(|e| e.to_string())
}

/// The local trust domain's JWT bundle, alone in a set.
fn jwt_bundles(server: &DevServer) -> JwtBundleSet {
    let mut set = JwtBundleSet::new();
    if let Ok(bundle) = server.jwt_bundle() {
        set.insert(bundle);
    }
    set
}

/// A `--federate-endpoint`: the trust domain, its endpoint, how to authenticate it.
#[derive(Debug, Clone)]
pub struct FederateEndpoint {
    /// The trust domain federated with.
    pub trust_domain: TrustDomain,
    url: String,
    root_sha256: [u8; 32],
    endpoint_id: SpiffeId,
}

/// `TD=URL,ROOT_SHA256[,ENDPOINT_SPIFFE_ID]`.
pub fn parse_federate_endpoint(value: &str) -> Result<FederateEndpoint, String> {
    let usage = || format!("{value:?} is not TD=URL,ROOT_SHA256[,ENDPOINT_SPIFFE_ID]");
    let (td, rest) = value.split_once('=').ok_or_else(usage)?;
    let trust_domain: TrustDomain = td.parse().map_err(|e| format!("{td:?}: {e}"))?;
    let mut parts = rest.split(',');
    let (Some(url), Some(digest)) = (parts.next(), parts.next()) else {
        return Err(usage());
    };
    if !url.starts_with("https://") {
        return Err(format!("{url:?}: a bundle endpoint URL is https://"));
    }
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{digest:?} is not a SHA-256 in hex (64 digits)"));
    }
    let bytes: Vec<u8> = (0..digest.len())
        .step_by(2)
        .filter_map(|i| digest.get(i..i + 2))
        .map(|pair| u8::from_str_radix(pair, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{digest:?} is not a SHA-256 in hex"))?;
    let root_sha256: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{digest:?} is not a SHA-256 in hex (64 digits)"))?;
    let endpoint_id = match parts.next() {
        Some(id) => id.parse().map_err(|e| format!("{id:?}: {e}"))?,
        None => endpoint_id(&trust_domain)?,
    };
    if parts.next().is_some() {
        return Err(usage());
    }
    Ok(FederateEndpoint {
        trust_domain,
        url: url.to_owned(),
        root_sha256,
        endpoint_id,
    })
}

/// Follows each endpoint; every document taken comes out of the receiver.
pub fn follow_endpoints(
    endpoints: &[FederateEndpoint],
) -> tokio::sync::mpsc::Receiver<(X509Bundle, Option<JwtBundle>)> {
    let (send, receive) = tokio::sync::mpsc::channel(16);
    for endpoint in endpoints {
        let client = BundleEndpointClient::new(
            endpoint.url.clone(),
            endpoint.trust_domain.clone(),
            EndpointProfile::HttpsSpiffePinned {
                endpoint_id: endpoint.endpoint_id.clone(),
                root_sha256: endpoint.root_sha256,
            },
        );
        let send = send.clone();
        let (trust_domain, url) = (endpoint.trust_domain.clone(), endpoint.url.clone());
        tokio::spawn(async move {
            let watched = FederatedBundle::watch(client);
            let mut changes = watched.changes();
            let mut said_error = None;
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let document = changes.borrow_and_update().clone();
                        if let Some(document) = document {
                            said_error = None;
                            if send.send((document.x509.clone(), document.jwt.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        // A failing endpoint is said once per distinct reason.
                        if let Some((_, error)) = watched.last_error()
                            && said_error.as_ref() != Some(&error)
                        {
                            eprintln!("federating with {trust_domain} at {url}: {error}");
                            said_error = Some(error);
                        }
                    }
                }
            }
        });
    }
    receive
}
