//! Where the proxy's SVIDs and bundles come from (`--socket` or `--files`), and what the
//! status port says about them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::source::{
    FilePaths, FileSource, UpdateLimits, WorkloadApiSource, X509Context, X509Source,
};
use spiffe_mtls::workload::EndpointAddress;

use super::metrics::Metrics;
use crate::Failure;

/// How long to wait for the first Workload API update before refusing to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The identity options shared by both modes.
#[derive(clap::Args, Debug)]
pub struct IdentityArgs {
    /// The Workload API: unix:///abs/path, a bare absolute path, or tcp://IP:PORT
    /// (default: $SPIFFE_ENDPOINT_SOCKET).
    #[arg(long, value_name = "ADDR", value_parser = EndpointAddress::parse_lenient, conflicts_with = "files")]
    socket: Option<EndpointAddress>,
    /// A directory written by `spiffe-mtls fetch --write` or `spire-agent api fetch x509
    /// -write` (svid.0.pem, svid.0.key, bundle.0.pem, federated bundles), hot-reloaded.
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
}

/// The source and what the status port reports.
#[derive(Debug)]
pub struct Identity {
    /// The SVIDs and bundles.
    pub source: Arc<dyn X509Source>,
    /// Where the source reads from, for `/_status`.
    pub origin: String,
}

impl Identity {
    /// Opens the source; the reason when it cannot (a usage error when no source is named or
    /// the `--files` cannot be used).
    pub async fn open(args: &IdentityArgs, metrics: &Arc<Metrics>) -> Result<Arc<Self>, Failure> {
        let (source, origin): (Arc<dyn X509Source>, String) = match (&args.socket, &args.files) {
            (_, Some(dir)) => {
                let source = FileSource::open(FilePaths::fetch_layout(dir)).map_err(|e| {
                    Failure::Usage(format!("cannot use the files in {}: {e}", dir.display()))
                })?;
                (Arc::new(source), format!("files {}", dir.display()))
            }
            (Some(address), None) => (
                Arc::new(workload_api(address.clone()).await?),
                format!("Workload API {address}"),
            ),
            (None, None) => {
                let address = EndpointAddress::from_env().map_err(|e| {
                    Failure::Usage(format!(
                        "give --socket ADDR or --files DIR (no SPIFFE_ENDPOINT_SOCKET: {e})"
                    ))
                })?;
                (
                    Arc::new(workload_api(address.clone()).await?),
                    format!("Workload API {address}"),
                )
            }
        };
        source
            .x509_context()
            .map_err(|e| format!("no usable SVID: {e}"))?;
        let identity = Arc::new(Self { source, origin });
        tokio::spawn(watch_rotations(Arc::clone(&identity), Arc::clone(metrics)));
        Ok(identity)
    }

    /// The current context, if any.
    pub fn context(&self) -> Option<Arc<X509Context>> {
        self.source.x509_context().ok()
    }
}

/// A Workload API source on the crate's own client (its stream's state and reconnections
/// are on the status port), reconnecting within a second.
async fn workload_api(address: EndpointAddress) -> Result<WorkloadApiSource, String> {
    if let EndpointAddress::Unix(path) = &address
        && !path.exists()
    {
        return Err(format!(
            "the Workload API is unreachable: no socket at {}",
            path.display()
        ));
    }
    WorkloadApiSource::builder()
        .address(address)
        .max_backoff(Duration::from_secs(1))
        .limits(UpdateLimits::default())
        .start_timeout(START_TIMEOUT)
        .build()
        .await
        // Its own words: unreachable, no identity for this process, an invalid update...
        .map_err(|reason| reason.to_string())
}

/// Counts SVID changes (a new serial or ID of the default SVID).
async fn watch_rotations(identity: Arc<Identity>, metrics: Arc<Metrics>) {
    let mut updates = identity.source.updates();
    let leaf = |identity: &Identity| {
        identity
            .context()
            .map(|context| context.default_svid().leaf().to_vec())
    };
    let mut last = leaf(&identity);
    while updates.changed().await.is_ok() {
        let now = leaf(&identity);
        if now.is_some() && now != last {
            metrics.rotations.inc();
            last = now;
        }
    }
}
