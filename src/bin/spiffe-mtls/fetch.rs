//! `spiffe-mtls fetch` and `spiffe-mtls watch`: read the Workload API like a workload does.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spiffe_mtls::X509Svid;
use spiffe_mtls::source::{SourceError, X509Context};
use spiffe_mtls::workload::{EndpointAddress, WorkloadClient, WorkloadError, X509ContextStream};

/// Where the Workload API is: --socket, else SPIFFE_ENDPOINT_SOCKET.
#[derive(clap::Args)]
pub struct SocketArg {
    /// unix:///abs/path, a bare absolute path, or tcp://IP:PORT (default: $SPIFFE_ENDPOINT_SOCKET).
    #[arg(long, value_name = "ADDR", value_parser = EndpointAddress::parse_lenient)]
    socket: Option<EndpointAddress>,
}

impl SocketArg {
    pub(crate) fn address(&self) -> Result<EndpointAddress, String> {
        match &self.socket {
            Some(address) => Ok(address.clone()),
            None => EndpointAddress::from_env().map_err(|e| format!("no --socket given and {e}")),
        }
    }
}

/// Fetch the X.509 context once: SVIDs and bundles.
#[derive(clap::Args)]
pub struct FetchArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Write svid.N.pem, svid.N.key, bundle.N.pem and federated_bundle.N.td.<TRUST-DOMAIN>.pem
    /// here (atomically; files of trust domains no longer federated are removed).
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
    /// Give up after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = spiffe_mtls::dev_server::parse_duration)]
    timeout: Duration,
}

/// Print one line per Workload API update.
#[derive(clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Stop after this many updates (default: run until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

pub(crate) fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {secs}"))
}

pub(crate) fn serial(svid: &X509Svid) -> String {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(svid.leaf())
        .map(|(_, cert)| {
            cert.raw_serial().iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            })
        })
        .unwrap_or_default()
}

fn trust_domains(context: &X509Context) -> String {
    let mut names: Vec<&str> = context
        .bundles()
        .iter()
        .map(|b| b.trust_domain().as_str())
        .collect();
    names.sort_unstable();
    names.join(",")
}

/// A Workload API error in words: PermissionDenied names this process as an entry would
/// select it ("the Workload API at .. has no identity for this process (uid U, path P):
/// register one ..").
pub(crate) fn described(address: &EndpointAddress, error: WorkloadError) -> String {
    match error {
        WorkloadError::Status(status) if status.code() == tonic::Code::PermissionDenied => {
            SourceError::no_identity(address, status.message()).to_string()
        }
        other => other.to_string(),
    }
}

/// Opens the X.509-SVID stream.
async fn open(address: &EndpointAddress) -> Result<X509ContextStream, String> {
    let mut client = WorkloadClient::connect(address)
        .await
        .map_err(|e| described(address, e))?;
    client
        .watch_x509_contexts()
        .await
        .map_err(|e| described(address, e))
}

async fn next_context(
    address: &EndpointAddress,
    stream: &mut X509ContextStream,
) -> Result<Option<X509Context>, String> {
    stream.next().await.map_err(|e| described(address, e))
}

/// `fetch`: prints the context, optionally writes it to files.
pub fn fetch(args: &FetchArgs) -> ExitCode {
    let address = match args.socket.address() {
        Ok(address) => address,
        Err(message) => return crate::fail(crate::USAGE, message),
    };
    crate::runtime(async move {
        let fetched = tokio::time::timeout(args.timeout, async {
            let mut stream = open(&address).await?;
            next_context(&address, &mut stream)
                .await?
                .ok_or_else(|| "the Workload API closed the stream without an update".to_string())
        })
        .await
        .map_err(|_| format!("no update from {address} within {:?}", args.timeout))??;
        for (i, svid) in fetched.svids().iter().enumerate() {
            println!(
                "svid[{i}] {} hint={} expires={}",
                svid.spiffe_id(),
                svid.hint().unwrap_or("-"),
                rfc3339(svid.expires_at())
            );
        }
        println!("bundles: {}", trust_domains(&fetched));
        if let Some(dir) = &args.write {
            let (written, removed) = crate::write_files::write_context(dir, &fetched)?;
            for path in removed {
                println!("removed {}", path.display());
            }
            for path in written {
                println!("wrote {}", path.display());
            }
        }
        Ok(())
    })
}

/// `watch`: one line per update: ID, serial, not-after, bundle trust domains.
pub fn watch(args: &WatchArgs) -> ExitCode {
    let address = match args.socket.address() {
        Ok(address) => address,
        Err(message) => return crate::fail(crate::USAGE, message),
    };
    crate::runtime(async move {
        let mut stream = open(&address).await?;
        let mut seen = 0u64;
        while args.count.is_none_or(|count| seen < count) {
            let Some(context) = next_context(&address, &mut stream).await? else {
                return Err("the Workload API closed the stream".into());
            };
            let svid = context.default_svid();
            println!(
                "{} serial={} not_after={} bundles={}",
                svid.spiffe_id(),
                serial(svid),
                rfc3339(svid.expires_at()),
                trust_domains(&context)
            );
            seen += 1;
        }
        Ok(())
    })
}
