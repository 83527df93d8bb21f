//! `--status ADDR`: plain HTTP/1.1 with three endpoints.
//!
//! - `GET /healthz`: `200 ok` while an SVID is current (unexpired, not withdrawn), else `503`.
//! - `GET /_status`: JSON: `mode`, `spiffe_id`, `svid_serial` (hex), `svid_expires_at`
//!   (RFC 3339), `svid_seconds_left`, `trust_domains` (of the bundles), `source`,
//!   `connections` (`active`, `accepted`, `refused`), `rotations`, `last_rotation`
//!   (RFC 3339 or `null`), `workload_api_reconnects`; `healthy`.
//! - `GET /metrics`: the [`Metrics`](super::metrics) in the Prometheus text format
//!   (OpenMetrics 1.0).
//!
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

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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

/// Connections the kernel queues on the status port before they are accepted: accepting never
/// waits, so a short queue is enough.
const STATUS_BACKLOG: u32 = 256;

/// Starts the status port when `--status` was given (a Unix socket with `--socket-mode`);
/// the proxy's own SPIFFE ID, for its start line (empty while it has no SVID).
pub async fn start(
    common: &CommonArgs,
    identity: &Arc<Identity>,
    metrics: &Arc<Metrics>,
    mode: &'static str,
) -> Result<String, String> {
    start_at(
        common.status.as_ref(),
        common.socket_mode,
        identity,
        metrics,
        mode,
    )
    .await
}

/// Serves `address`, if any, in the background; the proxy's own SPIFFE ID.
async fn start_at(
    address: Option<&Address>,
    socket_mode: u32,
    identity: &Arc<Identity>,
    metrics: &Arc<Metrics>,
    mode: &'static str,
) -> Result<String, String> {
    if let Some(address) = address {
        let listener = address
            .bind_with(socket_mode, STATUS_BACKLOG)
            .await
            .map_err(|e| format!("--status: {e}"))?;
        println!("status on http://{}", listener.local());
        tokio::spawn(serve(
            listener,
            Arc::clone(identity),
            Arc::clone(metrics),
            mode,
        ));
    }
    Ok(identity
        .context()
        .map(|c| c.default_svid().spiffe_id().to_string())
        .unwrap_or_default())
}

/// Accepts for the life of the process; never waits for a free slot (see the module docs).
async fn serve(
    listener: Listener,
    identity: Arc<Identity>,
    metrics: Arc<Metrics>,
    mode: &'static str,
) {
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
        tokio::spawn(connection(
            stream,
            admitted,
            Arc::clone(&identity),
            Arc::clone(&metrics),
            mode,
        ));
    }
}

/// One connection: its request head within [`HEAD_TIMEOUT`], one answer, closed within
/// [`CONNECTION_TIMEOUT`] or when a newer connection pushes it out.
async fn connection(
    stream: Stream,
    mut admitted: Admitted,
    identity: Arc<Identity>,
    metrics: Arc<Metrics>,
    mode: &'static str,
) {
    let head = Arc::new(Notify::new());
    let Some(pushed_out) = admitted.pushed_out.take() else {
        return;
    };
    let service = {
        let (head, open, id) = (Arc::clone(&head), Arc::clone(&admitted.open), admitted.id);
        hyper::service::service_fn(move |request| {
            head.notify_one();
            lock(&open).head_received(id);
            let response = respond(&request, &identity, &metrics, mode);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    // hyper's own header timeout starts at the first byte and needs a timer: ours, below,
    // starts at the connection.
    let serving = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
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

/// The answer to one request.
fn respond(
    request: &Request<Incoming>,
    identity: &Identity,
    metrics: &Metrics,
    mode: &str,
) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let context = identity.context();
    let seconds_left = context.as_ref().map(|c| {
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
    match request.uri().path() {
        "/healthz" => match &context {
            Some(_) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no current SVID\n".into(),
            ),
        },
        "/_status" => {
            let svid = context.as_ref().map(|c| c.default_svid());
            let mut trust_domains: Vec<String> = context
                .as_ref()
                .map(|c| {
                    c.bundles()
                        .iter()
                        .map(|b| b.trust_domain().to_string())
                        .collect()
                })
                .unwrap_or_default();
            trust_domains.sort_unstable();
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
            let body = serde_json::json!({
                "mode": mode,
                "healthy": context.is_some(),
                "spiffe_id": svid.map(|s| s.spiffe_id().to_string()),
                "svid_serial": svid.map(crate::fetch::serial),
                "svid_expires_at": svid.map(|s| crate::fetch::rfc3339(s.expires_at())),
                "svid_seconds_left": seconds_left.map(f64::floor),
                "trust_domains": trust_domains,
                "source": identity.origin,
                "connections": {
                    "active": metrics.active.get(),
                    "accepted": metrics.accepted.get(),
                    "refused": refused,
                    "route_denied": metrics.refused_count("route_denied"),
                },
                "rotations": metrics.rotations.get(),
                "last_rotation": identity.last_rotation().map(crate::fetch::rfc3339),
                "workload_api_reconnects": metrics.reconnects.get(),
            });
            let mut text = serde_json::to_string_pretty(&body).unwrap_or_default();
            text.push('\n');
            reply(StatusCode::OK, "application/json", text)
        }
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz, /_status, /metrics\n".into(),
        ),
    }
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
