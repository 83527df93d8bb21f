//! `/metrics`: the proxy's Prometheus metrics, kept and encoded by `prometheus-client`.
//!
//! | Metric | Type | Labels |
//! |---|---|---|
//! | `spiffe_proxy_connections_accepted_total` | counter | |
//! | `spiffe_proxy_connections_refused_total` | counter | `reason`: `unauthorized`, `untrusted_certificate`, `no_certificate`, `handshake_timeout`, `handshake_failed`, `target_unreachable`, `route_denied` (HTTP requests refused by a route), `path_refused` (HTTP requests whose path has no canonical form), `refused_by_server` (a `proxy client` whose certificate the server refused) |
//! | `spiffe_proxy_connections_closed_total` | counter | `reason`: why a live connection was closed after its handshake: `expired`, `bundle`, `policy`, `revoked`, `lifetime` |
//! | `spiffe_proxy_connections_active` | gauge | |
//! | `spiffe_proxy_handshakes_total` | counter | `result`: `ok`, `failed` |
//! | `spiffe_proxy_resumed_handshakes_total` | counter | the `ok` handshakes that resumed a session (`--resumption`) |
//! | `spiffe_proxy_handshake_duration_seconds` | histogram | |
//! | `spiffe_proxy_bytes_total` | counter | `direction`: `in` (client to target), `out` |
//! | `spiffe_proxy_svid_expiry_seconds` | gauge | seconds until the current SVID expires |
//! | `spiffe_proxy_svid_rotations_total` | counter | |
//! | `spiffe_proxy_workload_api_reconnects_total` | counter | |
//!
//! With `--status`, also the dashboard's per-peer and per-SVID metrics
//! (`spiffe_peer_decisions_total`, `spiffe_peer_connections_open`,
//! `spiffe_svid_expiry_seconds`; see `spiffe_mtls::health`).

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use spiffe_mtls::health::HealthMonitor;

type Labels = [(&'static str, &'static str); 1];

/// Every metric, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Connections accepted.
    pub accepted: Counter,
    refused: Family<Labels, Counter>,
    closed: Family<Labels, Counter>,
    /// Connections open.
    pub active: Gauge<i64, AtomicI64>,
    handshakes: Family<Labels, Counter>,
    /// Handshakes that resumed a session.
    pub resumed: Counter,
    handshake_seconds: Histogram,
    bytes: Family<Labels, Counter>,
    /// Seconds until the SVID expires (set at each scrape).
    pub expiry_seconds: Gauge<f64, AtomicU64>,
    /// SVID changes.
    pub rotations: Counter,
    /// Workload API reconnections.
    pub reconnects: Counter,
    /// The dashboard's monitor (with `--status`).
    pub monitor: Option<HealthMonitor>,
}

impl Metrics {
    /// The metrics, registered, with those of `monitor` if any.
    pub fn new(monitor: Option<HealthMonitor>) -> Self {
        let mut registry = Registry::default();
        let accepted = Counter::default();
        let refused = Family::<Labels, Counter>::default();
        let closed = Family::<Labels, Counter>::default();
        let active = Gauge::<i64, AtomicI64>::default();
        let handshakes = Family::<Labels, Counter>::default();
        let resumed = Counter::default();
        // 100 µs to ~3.3 s.
        let handshake_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let bytes = Family::<Labels, Counter>::default();
        let expiry_seconds = Gauge::<f64, AtomicU64>::default();
        let rotations = Counter::default();
        let reconnects = Counter::default();
        registry.register(
            "spiffe_proxy_connections_accepted",
            "Connections whose mTLS handshake completed and whose peer was authorized",
            accepted.clone(),
        );
        registry.register(
            "spiffe_proxy_connections_refused",
            "Connections or requests refused, by reason",
            refused.clone(),
        );
        registry.register(
            "spiffe_proxy_connections_closed",
            "Live connections closed after their handshake (trust re-checked, or their lifetime ended), by reason",
            closed.clone(),
        );
        registry.register(
            "spiffe_proxy_connections_active",
            "Connections open now (handshaking or relaying)",
            active.clone(),
        );
        registry.register(
            "spiffe_proxy_handshakes",
            "mTLS handshakes, by result",
            handshakes.clone(),
        );
        registry.register(
            "spiffe_proxy_resumed_handshakes",
            "The ok mTLS handshakes that resumed a session (--resumption), its checks made again",
            resumed.clone(),
        );
        registry.register(
            "spiffe_proxy_handshake_duration_seconds",
            "Time from accepting a connection to the end of its mTLS handshake",
            handshake_seconds.clone(),
        );
        registry.register(
            "spiffe_proxy_bytes",
            "Application bytes relayed: in = client to target, out = target to client",
            bytes.clone(),
        );
        registry.register(
            "spiffe_proxy_svid_expiry_seconds",
            "Seconds until the current X.509-SVID expires",
            expiry_seconds.clone(),
        );
        registry.register(
            "spiffe_proxy_svid_rotations",
            "Changes of the presented X.509-SVID since start",
            rotations.clone(),
        );
        registry.register(
            "spiffe_proxy_workload_api_reconnects",
            "Reconnections to the Workload API after its stream failed",
            reconnects.clone(),
        );
        if let Some(monitor) = &monitor {
            monitor.register_metrics(&mut registry);
        }
        Self {
            registry,
            accepted,
            refused,
            closed,
            active,
            handshakes,
            resumed,
            handshake_seconds,
            bytes,
            expiry_seconds,
            rotations,
            reconnects,
            monitor,
        }
    }

    /// A refusal for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// The number of refusals for `reason` so far.
    pub fn refused_count(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&[("reason", reason)]).get()
    }

    /// A live connection closed for `reason`.
    pub fn closed(&self, reason: spiffe_mtls::net::CloseReason) {
        self.closed
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// A handshake that ended after `took`.
    pub fn handshake(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.handshakes.get_or_create(&[("result", result)]).inc();
        self.handshake_seconds.observe(took.as_secs_f64());
    }

    /// Bytes of a finished connection.
    pub fn bytes(&self, from_client: u64, to_client: u64) {
        self.bytes
            .get_or_create(&[("direction", "in")])
            .inc_by(from_client);
        self.bytes
            .get_or_create(&[("direction", "out")])
            .inc_by(to_client);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// Brings the reconnection counter up to `reconnects`, the source's own count.
    pub fn sync_reconnects(&self, reconnects: u64) {
        let counted = self.reconnects.get();
        if reconnects > counted {
            self.reconnects.inc_by(reconnects - counted);
        }
    }
}
