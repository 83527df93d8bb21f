//! `proxy client`: plain in (loopback), mTLS out.

use std::sync::Arc;
use std::time::Instant;

use spiffe_mtls::rustls::ClientConfig;
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::{SpiffeId, authorize, net, tls};
use tokio::io::BufReader;

use super::address::{Address, check_socket_dir};
use super::audit::Record;
use super::counted::{Counted, Traffic};
use super::handshake::{finish, noting_refusals, watched};
use super::identity::{Identity, IdentityArgs};
use super::metrics::Metrics;
use super::serve::{Accepted, Signals, TLS_READ_BUFFER, accept_loop, closed_for, relay_live};
use super::server::{TARGET_CONNECT_TIMEOUT, crypto_provider, live_connections};
use super::{CommonArgs, status};
use crate::Failure;

/// Accept plain TCP locally, connect out with mTLS requiring the server's SPIFFE ID.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where local plain clients connect: HOST:PORT (loopback unless --allow-remote) or
    /// unix:/path.
    #[arg(long, value_name = "ADDR", value_parser = Address::parse)]
    listen: Address,
    /// The mTLS server: HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", value_parser = Address::parse)]
    target: Address,
    /// The SPIFFE ID the server must present.
    #[arg(long, value_name = "ID")]
    server_id: SpiffeId,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Allow --listen on an address other than loopback, or on a Unix socket whose
    /// --socket-mode lets group or others connect (anyone who can reach it then connects
    /// with this workload's identity).
    #[arg(long)]
    allow_remote: bool,
    #[command(flatten)]
    common: CommonArgs,
}

struct Client {
    config: Arc<ClientConfig>,
    /// Our SVIDs, to name the ID the server refused.
    source: Arc<dyn spiffe_mtls::source::X509Source>,
    rule: Arc<str>,
    target: Address,
    server_name: ServerName<'static>,
    handshake_timeout: std::time::Duration,
    metrics: Arc<Metrics>,
    live: spiffe_mtls::net::LiveConnections,
}

/// Refuses a listen address that others could reach, unless `--allow-remote`: a TCP address
/// that is not loopback, or a Unix socket whose `--socket-mode` lets group or others connect.
/// A Unix socket's directory must pass [`check_socket_dir`] (allowed or not).
async fn check_listen(args: &Args) -> Result<(), String> {
    if let Address::Unix(path) = &args.listen {
        check_socket_dir(path).map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let mode = args.common.socket_mode;
        if mode & 0o077 != 0 && !args.allow_remote {
            return Err(format!(
                "--socket-mode {mode:04o} lets group or others connect to --listen {} as this \
                 workload; use 0600, or add --allow-remote",
                args.listen
            ));
        }
        return Ok(());
    }
    if args.allow_remote {
        return Ok(());
    }
    let addresses = args
        .listen
        .resolve()
        .await
        .map_err(|e| format!("cannot resolve --listen {}: {e}", args.listen))?;
    if addresses.is_empty() || addresses.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "--listen {} is not a loopback address: anyone who reaches it would connect as this \
             workload; use 127.0.0.1 or [::1], or add --allow-remote",
            args.listen
        ));
    }
    Ok(())
}

/// Runs `proxy client` until SIGTERM or SIGINT and the drain; the reason when it cannot start
/// (a usage error for an unusable option).
pub async fn run(args: &Args) -> Result<(), Failure> {
    let signals = Signals::watch()?;
    args.common.status.check().await.map_err(Failure::Usage)?;
    check_listen(args).await.map_err(Failure::Usage)?;
    let Address::Tcp { host, .. } = &args.target else {
        return Err(Failure::Usage(format!(
            "--target {}: give HOST:PORT",
            args.target
        )));
    };
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| Failure::Usage(format!("--target {}: {e}", args.target)))?;
    let decisions = super::audit::DecisionLog::open(&args.common)?;
    let metrics = Arc::new(Metrics::new(args.common.status.monitor("client")));
    if let (Some(decisions), Some(monitor)) = (&decisions, &metrics.monitor) {
        decisions.show_on(monitor);
    }
    let identity = Identity::open(&args.identity, &metrics).await?;
    let rule = authorize::id(args.server_id.clone());
    let mut builder =
        tls::client_config(Arc::clone(&identity.source), noting_refusals(rule.clone()))
            .post_quantum(args.common.post_quantum);
    if let Some(provider) = crypto_provider() {
        builder = builder.crypto_provider(provider);
    }
    if args.common.resumption {
        builder = builder.resumption(tls::DEFAULT_TICKET_LIFETIME);
    }
    let config = builder.build().map_err(|e| format!("TLS config: {e}"))?;
    let live = live_connections(
        tls::Side::Client,
        &args.common,
        &identity,
        rule.clone(),
        None,
    )?;
    let listener = args
        .listen
        .bind_with(args.common.socket_mode, args.common.backlog)
        .await?;
    let me = status::start(&args.common, &identity, &metrics).await?;
    println!(
        "spiffe-mtls proxy client listening on {} as {me}, connecting to {} (server: {})",
        listener.local(),
        args.target,
        args.server_id
    );
    let client = Arc::new(Client {
        config: Arc::new(config),
        source: Arc::clone(&identity.source),
        rule: rule.to_string().into(),
        target: args.target.clone(),
        server_name,
        handshake_timeout: args.common.handshake_timeout,
        metrics,
        live,
    });
    accept_loop(
        listener,
        signals,
        args.common.max_conns as usize,
        args.common.drain_timeout,
        move |accepted| connection(Arc::clone(&client), accepted),
    )
    .await
    .map_err(Failure::Failed)
}

async fn connection(client: Arc<Client>, accepted: Accepted) {
    let Accepted {
        stream,
        remote,
        _slot,
        ..
    } = accepted;
    client.metrics.active.inc();
    let started = Instant::now();
    let mut record = Record {
        side: "client",
        remote: remote.map_or_else(|| "unix".to_owned(), |a| a.to_string()),
        peer: None,
        decision: "denied",
        rule: Arc::clone(&client.rule),
        traffic: Arc::new(Traffic::default()),
        started,
        end: None,
        requests: None,
        open: None,
        metrics: Arc::clone(&client.metrics),
    };
    let _gauge = Gauge(Arc::clone(&client.metrics));
    let tcp = match tokio::time::timeout(TARGET_CONNECT_TIMEOUT, client.target.connect()).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => {
            client.metrics.refused("target_unreachable");
            let why = super::forward::io_reason(&error);
            record.end = Some(format!("target {}: {why}", client.target));
            return;
        }
        Err(_) => {
            client.metrics.refused("target_unreachable");
            record.end = Some(format!(
                "target {}: no connection within {TARGET_CONNECT_TIMEOUT:?}",
                client.target
            ));
            return;
        }
    };
    let (handshake, denied) = watched(net::connect_within(
        Arc::clone(&client.config),
        client.server_name.clone(),
        BufReader::with_capacity(TLS_READ_BUFFER, tcp),
        client.handshake_timeout,
    ))
    .await;
    let Some((mut tls, server)) = finish(handshake, denied, &client.metrics, started, &mut record)
    else {
        return;
    };
    let mut live = client.live.register(server);
    let mut local = Counted::new(stream, Arc::clone(&record.traffic));
    record.end = Some(match relay_live(&mut local, &mut tls, &mut live).await {
        Ok(None) => "closed".to_owned(),
        Ok(Some(reason)) => {
            client.metrics.closed(reason);
            closed_for(reason)
        }
        Err(error) => match refusal(&error) {
            // TLS 1.3: the client's side of the handshake ends before the server has
            // checked the client's certificate; a refusal arrives as an alert afterwards.
            // The plain client's connection is closed at once; the reason is here.
            Some(_) => {
                client.metrics.refused("refused_by_server");
                let own = client
                    .source
                    .x509_context()
                    .ok()
                    .map(|context| context.default_svid().spiffe_id().clone());
                net::describe_error(&error, tls::Side::Client, own.as_ref())
            }
            None => format!("relay: {error}"),
        },
    });
}

/// Decrements the active gauge when the connection ends.
struct Gauge(Arc<Metrics>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.active.dec();
    }
}

/// The alert of a server that refused this client's certificate after the handshake.
fn refusal(error: &std::io::Error) -> Option<spiffe_mtls::rustls::AlertDescription> {
    use spiffe_mtls::rustls::{AlertDescription, Error};
    match error.get_ref()?.downcast_ref::<Error>()? {
        Error::AlertReceived(
            alert @ (AlertDescription::AccessDenied
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired),
        ) => Some(*alert),
        _ => None,
    }
}
