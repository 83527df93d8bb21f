//! `proxy server`: mTLS in, plain out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spiffe_mtls::authorize::{self, Authorizer, WatchedPolicy};
use spiffe_mtls::dev_server::parse_duration;
use spiffe_mtls::net::LiveConnections;
use spiffe_mtls::rustls::ServerConfig;
use spiffe_mtls::{SpiffeId, SvidVerifier, TrustDomain, net, tls};
use tokio::io::{AsyncWriteExt, BufReader};

use super::address::Address;
use super::audit::Record;
use super::counted::{Counted, Traffic};
use super::handshake::{finish, noting_refusals, watched};
use super::identity::{Identity, IdentityArgs};
use super::metrics::Metrics;
use super::serve::{Accepted, Signals, TLS_READ_BUFFER, accept_loop, closed_for, relay_live};
use super::{CommonArgs, http, proxy_protocol, status};
use crate::Failure;

/// How long connecting to the target may take.
pub const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept mTLS with the current SVID, authorize the client, relay to a plain target.
#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("authorization")
        .required(true)
        .args(["allow_id", "allow_td", "allow_prefix", "policy"])
))]
pub struct Args {
    /// Where to accept mTLS: HOST:PORT or unix:/path.
    #[arg(long, value_name = "ADDR", value_parser = Address::parse)]
    listen: Address,
    /// The plain service: HOST:PORT or unix:/path.
    #[arg(long, value_name = "ADDR", value_parser = Address::parse)]
    target: Address,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Allow clients with exactly these SPIFFE IDs.
    #[arg(long, value_name = "ID", num_args = 1..)]
    allow_id: Vec<SpiffeId>,
    /// Allow clients of these trust domains.
    #[arg(long, value_name = "TD", num_args = 1..)]
    allow_td: Vec<TrustDomain>,
    /// Allow clients whose ID is this ID or below it (segment by segment).
    #[arg(long, value_name = "ID", num_args = 1..)]
    allow_prefix: Vec<SpiffeId>,
    /// A policy file: `[connect]` decides who may connect, `revoked = [...]` refuses IDs
    /// everywhere; with --http, `[routes."/path"]` decide per path prefix (403 naming the
    /// route). Watched: an edit applies to the next handshake and request, and closes the
    /// open connections it no longer allows (an invalid edit is logged and ignored).
    #[arg(long, value_name = "FILE")]
    policy: Option<std::path::PathBuf>,
    /// Speak HTTP/1.1 and HTTP/2 to clients and HTTP/1.1 to the target, with the verified
    /// SPIFFE ID in a header (any client-supplied value removed).
    #[arg(long)]
    http: bool,
    /// With --http: the identity header (default x-spiffe-id).
    #[arg(long, value_name = "NAME", requires = "http")]
    id_header: Option<String>,
    /// With --http: speak HTTP/2 without TLS (h2c, prior knowledge) to the target.
    #[arg(long, requires = "http")]
    h2c: bool,
    /// With --http: a client must send its first bytes within this long after its TLS
    /// handshake, and each HTTP/1 request head within this long (on a kept-alive HTTP/1
    /// connection, counted from the previous response); a client that says nothing is
    /// disconnected then.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration, requires = "http")]
    first_read_timeout: Duration,
    /// With --http: close a connection with no request in flight for this long, from the end
    /// of its last request (HTTP/1 kept alive and HTTP/2 alike; a long response or stream is
    /// never cut), and cut a request body that brings no bytes for this long.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration, requires = "http")]
    idle_timeout: Duration,
    /// TCP mode: send a PROXY protocol v2 header to the target first, with the client's
    /// address and its SPIFFE ID in a TLV of type 0xE0.
    #[arg(long, conflicts_with = "http")]
    proxy_protocol: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// The crypto provider of both proxies' TLS configs: aws-lc-rs when the binary has it (ring
/// has no post-quantum group, so `--post-quantum` needs it), else the library's default.
pub fn crypto_provider() -> Option<Arc<spiffe_mtls::rustls::crypto::CryptoProvider>> {
    #[cfg(feature = "aws-lc-rs")]
    return Some(Arc::new(
        spiffe_mtls::rustls::crypto::aws_lc_rs::default_provider(),
    ));
    #[cfg(not(feature = "aws-lc-rs"))]
    None
}

/// What every connection task shares.
pub struct Server {
    config: Arc<ServerConfig>,
    rule: Arc<str>,
    target: Address,
    handshake_timeout: Duration,
    proxy_protocol: bool,
    http: Option<http::Forwarding>,
    metrics: Arc<Metrics>,
    live: LiveConnections,
}

/// The connection rule and, with --policy, the watched policy file.
fn authorization(args: &Args) -> Result<(Authorizer, Option<WatchedPolicy>), String> {
    if let Some(path) = &args.policy {
        let policy = WatchedPolicy::open(path).map_err(|e| format!("--policy: {e}"))?;
        if !args.http && policy.current().route_names().next().is_some() {
            eprintln!(
                "note: {} has routes; in TCP mode only [connect] and revoked apply (routes need --http)",
                path.display()
            );
        }
        return Ok((policy.connect(), Some(policy)));
    }
    let rule = if !args.allow_id.is_empty() {
        match args.allow_id.as_slice() {
            [one] => authorize::id(one.clone()),
            many => authorize::one_of(many.iter().cloned()),
        }
    } else if !args.allow_td.is_empty() {
        authorize::member_of(args.allow_td.iter().cloned())
    } else {
        match args.allow_prefix.as_slice() {
            [one] => authorize::id_prefix(one.clone()),
            many => authorize::any_of(many.iter().cloned().map(authorize::id_prefix)),
        }
    };
    Ok((rule, None))
}

/// Runs `proxy server` until SIGTERM or SIGINT and the drain; the reason when it cannot start
/// (a usage error for an unusable option or file).
pub async fn run(args: &Args) -> Result<(), Failure> {
    let signals = Signals::watch()?;
    args.common.status.check().await.map_err(Failure::Usage)?;
    let (rule, policy) = authorization(args).map_err(Failure::Usage)?;
    let http = if args.http {
        Some(
            http::Forwarding::new(
                args.target.clone(),
                args.id_header.as_deref(),
                policy
                    .clone()
                    .filter(|p| p.current().route_names().next().is_some()),
                args.h2c,
                net::ConnectionTimeouts::new()
                    .first_read(args.first_read_timeout)
                    .header_read(args.first_read_timeout)
                    .idle(args.idle_timeout),
                args.common.max_conns as usize,
            )
            .map_err(Failure::Usage)?,
        )
    } else {
        None
    };
    let decisions = super::audit::DecisionLog::open(&args.common)?;
    let metrics = Arc::new(Metrics::new(args.common.status.monitor("server")));
    if let (Some(decisions), Some(monitor)) = (&decisions, &metrics.monitor) {
        decisions.show_on(monitor);
    }
    let identity = Identity::open(&args.identity, &metrics).await?;
    let mut builder =
        tls::server_config(Arc::clone(&identity.source), noting_refusals(rule.clone()))
            .post_quantum(args.common.post_quantum);
    if let Some(provider) = crypto_provider() {
        builder = builder.crypto_provider(provider);
    }
    if args.common.resumption {
        builder = builder.resumption(tls::DEFAULT_TICKET_LIFETIME);
    }
    if args.http {
        builder = builder.alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
    let config = builder.build().map_err(|e| format!("TLS config: {e}"))?;
    let live = live_connections(
        tls::Side::Server,
        &args.common,
        &identity,
        rule.clone(),
        policy,
    )?;
    let listener = args
        .listen
        .bind_with(args.common.socket_mode, args.common.backlog)
        .await?;
    let me = status::start(&args.common, &identity, &metrics).await?;
    println!(
        "spiffe-mtls proxy server listening on {} as {me}, forwarding {} to {} (allow: {rule})",
        listener.local(),
        if args.http { "HTTP" } else { "TCP" },
        args.target,
    );
    let server = Arc::new(Server {
        config: Arc::new(config),
        rule: rule.to_string().into(),
        target: args.target.clone(),
        handshake_timeout: args.common.handshake_timeout,
        proxy_protocol: args.proxy_protocol,
        http,
        metrics,
        live,
    });
    accept_loop(
        listener,
        signals,
        args.common.max_conns as usize,
        args.common.drain_timeout,
        move |accepted| connection(Arc::clone(&server), accepted),
    )
    .await
    .map_err(Failure::Failed)
}

/// The registry of live connections: each is checked again against the source's current
/// bundles and the rule (and the policy file's revoked list) after every bundle update and
/// policy reload, and closed at `--max-conn-lifetime`.
pub fn live_connections(
    side: tls::Side,
    common: &CommonArgs,
    identity: &Identity,
    rule: Authorizer,
    policy: Option<WatchedPolicy>,
) -> Result<LiveConnections, String> {
    let live = LiveConnections::for_side(side);
    live.set_max_lifetime(common.max_conn_lifetime);
    let verifier = match crypto_provider() {
        Some(provider) => SvidVerifier::with_provider(&provider),
        None => SvidVerifier::new().map_err(|e| format!("TLS config: {e}"))?,
    };
    // Runs for as long as the source does (the whole process).
    drop(live.recheck_on_changes(Arc::clone(&identity.source), verifier, rule, policy));
    Ok(live)
}

/// Decrements the active gauge when the connection ends.
struct Active(Arc<Metrics>);

impl Active {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.active.inc();
        Self(Arc::clone(metrics))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.dec();
    }
}

/// One client: handshake, then relay or HTTP.
async fn connection(server: Arc<Server>, accepted: Accepted) {
    let Accepted {
        stream,
        remote,
        local,
        draining,
        _slot,
    } = accepted;
    let _active = Active::new(&server.metrics);
    let started = Instant::now();
    let mut record = Record {
        side: "server",
        remote: remote.map_or_else(|| "unix".to_owned(), |a| a.to_string()),
        peer: None,
        decision: "denied",
        rule: Arc::clone(&server.rule),
        traffic: Arc::new(Traffic::default()),
        started,
        end: None,
        requests: None,
        open: None,
        metrics: Arc::clone(&server.metrics),
    };
    let (handshake, denied) = watched(net::accept_within(
        Arc::clone(&server.config),
        BufReader::with_capacity(TLS_READ_BUFFER, stream),
        server.handshake_timeout,
    ))
    .await;
    let Some((tls, peer)) = finish(handshake, denied, &server.metrics, started, &mut record) else {
        return;
    };
    let traffic = Arc::clone(&record.traffic);
    let mut client = Counted::new(tls, traffic);
    let mut live = server.live.register(peer.clone());

    if let Some(forwarding) = &server.http {
        let counts = Arc::default();
        record.requests = Some(Arc::clone(&counts));
        let end = forwarding
            .serve(
                client,
                peer,
                remote,
                counts,
                &server.metrics,
                draining,
                &mut live,
            )
            .await;
        record.end = Some(end);
        return;
    }

    let target = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, server.target.connect()).await;
    let mut target = match target {
        Ok(Ok(target)) => target,
        Ok(Err(error)) => {
            server.metrics.refused("target_unreachable");
            let why = super::forward::io_reason(&error);
            record.end = Some(format!("target {}: {why}", server.target));
            return;
        }
        Err(_) => {
            server.metrics.refused("target_unreachable");
            record.end = Some(format!(
                "target {}: no connection within {TARGET_CONNECT_TIMEOUT:?}",
                server.target
            ));
            return;
        }
    };
    if server.proxy_protocol {
        let header = proxy_protocol::header(remote, local, &peer.spiffe_id().to_string());
        if let Err(error) = target.write_all(&header).await {
            record.end = Some(format!("target: PROXY header not sent: {error}"));
            return;
        }
    }
    record.end = Some(
        match relay_live(&mut client, &mut target, &mut live).await {
            Ok(None) => "closed".to_owned(),
            Ok(Some(reason)) => {
                server.metrics.closed(reason);
                closed_for(reason)
            }
            Err(error) => format!("relay: {error}"),
        },
    );
}
