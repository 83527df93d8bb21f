//! Identity health: what an operator looks at. A [`HealthMonitor`] follows a workload's
//! source (its SVIDs, their rotations, its bundles, the Workload API stream) and every audit
//! decision of the process (the peers seen, accepted and denied, the last 200 decisions),
//! raises alerts by [`Thresholds`], and serves it all:
//!
//! - `GET /`: a self-contained dashboard page (inline CSS and script, no outside request),
//!   a view of `/_status` polled every second;
//! - `GET /_status`: the JSON document, every field the page shows (see the README's
//!   "Dashboard" section);
//! - `GET /metrics`: per-peer counters (at most [`MAX_PEERS`] peers) and SVID time-to-expiry
//!   gauges, Prometheus text;
//! - `GET /healthz`: `ok` while the source has a current SVID.
//!
//! [`HealthMonitor::router`] mounts them on an `axum::Router`; the `spiffe-mtls` proxy and
//! dev server serve them on `--status`.
//!
//! ```no_run
//! # async fn run(source: std::sync::Arc<dyn spiffe_mtls::source::X509Source>) {
//! use spiffe_mtls::health::HealthMonitor;
//!
//! let monitor = HealthMonitor::new("agent server");
//! monitor.watch(source, "Workload API unix:///run/spire/agent.sock");
//! let status = monitor.router(); // mount on a loopback-only listener
//! # let _ = status;
//! # }
//! ```

mod alerts;
mod metrics;
mod peers;
mod router;
mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

pub use alerts::Thresholds;
pub use router::Answer;

use crate::audit::{AuditEvent, AuditSink, Decision, Registration};
use crate::source::X509Source;
use crate::spiffe_id::SpiffeId;
use metrics::PeerMetrics;
use peers::{Peers, Tick};

/// The most peers the table (and the per-peer metrics) keep: the least recently seen peer
/// without open connections leaves first.
pub const MAX_PEERS: usize = 1000;

/// The rule of a denial for a handshake signature that did not verify.
const UNPROVEN_RULE: &str = "handshake signature";

/// The most recent decisions kept for the page.
pub const MAX_DECISIONS: usize = 200;

/// Extra members of `/_status` (a section's name, and what it holds now).
type Section = Box<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Follows a workload's identity and the process's audit decisions; see the
/// [module docs](self).
///
/// Clones share the monitor. It receives the audit events of the whole process while it
/// lives (see [`crate::audit::register`]).
#[derive(Clone)]
pub struct HealthMonitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

struct Inner {
    mode: String,
    thresholds: Mutex<Thresholds>,
    state: Mutex<State>,
    watched: Mutex<Option<Watched>>,
    sections: Mutex<Vec<(String, Section)>>,
    metrics: PeerMetrics,
    registration: Mutex<Option<Registration>>,
    /// Host names answered besides IP addresses and `localhost`.
    allowed_hosts: Mutex<Vec<String>>,
}

/// The source a monitor follows.
struct Watched {
    source: Arc<dyn X509Source>,
    description: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the monitor counted.
#[derive(Default)]
struct State {
    peers: Peers,
    decisions: VecDeque<AuditEvent>,
    rotations: u64,
    last_rotation: Option<SystemTime>,
    /// When each trust domain's bundle last changed (since the monitor started).
    bundle_changes: HashMap<String, SystemTime>,
}

impl HealthMonitor {
    /// A monitor of a workload running as `mode` (shown on the page: `proxy server`,
    /// `agent server`...), with the default [`Thresholds`]; it starts receiving the
    /// process's audit events at once.
    pub fn new(mode: impl Into<String>) -> Self {
        let inner = Arc::new(Inner {
            mode: mode.into(),
            thresholds: Mutex::new(Thresholds::default()),
            state: Mutex::new(State::default()),
            watched: Mutex::new(None),
            sections: Mutex::new(Vec::new()),
            metrics: PeerMetrics::default(),
            registration: Mutex::new(None),
            allowed_hosts: Mutex::new(Vec::new()),
        });
        let sink = Arc::new(MonitorSink(Arc::downgrade(&inner)));
        *lock(&inner.registration) = Some(crate::audit::register(sink));
        Self { inner }
    }

    /// Raises alerts by `thresholds` from now on.
    #[must_use]
    pub fn with_thresholds(self, thresholds: Thresholds) -> Self {
        *lock(&self.inner.thresholds) = thresholds;
        self
    }

    /// Follows `source` (described as `description`, e.g. `Workload API unix:///...`):
    /// its SVIDs, their rotations, its bundles and, for a Workload API source, its stream.
    /// Replaces the source followed before. Call it inside a tokio runtime.
    pub fn watch(&self, source: Arc<dyn X509Source>, description: impl Into<String>) {
        let task = tokio::spawn(follow(Arc::downgrade(&self.inner), Arc::clone(&source)));
        *lock(&self.inner.watched) = Some(Watched {
            source,
            description: description.into(),
            task,
        });
    }

    /// Adds `name` to `/_status`, holding what `value` returns at each request (the proxy's
    /// connection counts, the dev server's entries...). A name the document already has is
    /// replaced.
    pub fn section(
        &self,
        name: impl Into<String>,
        value: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) {
        lock(&self.inner.sections).push((name.into(), Box::new(value)));
    }

    /// Counts an open connection of `peer` until the returned guard is dropped.
    pub fn connection_opened(&self, peer: &SpiffeId) -> OpenConnection {
        let (id, trust_domain) = (peer.to_string(), peer.trust_domain().to_string());
        self.inner.connection(&id, &trust_domain, true);
        OpenConnection {
            monitor: Arc::downgrade(&self.inner),
            id,
            trust_domain,
        }
    }

    /// Registers the per-peer and SVID metrics in `registry` (the caller encodes it; call
    /// [`HealthMonitor::refresh_metrics`] before each encoding).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// Sets the SVID time-to-expiry gauges to their values now.
    pub fn refresh_metrics(&self) {
        let context = self.source().and_then(|s| s.x509_context().ok());
        self.inner.metrics.refresh_svids(context.as_deref());
    }

    /// The source followed, if any.
    fn source(&self) -> Option<Arc<dyn X509Source>> {
        lock(&self.inner.watched)
            .as_ref()
            .map(|w| Arc::clone(&w.source))
    }
}

impl Inner {
    /// A connection of `id` opened or closed.
    fn connection(&self, id: &str, trust_domain: &str, opened: bool) {
        let mut state = lock(&self.state);
        let (open, evicted) = state
            .peers
            .connection(id, trust_domain, opened, Tick::now());
        // Under the lock: the labels follow the table's order of changes.
        self.metrics.connection(id, open, evicted.as_deref());
    }

    /// One audit decision.
    fn record(&self, event: &AuditEvent) {
        // A handshake signature that did not verify: whoever it was did not prove the key of
        // the certificate it presented (anyone can replay a public chain), so the denial goes
        // to the peers without a verified ID, not to the ID the certificate names.
        let unproven = event.rule == UNPROVEN_RULE;
        let (id, trust_domain) = match (&event.peer, &event.trust_domain) {
            (Some(id), Some(trust_domain)) if !unproven => (id.as_str(), trust_domain.as_str()),
            (Some(id), None) if !unproven => (id.as_str(), "-"),
            _ => ("-", "-"),
        };
        let mut state = lock(&self.state);
        if state.decisions.len() >= MAX_DECISIONS {
            state.decisions.pop_front();
        }
        state.decisions.push_back(event.clone());
        let accepted = match event.decision {
            Decision::Accepted => true,
            Decision::Denied => false,
            // A connection closed: shown with the decisions, not counted as a call.
            _ => return,
        };
        let evicted = state.peers.decided(
            id,
            trust_domain,
            accepted,
            event.reason.as_deref(),
            Tick::now(),
        );
        self.metrics.decided(id, accepted, evicted.as_deref());
    }
}

/// A connection counted open by [`HealthMonitor::connection_opened`] until dropped.
#[derive(Debug)]
pub struct OpenConnection {
    monitor: Weak<Inner>,
    id: String,
    trust_domain: String,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if let Some(inner) = self.monitor.upgrade() {
            inner.connection(&self.id, &self.trust_domain, false);
        }
    }
}

/// The monitor as an audit sink (weakly held: the registry does not keep it alive).
struct MonitorSink(Weak<Inner>);

impl AuditSink for MonitorSink {
    fn record(&self, event: &AuditEvent) {
        if let Some(inner) = self.0.upgrade() {
            inner.record(event);
        }
    }
}

/// Follows `source`'s changes: SVID rotations and bundle changes.
async fn follow(monitor: Weak<Inner>, source: Arc<dyn X509Source>) {
    let mut updates = source.updates();
    let fingerprint = |source: &dyn X509Source| {
        source.x509_context().ok().map(|context| {
            let leaves: Vec<Vec<u8>> = context
                .svids()
                .iter()
                .map(|svid| svid.leaf().to_vec())
                .collect();
            let bundles: HashMap<String, Vec<Vec<u8>>> = context
                .bundles()
                .iter()
                .map(|bundle| {
                    let roots = bundle.roots().map(|root| root.to_vec()).collect();
                    (bundle.trust_domain().to_string(), roots)
                })
                .collect();
            (leaves, bundles)
        })
    };
    let mut last = fingerprint(source.as_ref());
    while updates.changed().await.is_ok() {
        let Some(inner) = monitor.upgrade() else {
            return;
        };
        let now_seen = fingerprint(source.as_ref());
        if let (Some((leaves, bundles)), Some((old_leaves, old_bundles))) = (&now_seen, &last) {
            let now = SystemTime::now();
            let mut state = lock(&inner.state);
            if leaves.first() != old_leaves.first() {
                state.rotations += 1;
                state.last_rotation = Some(now);
            }
            for (trust_domain, roots) in bundles {
                if old_bundles.get(trust_domain) != Some(roots) {
                    state.bundle_changes.insert(trust_domain.clone(), now);
                }
            }
        }
        if now_seen.is_some() {
            last = now_seen;
        }
    }
}

/// A mutex's data, even if a thread panicked holding it (counters stay usable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An optional time as RFC 3339 (milliseconds) or `null`.
fn serialize_optional_time<S: serde::Serializer>(
    time: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.serialize_str(&crate::audit::rfc3339_millis(*time)),
        None => s.serialize_none(),
    }
}
