//! Where the proxy's SVIDs and bundles come from (`--socket` or `--files`), and what the
//! status port says about them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use spiffe_mtls::source::{
    FilePaths, FileSource, UpdateLimits, WorkloadApiSource, X509Context, X509Source,
};
use spiffe_mtls::workload::EndpointAddress;

use super::metrics::{Metrics, WorkloadApiRecorder};
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
    /// When the SVID last changed (`None`: not since start).
    pub last_rotation: Mutex<Option<SystemTime>>,
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
                Arc::new(workload_api(address.clone(), metrics).await?),
                format!("Workload API {address}"),
            ),
            (None, None) => {
                let address = EndpointAddress::from_env().map_err(|e| {
                    Failure::Usage(format!(
                        "give --socket ADDR or --files DIR (no SPIFFE_ENDPOINT_SOCKET: {e})"
                    ))
                })?;
                (
                    Arc::new(workload_api(address.clone(), metrics).await?),
                    format!("Workload API {address}"),
                )
            }
        };
        source
            .x509_context()
            .map_err(|e| format!("no usable SVID: {e}"))?;
        let identity = Arc::new(Self {
            source,
            last_rotation: Mutex::new(None),
            origin,
        });
        tokio::spawn(watch_rotations(Arc::clone(&identity), Arc::clone(metrics)));
        Ok(identity)
    }

    /// The current context, if any.
    pub fn context(&self) -> Option<Arc<X509Context>> {
        self.source.x509_context().ok()
    }

    /// When the SVID last changed since start.
    pub fn last_rotation(&self) -> Option<SystemTime> {
        *self
            .last_rotation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A Workload API source whose reconnections are counted.
async fn workload_api(
    address: EndpointAddress,
    metrics: &Arc<Metrics>,
) -> Result<WorkloadApiSource, String> {
    if let EndpointAddress::Unix(path) = &address
        && !path.exists()
    {
        return Err(format!(
            "the Workload API is unreachable: no socket at {}",
            path.display()
        ));
    }
    let inner = spiffe::X509Source::builder()
        .endpoint(address.to_string())
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .initial_sync_timeout(START_TIMEOUT)
        .metrics(Arc::new(WorkloadApiRecorder(Arc::clone(metrics))))
        .build()
        .await;
    match inner {
        Ok(inner) => WorkloadApiSource::from_spiffe(inner, UpdateLimits::default(), START_TIMEOUT)
            .await
            .map_err(|e| format!("the Workload API at {address} gave no usable SVID: {e}")),
        // The library's own client says why (no socket, refused, no identity, ...).
        Err(first) => match WorkloadApiSource::builder()
            .address(address.clone())
            .start_timeout(Duration::from_secs(2))
            .build()
            .await
        {
            // Its own words: no socket, unreachable, no identity for this process, ...
            Err(reason) => Err(reason.to_string()),
            Ok(_) => Err(format!("the Workload API at {address} failed: {first}")),
        },
    }
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
            *identity
                .last_rotation
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(SystemTime::now());
            last = now;
        }
    }
}
