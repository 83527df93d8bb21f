//! `spiffe-mtls dev-server`: a SPIRE-compatible Workload API for development and tests.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use spiffe_mtls::dev_server::{
    DEFAULT_SOCKET_NAME, DevServer, DevServerConfig, DevServerOptions, default_socket_dir,
    ensure_private_dir, parse_duration,
};
use spiffe_mtls::pem;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{SpiffeId, TrustDomain, X509Bundle};
use tokio::signal::unix::{SignalKind, signal};

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
    let federated = args.federate.iter().map(|(td, _)| td.clone());
    let config = match (&args.config, &args.trust_domain, &args.id) {
        (Some(path), _, _) => {
            let config = DevServerConfig::load(path, args.svid_ttl).map_err(|e| e.to_string())?;
            for td in federated {
                if !config
                    .entries
                    .iter()
                    .any(|e| e.federates_with.contains(&td))
                {
                    return Err(format!(
                        "--federate {td}: no entry of {} federates with it, so no caller would \
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
            let config = federated.fold(config, DevServerConfig::with_federation);
            config.validate().map_err(|e| e.to_string())?;
            config
        }
        _ => return Err("give --config FILE, or --trust-domain TD and --id SPIFFE_ID".into()),
    };
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
    crate::runtime(async move {
        let trust_domain = config.trust_domain.clone();
        let server = DevServer::start(config, address(args)?, options)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(path) = &args.write_bundle {
            write_bundle(&server, path)?;
        }
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
                }
                _ = usr2.recv() => {
                    server.rotate_ca().await;
                    println!("rotating the CA: new root published");
                }
                () = server.next_push(), if args.write_bundle.is_some() => {
                    if let Some(path) = &args.write_bundle {
                        write_bundle(&server, path)?;
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
