//! `dev-server --bundle-endpoint ADDR`: the dev server's trust domain bundle served as a
//! SPIFFE bundle endpoint (`https_spiffe`), with an SVID the dev server issues to itself
//! (`spiffe://<trust-domain>/spiffe-mtls/bundle-endpoint`, given to no caller).

use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::dev_server::{DevServer, SvidRequest};
use spiffe_mtls::federation::BundleEndpoint;
use spiffe_mtls::jwt::{JwtBundleSet, StaticJwtBundles};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::{SpiffeId, X509Bundle, net, tls};
use tokio::time::Instant;

/// The path of the endpoint's SPIFFE ID in the dev server's trust domain.
const ENDPOINT_PATH: &str = "/spiffe-mtls/bundle-endpoint";

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
        let id = SpiffeId::new(&format!("{}{ENDPOINT_PATH}", trust_domain.id_string()))
            .map_err(|e| e.to_string())?;
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
        println!(
            "bundle endpoint for trust domain {trust_domain} listening on https://{address}/ (https_spiffe, endpoint SPIFFE ID {id})"
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
