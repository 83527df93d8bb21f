//! `--status ADDR`: plain HTTP/1.1, the endpoints of `spiffe_mtls::health`.
//!
//! - `GET /`: the identity-health dashboard, a view of `/_status`.
//! - `GET /healthz`: `200 ok` while an SVID is current (unexpired, not withdrawn), else `503`.
//! - `GET /_status`: the monitor's JSON (the README's "Dashboard" section), plus
//!   `connections` (`active`, `accepted`, `refused`, `route_denied`).
//! - `GET /metrics`: the [`Metrics`](super::metrics) in the Prometheus text format
//!   (OpenMetrics 1.0), the monitor's per-peer and per-SVID metrics among them.
//!
//! A request head larger than [`MAX_REQUEST_HEAD`] is refused; a request body is never read.
//! Only a `Host` that is an IP address, `localhost` or a `--status-host` name is answered
//! (`421` otherwise: a page of another site reaching the port through DNS rebinding), except
//! on `/healthz`.
//! The page polls `/_status` (no server-sent events), so a viewer holds no connection open
//! between polls.
//! # Slow and silent clients
//! Liveness probes must get their answer while anyone who can reach the port holds
//! connections open to it:
//! - One request per connection (the response says `Connection: close`).
//! - A client has [`HEAD_TIMEOUT`] (5 s) from its connection to send its whole request head,
//!   whether it sends nothing or trickles bytes; then it is closed. A connection lives at most
//!   [`CONNECTION_TIMEOUT`] (10 s) in all, a client that does not read its response included.
//! - At most [`MAX_CONNECTIONS`] (64) connections are open at once, and accepting never waits
//!   for a free one: at the bound, the new connection is kept and the oldest connection still
//!   waiting for its request head is closed (the oldest of all if every one has sent its
//!   head). So connections held open, however many, cannot keep a probe out: each new
//!   connection pushes the oldest idle one out, and a probe, which sends its request at once,
//!   is answered before it is the oldest. What is left is a flood opening 64 connections
//!   between a probe's connect and its request, which no listener on a reachable port
//!   withstands; keep the port on loopback or a Unix socket.
//! - A Unix socket (`--status unix:PATH`) gets `--socket-mode` (0600 by default), in a
//!   directory [`check_socket_dir`](super::address::check_socket_dir) accepts.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use spiffe_mtls::dev_server::parse_duration;
use spiffe_mtls::health::{HealthMonitor, Thresholds};
use tokio::sync::{Notify, oneshot};

use super::CommonArgs;
use super::address::{Address, Listener, Stream};
use super::forward::ProxyBody;
use super::identity::Identity;
use super::metrics::Metrics;

/// How long a client has, from its connection, to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a status connection may live in all (its head, the answer, writing it).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The most status connections open at once; at the bound a new one closes the oldest that
/// has not sent its request head.
pub const MAX_CONNECTIONS: usize = 64;

/// What answers each request of a status listener.
pub type Respond = Arc<dyn Fn(&Request<Incoming>) -> Response<ProxyBody> + Send + Sync>;

/// The largest request head read (hyper's smallest buffer): a longer one is refused.
pub const MAX_REQUEST_HEAD: usize = 8192;

/// Connections the kernel queues on the status port before they are accepted: accepting never
/// waits, so a short queue is enough.
const STATUS_BACKLOG: u32 = 256;

/// The status listener's options, shared by `proxy` and `dev-server`: where, and when the
/// dashboard raises its alerts.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Serve the dashboard (/), /_status (JSON), /healthz and /metrics (Prometheus) over
    /// plain HTTP here: 127.0.0.1:PORT, [::1]:PORT or unix:/path. Loopback only, unless
    /// --status-allow-remote.
    #[arg(long, value_name = "ADDR", value_parser = Address::parse)]
    pub status: Option<Address>,
    /// Let --status listen on an address other than loopback (it names the workload's
    /// peers and decisions: keep it to operators).
    #[arg(long, requires = "status")]
    pub status_allow_remote: bool,
    /// Also answer requests whose Host is NAME (repeatable): by default the status port
    /// answers only a Host that is an IP address or localhost, so that a web page elsewhere
    /// cannot read it through DNS rebinding.
    #[arg(long, value_name = "NAME", requires = "status")]
    pub status_host: Vec<String>,
    /// Alert (svid_not_rotated) when an SVID is past this fraction of its lifetime.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.75, value_parser = parse_fraction)]
    pub alert_rotation_fraction: f64,
    /// Alert (workload_api_unreachable) when the Workload API stream is down this long.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    pub alert_unreachable: Duration,
    /// Alert (peer_denials) when one peer is denied more than N times in a minute.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub alert_denials_per_minute: u32,
    /// Alert (peer_call_spike) when a peer's calls in the last minute are above F times its
    /// own moving average...
    #[arg(long, value_name = "F", default_value_t = 5.0, value_parser = parse_factor)]
    pub alert_spike_factor: f64,
    /// ... and at least N.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub alert_spike_min_calls: u32,
    /// Alert (root_expiring) when a bundle root expires within this long. With SPIRE's
    /// default CA TTL (24h) every root does: set it below the CA TTL there.
    #[arg(long, value_name = "DUR", default_value = "7d", value_parser = parse_duration)]
    pub alert_root_expiry: Duration,
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a fraction between 0 and 1")),
    }
}

fn parse_factor(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 1.0 => Ok(value),
        _ => Err(format!("{text:?} is not a factor of at least 1")),
    }
}

impl StatusArgs {
    /// The dashboard's monitor of a workload in `mode`, when `--status` serves it.
    pub fn monitor(&self, mode: &str) -> Option<HealthMonitor> {
        self.status.as_ref().map(|_| {
            let mut thresholds = Thresholds::default();
            thresholds.svid_rotation_fraction = self.alert_rotation_fraction;
            thresholds.workload_api_unreachable = self.alert_unreachable;
            thresholds.peer_denials_per_minute = self.alert_denials_per_minute;
            thresholds.peer_spike_factor = self.alert_spike_factor;
            thresholds.peer_spike_min_calls = self.alert_spike_min_calls;
            thresholds.root_expiry = self.alert_root_expiry;
            self.status_host.iter().fold(
                HealthMonitor::new(mode).with_thresholds(thresholds),
                |monitor, name| monitor.allow_host(name.clone()),
            )
        })
    }

    /// Refuses a TCP `--status` that is not loopback without `--status-allow-remote` (a
    /// usage error, checked before anything starts).
    pub async fn check(&self) -> Result<(), String> {
        let Some(address @ Address::Tcp { .. }) = &self.status else {
            return Ok(());
        };
        if self.status_allow_remote {
            return Ok(());
        }
        let addresses = address
            .resolve()
            .await
            .map_err(|e| format!("cannot resolve --status {address}: {e}"))?;
        if addresses.is_empty() || addresses.iter().any(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "--status {address} is not a loopback address: the status port names this \
                 workload's peers and decisions; use 127.0.0.1 or [::1], or add \
                 --status-allow-remote"
            ));
        }
        Ok(())
    }

    /// Binds `--status` (a Unix socket with `socket_mode`) and serves `respond` on it in the
    /// background (after [`StatusArgs::check`]).
    pub async fn serve(&self, socket_mode: u32, respond: Respond) -> Result<(), String> {
        let Some(address) = &self.status else {
            return Ok(());
        };
        let listener = address
            .bind_with(socket_mode, STATUS_BACKLOG)
            .await
            .map_err(|e| format!("--status: {e}"))?;
        println!("status on http://{}", listener.local());
        tokio::spawn(serve(listener, respond));
        Ok(())
    }
}

/// Starts the status port when `--status` was given; the proxy's own SPIFFE ID, for its
/// start line (empty while it has no SVID).
pub async fn start(
    common: &CommonArgs,
    identity: &Arc<Identity>,
    metrics: &Arc<Metrics>,
) -> Result<String, String> {
    if let Some(monitor) = &metrics.monitor {
        monitor.watch(Arc::clone(&identity.source), identity.origin.clone());
        let counts = Arc::clone(metrics);
        monitor.section("connections", move || connections(&counts));
        let (identity, metrics) = (Arc::clone(identity), Arc::clone(metrics));
        common
            .status
            .serve(
                common.socket_mode,
                Arc::new(move |request: &Request<Incoming>| respond(request, &identity, &metrics)),
            )
            .await?;
    }
    Ok(identity
        .context()
        .map(|c| c.default_svid().spiffe_id().to_string())
        .unwrap_or_default())
}

/// Accepts for the life of the process; never waits for a free slot (see the module docs).
pub async fn serve(listener: Listener, respond: Respond) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and the like: let the timeouts free descriptors.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = Admitted::new(&open);
        tokio::spawn(connection(stream, admitted, Arc::clone(&respond)));
    }
}

/// One connection: its request head within [`HEAD_TIMEOUT`], one answer, closed within
/// [`CONNECTION_TIMEOUT`] or when a newer connection pushes it out.
async fn connection(stream: Stream, mut admitted: Admitted, respond: Respond) {
    let head = Arc::new(Notify::new());
    let Some(pushed_out) = admitted.pushed_out.take() else {
        return;
    };
    let service = {
        let (head, open, id) = (Arc::clone(&head), Arc::clone(&admitted.open), admitted.id);
        hyper::service::service_fn(move |request| {
            head.notify_one();
            lock(&open).head_received(id);
            let response = respond(&request);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    // hyper's own header timeout starts at the first byte and needs a timer: ours, below,
    // starts at the connection.
    let serving = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let head_deadline = async {
        if tokio::time::timeout(HEAD_TIMEOUT, head.notified())
            .await
            .is_ok()
        {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = serving => {}
        () = head_deadline => {}
        _ = pushed_out => {}
        () = tokio::time::sleep(CONNECTION_TIMEOUT) => {}
    }
    drop(admitted);
}

/// The open status connections, oldest first.
#[derive(Debug, Default)]
struct Open {
    /// The next connection's number (numbers grow with age).
    next: u64,
    /// Each open connection: whether its request head arrived, and how to push it out.
    connections: BTreeMap<u64, Slot>,
}

/// One open connection in [`Open`].
#[derive(Debug)]
struct Slot {
    /// Closes the connection when sent or dropped.
    push_out: oneshot::Sender<()>,
    /// Its request head arrived (it is being answered).
    head_received: bool,
}

impl Open {
    /// Registers a new connection; at [`MAX_CONNECTIONS`], first pushes out the oldest
    /// connection without its request head (else the oldest).
    fn admit(&mut self) -> (u64, oneshot::Receiver<()>) {
        if self.connections.len() >= MAX_CONNECTIONS {
            let victim = self
                .connections
                .iter()
                .find(|(_, slot)| !slot.head_received)
                .or_else(|| self.connections.iter().next())
                .map(|(id, _)| *id);
            if let Some(slot) = victim.and_then(|id| self.connections.remove(&id)) {
                let _ = slot.push_out.send(());
            }
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        let (push_out, pushed_out) = oneshot::channel();
        self.connections.insert(
            id,
            Slot {
                push_out,
                head_received: false,
            },
        );
        (id, pushed_out)
    }

    /// Marks connection `id` as being answered (pushed out only when all are).
    fn head_received(&mut self, id: u64) {
        if let Some(slot) = self.connections.get_mut(&id) {
            slot.head_received = true;
        }
    }
}

/// A connection's place in [`Open`], given up when dropped.
struct Admitted {
    /// The registry.
    open: Arc<Mutex<Open>>,
    /// The connection's number.
    id: u64,
    /// Resolves when a newer connection pushed this one out.
    pushed_out: Option<oneshot::Receiver<()>>,
}

impl Admitted {
    /// Registers a new connection in `open`.
    fn new(open: &Arc<Mutex<Open>>) -> Self {
        let (id, pushed_out) = lock(open).admit();
        Self {
            open: Arc::clone(open),
            id,
            pushed_out: Some(pushed_out),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.open).connections.remove(&self.id);
    }
}

/// The registry, even if a thread panicked holding it (its state is a plain map).
fn lock(open: &Mutex<Open>) -> MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer to one request: `/metrics` from the proxy's registry, every other path from
/// the monitor.
fn respond(
    request: &Request<Incoming>,
    identity: &Identity,
    metrics: &Metrics,
) -> Response<ProxyBody> {
    if let Some(stream) = identity.source.stream_state() {
        metrics.sync_reconnects(stream.reconnects);
    }
    let seconds_left = identity.context().map(|c| {
        match c
            .default_svid()
            .expires_at()
            .duration_since(SystemTime::now())
        {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        }
    });
    metrics.expiry_seconds.set(seconds_left.unwrap_or(0.0));
    let Some(monitor) = &metrics.monitor else {
        return reply(StatusCode::NOT_FOUND, "text/plain", String::new());
    };
    if request.uri().path() != "/healthz"
        && let Some(refused) = monitor.misdirected_request(request)
    {
        return to_response(refused);
    }
    let get = request.method() == Method::GET || request.method() == Method::HEAD;
    if get && request.uri().path() == "/metrics" {
        monitor.refresh_metrics();
        return reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        );
    }
    from_answer(monitor, request)
}

/// The monitor's answer to `request`.
pub fn from_answer(monitor: &HealthMonitor, request: &Request<Incoming>) -> Response<ProxyBody> {
    to_response(monitor.answer_request(request))
}

/// `answer` as a response.
fn to_response(answer: spiffe_mtls::health::Answer) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::from(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in answer.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// The `connections` member of `/_status`.
fn connections(metrics: &Metrics) -> serde_json::Value {
    let refused: u64 = [
        "unauthorized",
        "untrusted_certificate",
        "no_certificate",
        "handshake_timeout",
        "handshake_failed",
        "target_unreachable",
    ]
    .into_iter()
    .map(|reason| metrics.refused_count(reason))
    .sum();
    serde_json::json!({
        "active": metrics.active.get(),
        "accepted": metrics.accepted.get(),
        "refused": refused,
        "route_denied": metrics.refused_count("route_denied"),
    })
}

/// A response with a body of `content_type`.
fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
