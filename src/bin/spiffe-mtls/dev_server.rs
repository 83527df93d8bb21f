//! `spiffe-mtls dev-server`: a SPIRE-compatible Workload API for development and tests.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spiffe_mtls::dev_server::{
    DEFAULT_SOCKET_NAME, DevServer, DevServerConfig, DevServerOptions, Entry, default_socket_dir,
    ensure_private_dir, parse_duration,
};
use spiffe_mtls::health::HealthMonitor;
use spiffe_mtls::pem;
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{SpiffeId, TrustDomain, X509Bundle, X509Svid};
use tokio::signal::unix::{SignalKind, signal};

use crate::dev_bundle_endpoint::DevBundleEndpoint;

/// Serve the SPIFFE Workload API with SVIDs from an in-memory CA.
///
/// Each refused call is a line on stderr: the caller as attested (uid, gid, pid, executable)
/// and why no entry matched. SIGUSR1 rotates every SVID now, SIGUSR2 rotates the CA now; SIGTERM or Ctrl-C stops the
/// server and removes the socket.
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen: unix:///abs/path, a bare absolute path, or tcp://127.0.0.1:PORT.
    /// Default: agent.sock in a directory private to this user, $XDG_RUNTIME_DIR/spiffe-mtls
    /// or else /tmp/spiffe-mtls-UID (created 0700; refused if another user owns it or it is
    /// open to group or others).
    #[arg(long, value_name = "ADDR", value_parser = EndpointAddress::parse_lenient)]
    socket: Option<EndpointAddress>,
    /// Permission bits of the Unix socket file, in octal.
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = crate::proxy::parse_socket_mode)]
    socket_mode: u32,
    /// Allow a TCP address other than loopback (callers on other hosts match no entry).
    #[arg(long)]
    allow_remote_tcp: bool,
    /// Registration entries (TOML). Without it, --trust-domain and --id give one identity to
    /// the callers running as this user (selector unix:uid:<your uid>).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["trust_domain", "id"])]
    config: Option<PathBuf>,
    /// The trust domain (one-identity mode).
    #[arg(long, value_name = "TD", requires = "id")]
    trust_domain: Option<TrustDomain>,
    /// The SPIFFE ID given to callers running as this user (one-identity mode).
    #[arg(long, value_name = "SPIFFE_ID", requires = "trust_domain")]
    id: Option<SpiffeId>,
    /// SVID lifetime (rotation at half of it); the default for entries without `ttl`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    svid_ttl: Duration,
    /// A federated trust domain's bundle (PEM or SPIFFE bundle JSON); the JWT-SVID keys of a
    /// SPIFFE bundle document become its JWT bundle. As in SPIRE, it goes to the callers of
    /// the entries that federate with TD: the `--id` entry does; in a `--config` file, an
    /// entry says `federates_with = ["TD"]`.
    #[arg(long, value_name = "TD=FILE", value_parser = parse_federate)]
    federate: Vec<(TrustDomain, PathBuf)>,
    /// Write the local bundle as PEM here, and again at every CA change.
    #[arg(long, value_name = "FILE")]
    write_bundle: Option<PathBuf>,
    /// Federate with a trust domain through its bundle endpoint (another dev server's
    /// --bundle-endpoint, say), bootstrapped from the SHA-256 of one of its roots (which that
    /// dev server prints): TD=URL,ROOT_SHA256[,ENDPOINT_SPIFFE_ID] (the ID defaults to
    /// spiffe://TD/spiffe-mtls/bundle-endpoint). Its bundle is fetched as its refresh hint
    /// asks and goes to the callers of the entries that federate with TD, as with --federate.
    #[arg(long, value_name = "TD=URL,SHA256", value_parser = crate::dev_bundle_endpoint::parse_federate_endpoint)]
    federate_endpoint: Vec<crate::dev_bundle_endpoint::FederateEndpoint>,
    /// Serve the trust domain's bundle (roots and JWT-SVID keys) as a SPIFFE bundle endpoint
    /// at https://ADDR/ (`https_spiffe`: the endpoint presents an SVID of
    /// spiffe://<trust-domain>/spiffe-mtls/bundle-endpoint, issued by this server).
    #[arg(long, value_name = "ADDR")]
    bundle_endpoint: Option<String>,
    /// The `spiffe_refresh_hint` the bundle endpoint publishes.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, requires = "bundle_endpoint")]
    bundle_refresh_hint: Duration,
    #[command(flatten)]
    status: crate::proxy::StatusArgs,
}

/// The address to serve: --socket, or the private default directory (created or checked).
fn address(args: &Args) -> Result<EndpointAddress, String> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    let dir = default_socket_dir().map_err(|e| e.to_string())?;
    ensure_private_dir(&dir).map_err(|e| e.to_string())?;
    Ok(EndpointAddress::Unix(dir.join(DEFAULT_SOCKET_NAME)))
}

fn parse_federate(value: &str) -> Result<(TrustDomain, PathBuf), String> {
    let (td, file) = value
        .split_once('=')
        .filter(|(_, file)| !file.is_empty())
        .ok_or_else(|| format!("{value:?} is not TD=FILE"))?;
    Ok((td.parse().map_err(|e| format!("{e}"))?, PathBuf::from(file)))
}

fn configure(args: &Args) -> Result<(DevServerConfig, DevServerOptions), String> {
    // Each federated trust domain and the flag that named it.
    let federated = args
        .federate
        .iter()
        .map(|(td, _)| (td.clone(), "--federate"))
        .chain(
            args.federate_endpoint
                .iter()
                .map(|f| (f.trust_domain.clone(), "--federate-endpoint")),
        );
    let config = match (&args.config, &args.trust_domain, &args.id) {
        (Some(path), _, _) => {
            let config = DevServerConfig::load(path, args.svid_ttl).map_err(|e| e.to_string())?;
            for (td, flag) in federated {
                if !config
                    .entries
                    .iter()
                    .any(|e| e.federates_with.contains(&td))
                {
                    return Err(format!(
                        "{flag} {td}: no entry of {} federates with it, so no caller would \
                         get its bundle (add federates_with = [\"{td}\"] to the entries that \
                         should trust it)",
                        path.display()
                    ));
                }
            }
            config
        }
        (None, Some(td), Some(id)) => {
            let config = DevServerConfig::one_identity(td.clone(), id.clone(), args.svid_ttl)
                .map_err(|e| e.to_string())?;
            let config = federated
                .map(|(td, _)| td)
                .fold(config, DevServerConfig::with_federation);
            config.validate().map_err(|e| e.to_string())?;
            config
        }
        _ => return Err("give --config FILE, or --trust-domain TD and --id SPIFFE_ID".into()),
    };
    if args.bundle_endpoint.is_some() {
        let endpoint_id = crate::dev_bundle_endpoint::endpoint_id(&config.trust_domain)?;
        if config.entries.iter().any(|e| e.spiffe_id == endpoint_id) {
            return Err(format!(
                "--bundle-endpoint: {endpoint_id} is the bundle endpoint's own ID; no entry may have it"
            ));
        }
    }
    let mut options = DevServerOptions::default()
        .with_socket_mode(args.socket_mode)
        .with_allow_remote_tcp(args.allow_remote_tcp);
    for (td, path) in &args.federate {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bundle = X509Bundle::parse(td.clone(), &bytes)
            .and_then(|bundle| bundle.check_root_names().map(|()| bundle))
            .map_err(|e| format!("federated bundle {}: {e}", path.display()))?;
        options.federated.push(bundle);
        if bytes.trim_ascii_start().starts_with(b"{") {
            let jwt = spiffe_mtls::jwt::JwtBundle::parse(td.clone(), &bytes)
                .map_err(|e| format!("federated JWT bundle {}: {e}", path.display()))?;
            options.federated_jwt.push(jwt);
        }
    }
    Ok((config, options))
}

fn write_bundle(server: &DevServer, path: &PathBuf) -> Result<(), String> {
    let roots = server.roots();
    let text = pem::encode_certificates(roots.iter());
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// When the bundle endpoint's SVID is due (never without an endpoint).
async fn renewal(endpoint: Option<&DevBundleEndpoint>) {
    match endpoint {
        Some(endpoint) => tokio::time::sleep_until(endpoint.renew_at()).await,
        None => std::future::pending().await,
    }
}

/// How long the same refusal (a client retrying) is not printed again.
const REPEAT_QUIET: Duration = Duration::from_secs(5);

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(args: &Args) -> ExitCode {
    let (config, options) = match configure(args) {
        Ok(configured) => configured,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    crate::runtime_with(async move {
        args.status.check().await.map_err(crate::Failure::Usage)?;
        let trust_domain = config.trust_domain.clone();
        let entries = config.entries.clone();
        let server = DevServer::start(config, address(args)?, options)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(path) = &args.write_bundle {
            write_bundle(&server, path)?;
        }
        let mut federations = crate::dev_bundle_endpoint::follow_endpoints(&args.federate_endpoint);
        let mut endpoint = match &args.bundle_endpoint {
            Some(listen) => Some(
                DevBundleEndpoint::start(&server, listen, args.svid_ttl, args.bundle_refresh_hint)
                    .await?,
            ),
            None => None,
        };
        let dashboard = match args.status.monitor("dev-server") {
            Some(monitor) => Some(Dashboard::start(monitor, &server, entries, args).await?),
            None => None,
        };
        println!(
            "spiffe-mtls dev server for trust domain {trust_domain} listening on {}",
            server.address()
        );
        println!("export SPIFFE_ENDPOINT_SOCKET={}", server.address());
        // Each refused caller on stderr: who it is as attested, and why no entry matched. A
        // client retrying the same call is shown once per REPEAT_QUIET.
        let mut refusals = server.refusals();
        tokio::spawn(async move {
            let mut last: Option<(String, std::time::Instant)> = None;
            loop {
                match refusals.recv().await {
                    Ok(refusal) => {
                        let line = refusal.to_string();
                        let repeated = last
                            .as_ref()
                            .is_some_and(|(text, at)| *text == line && at.elapsed() < REPEAT_QUIET);
                        if !repeated {
                            eprintln!("refused: {line}");
                            last = Some((line, std::time::Instant::now()));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        eprintln!("refused: {missed} more calls (not shown)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let signals = |kind| signal(kind).map_err(|e| format!("cannot watch signals: {e}"));
        let (mut usr1, mut usr2) = (
            signals(SignalKind::user_defined1())?,
            signals(SignalKind::user_defined2())?,
        );
        let (mut term, mut int) = (
            signals(SignalKind::terminate())?,
            signals(SignalKind::interrupt())?,
        );
        loop {
            tokio::select! {
                _ = usr1.recv() => {
                    server.rotate_svids().await;
                    println!("rotated every SVID");
                    // Its push may come before the next `next_push` below waits.
                    if let Some(dashboard) = &dashboard {
                        dashboard.update(&server);
                    }
                    if let Some(endpoint) = &mut endpoint {
                        endpoint.refresh(&server).await;
                    }
                }
                _ = usr2.recv() => {
                    server.rotate_ca().await;
                    println!("rotating the CA: new root published");
                    if let Some(dashboard) = &dashboard {
                        dashboard.update(&server);
                    }
                    if let Some(endpoint) = &mut endpoint {
                        endpoint.refresh(&server).await;
                    }
                }
                () = server.next_push(), if args.write_bundle.is_some() || dashboard.is_some() || endpoint.is_some() => {
                    if let Some(path) = &args.write_bundle {
                        write_bundle(&server, path)?;
                    }
                    if let Some(endpoint) = &mut endpoint {
                        endpoint.refresh(&server).await;
                    }
                    if let Some(dashboard) = &dashboard {
                        dashboard.update(&server);
                    }
                }
                Some((bundle, jwt)) = federations.recv() => {
                    println!(
                        "federated bundle of {}: {} roots",
                        bundle.trust_domain(),
                        bundle.roots().len()
                    );
                    server.set_federated(bundle, jwt).await;
                }
                () = renewal(endpoint.as_ref()) => {
                    if let Some(endpoint) = &mut endpoint {
                        endpoint.refresh(&server).await;
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        server.shutdown().await;
        println!("dev server stopped");
        Ok(())
    })
}

/// The SVIDs the dev server issued, newest first, for its dashboard.
const ISSUED_SHOWN: usize = 200;

/// The dev server's dashboard: its current SVIDs and bundle as the "workload" shown, its
/// entries, and the SVIDs it issued.
struct Dashboard {
    /// The current SVIDs and local bundle, replaced at each push.
    view: Arc<StaticSource>,
    /// The SVIDs issued since start, newest first.
    issued: Arc<Mutex<VecDeque<serde_json::Value>>>,
}

impl Dashboard {
    /// Serves `monitor` on `--status`.
    async fn start(
        monitor: HealthMonitor,
        server: &DevServer,
        entries: Vec<Entry>,
        args: &Args,
    ) -> Result<Self, String> {
        let context = current(server).ok_or("the dev server issued no SVID")?;
        let view = Arc::new(StaticSource::new(context));
        monitor.watch(view.clone(), format!("dev server {}", server.address()));
        let dashboard = Self {
            view,
            issued: Arc::default(),
        };
        dashboard.note_issued(server);
        let (issued, trust_domain) = (Arc::clone(&dashboard.issued), server_trust_domain(server));
        let entries: Vec<serde_json::Value> = entries.iter().map(entry_json).collect();
        monitor.section("dev_server", move || {
            let issued: Vec<serde_json::Value> = lock(&issued).iter().cloned().collect();
            serde_json::json!({
                "trust_domain": trust_domain,
                "entries": entries,
                "issued": issued,
            })
        });
        let answering = monitor.clone();
        args.status
            .serve(
                args.socket_mode,
                Arc::new(move |request| crate::proxy::from_answer(&answering, request)),
            )
            .await?;
        Ok(dashboard)
    }

    /// Follows a push: the new SVIDs and bundle.
    fn update(&self, server: &DevServer) {
        if let Some(context) = current(server) {
            self.view.replace(context);
        }
        self.note_issued(server);
    }

    /// Adds the SVIDs not seen yet to the issued list.
    fn note_issued(&self, server: &DevServer) {
        let mut issued = lock(&self.issued);
        for svid in server.svids() {
            let serial = crate::fetch::serial(&svid);
            if issued.iter().any(|row| row["serial"] == serial.as_str()) {
                continue;
            }
            issued.push_front(serde_json::json!({
                "spiffe_id": svid.spiffe_id().to_string(),
                "serial": serial,
                "issued_at": rfc3339(not_before(&svid)),
                "expires_at": rfc3339(svid.expires_at()),
            }));
            issued.truncate(ISSUED_SHOWN);
        }
    }
}

/// The issued list, even after a panic elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The dev server's current SVIDs and local bundle as a context.
fn current(server: &DevServer) -> Option<X509Context> {
    let svids: Vec<X509Svid> = server.svids().iter().map(|svid| (**svid).clone()).collect();
    let trust_domain = svids.first()?.spiffe_id().trust_domain().clone();
    let bundle = X509Bundle::new(trust_domain, server.roots()).ok()?;
    X509Context::new(svids, [bundle].into_iter().collect()).ok()
}

/// The trust domain of the dev server's SVIDs.
fn server_trust_domain(server: &DevServer) -> String {
    server
        .svids()
        .first()
        .map(|svid| svid.spiffe_id().trust_domain().to_string())
        .unwrap_or_default()
}

/// One entry of the `dev_server` section.
fn entry_json(entry: &Entry) -> serde_json::Value {
    serde_json::json!({
        "spiffe_id": entry.spiffe_id.to_string(),
        "selectors": entry.selectors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "hint": entry.hint,
        "ttl_seconds": entry.ttl.as_secs(),
    })
}

/// An SVID's notBefore.
fn not_before(svid: &X509Svid) -> SystemTime {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(svid.leaf())
        .ok()
        .and_then(|(_, cert)| u64::try_from(cert.validity().not_before.timestamp()).ok())
        .map_or(UNIX_EPOCH, |secs| UNIX_EPOCH + Duration::from_secs(secs))
}

/// A time as RFC 3339 with milliseconds.
fn rfc3339(time: SystemTime) -> String {
    spiffe_mtls::audit::rfc3339_millis(time)
}
