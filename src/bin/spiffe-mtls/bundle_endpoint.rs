//! `spiffe-mtls bundle-endpoint`: serves the local trust domain's bundle as a SPIFFE bundle
//! document (SPIFFE Federation), for other trust domains and for OAuth authorization servers
//! that verify JWT-SVIDs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::dev_server::parse_duration;
use spiffe_mtls::federation::BundleEndpoint;
use spiffe_mtls::jwt::{JwtBundleFiles, JwtSource};
use spiffe_mtls::rustls::ServerConfig;
use spiffe_mtls::rustls::pki_types::pem::PemObject;
use spiffe_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spiffe_mtls::source::{FilePaths, FileSource, WorkloadApiSource, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{net, tls};
use tokio::signal::unix::{SignalKind, signal};

use crate::Failure;

/// Serve the local trust domain's bundle (X.509 roots and JWT-SVID keys) as a SPIFFE bundle
/// document at `https://ADDR/`, updated as it rotates.
///
/// The endpoint authenticates with the workload's X.509-SVID (the `https_spiffe` profile), or
/// with --web-cert and --web-key (`https_web`). SIGTERM or Ctrl-C stops it.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen (IP:PORT; port 0 picks one, printed on the first line).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// The Workload API: unix:///abs/path, a bare absolute path, or tcp://IP:PORT
    /// (default: $SPIFFE_ENDPOINT_SOCKET).
    #[arg(long, value_name = "ADDR", value_parser = EndpointAddress::parse_lenient, conflicts_with = "files")]
    socket: Option<EndpointAddress>,
    /// A directory written by `spiffe-mtls fetch --write` (svid.0.pem, svid.0.key,
    /// bundle.0.pem) and, for JWT-SVID keys, `spiffe-mtls jwt bundles --write` (<td>.jwks);
    /// hot-reloaded.
    #[arg(long, value_name = "DIR")]
    files: Option<PathBuf>,
    /// A web PKI certificate chain (PEM) to serve with (`https_web`) instead of the SVID.
    #[arg(long, value_name = "FILE", requires = "web_key")]
    web_cert: Option<PathBuf>,
    /// The private key (PEM) of --web-cert.
    #[arg(long, value_name = "FILE", requires = "web_cert")]
    web_key: Option<PathBuf>,
    /// The `spiffe_refresh_hint` published: how often clients should fetch again.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    refresh_hint: Duration,
}

/// Runs the endpoint until SIGTERM or Ctrl-C.
pub fn run(args: &Args) -> std::process::ExitCode {
    crate::runtime_with(serve(args))
}

async fn serve(args: &Args) -> Result<(), Failure> {
    let web = match (&args.web_cert, &args.web_key) {
        (Some(cert), Some(key)) => Some(web_config(cert, key)?),
        _ => None,
    };
    let (source, endpoint) = open(args).await?;
    let context = source
        .x509_context()
        .map_err(|e| format!("no usable SVID: {e}"))?;
    let svid_id = context.default_svid().spiffe_id().clone();
    let trust_domain = svid_id.trust_domain().clone();
    let (config, profile) = match web {
        Some(config) => (config, "https_web".to_owned()),
        None => (
            tls::tls_server_config(Arc::clone(&source))
                .build()
                .map_err(|e| e.to_string())?,
            format!("https_spiffe, endpoint SPIFFE ID {svid_id}"),
        ),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let server = net::HttpServer::new(listener, Arc::new(config))
        .allow_anonymous_clients()
        .serve(endpoint.refresh_hint(args.refresh_hint).router());
    println!(
        "bundle endpoint for trust domain {trust_domain} listening on https://{address}/ ({profile})"
    );
    let signals = |kind| signal(kind).map_err(|e| format!("cannot watch signals: {e}"));
    let (mut term, mut int) = (
        signals(SignalKind::terminate())?,
        signals(SignalKind::interrupt())?,
    );
    tokio::select! {
        result = server => result.map_err(|e| format!("the bundle endpoint stopped: {e}"))?,
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The X.509 source and the endpoint over it (with the JWT keys where there are some).
async fn open(args: &Args) -> Result<(Arc<dyn X509Source>, BundleEndpoint), Failure> {
    if let Some(dir) = &args.files {
        let source: Arc<dyn X509Source> =
            Arc::new(FileSource::open(FilePaths::fetch_layout(dir)).map_err(|e| {
                Failure::Usage(format!("cannot use the files in {}: {e}", dir.display()))
            })?);
        let endpoint = BundleEndpoint::new(Arc::clone(&source));
        let has_jwks = std::fs::read_dir(dir)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", dir.display())))?
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".jwks"));
        let endpoint = if has_jwks {
            let jwt = JwtBundleFiles::open(dir.clone()).map_err(|e| {
                Failure::Usage(format!(
                    "cannot use the JWT bundles in {}: {e}",
                    dir.display()
                ))
            })?;
            endpoint.jwt_bundles(jwt)
        } else {
            endpoint
        };
        return Ok((source, endpoint));
    }
    let address = match &args.socket {
        Some(address) => address.clone(),
        None => EndpointAddress::from_env().map_err(|e| {
            Failure::Usage(format!(
                "give --socket ADDR or --files DIR (no SPIFFE_ENDPOINT_SOCKET: {e})"
            ))
        })?,
    };
    let source: Arc<dyn X509Source> = Arc::new(
        WorkloadApiSource::builder()
            .address(address.clone())
            .build()
            .await
            .map_err(|e| format!("Workload API at {address}: {e}"))?,
    );
    let jwt = JwtSource::connect(address.clone())
        .await
        .map_err(|e| format!("JWT bundles from the Workload API at {address}: {e}"))?;
    Ok((
        Arc::clone(&source),
        BundleEndpoint::new(source).jwt_bundles(jwt),
    ))
}

/// A TLS server config presenting the web PKI certificate in `cert` with the key in `key`.
fn web_config(cert: &PathBuf, key: &PathBuf) -> Result<ServerConfig, Failure> {
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Usage(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(Failure::Usage(format!(
            "{}: no certificate",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| Failure::Usage(format!("{}: {e}", key.display())))?;
    let provider =
        spiffe_mtls::crypto::default_provider().ok_or("no rustls crypto provider".to_owned())?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, key_der)
        })
        .map_err(|e| Failure::Usage(format!("--web-cert and --web-key: {e}")))
}
