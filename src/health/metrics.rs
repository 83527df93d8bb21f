//! The monitor's Prometheus metrics: per-peer counters (a peer's labels leave with its row of
//! the table, so at most [`MAX_PEERS`](super::MAX_PEERS) peers are ever exported) and the
//! time to expiry of each SVID.
//!
//! | Metric | Type | Labels |
//! |---|---|---|
//! | `spiffe_peer_decisions_total` | counter | `peer` (a SPIFFE ID, `-` for peers without a verified one), `decision`: `accepted`, `denied` |
//! | `spiffe_peer_connections_open` | gauge | `peer` |
//! | `spiffe_svid_expiry_seconds` | gauge | `spiffe_id`: seconds until each SVID of the workload expires |

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::source::X509Context;

type PeerDecision = [(&'static str, String); 2];
type PeerLabel = [(&'static str, String); 1];

/// The families; clones share their values.
#[derive(Debug, Default)]
pub(crate) struct PeerMetrics {
    decisions: Family<PeerDecision, Counter>,
    open: Family<PeerLabel, Gauge<i64, AtomicI64>>,
    expiry: Family<PeerLabel, Gauge<f64, AtomicU64>>,
}

impl PeerMetrics {
    /// Registers the families in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "spiffe_peer_decisions",
            "Audit decisions about each peer (the most recently seen peers)",
            self.decisions.clone(),
        );
        registry.register(
            "spiffe_peer_connections_open",
            "Connections open now, by peer",
            self.open.clone(),
        );
        registry.register(
            "spiffe_svid_expiry_seconds",
            "Seconds until each X.509-SVID of this workload expires",
            self.expiry.clone(),
        );
    }

    /// A decision about `peer`; `evicted` left the peer table.
    pub(crate) fn decided(&self, peer: &str, accepted: bool, evicted: Option<&str>) {
        self.forget(evicted);
        let decision = if accepted { "accepted" } else { "denied" };
        self.decisions
            .get_or_create(&[("peer", peer.to_owned()), ("decision", decision.to_owned())])
            .inc();
    }

    /// `peer` has `open` connections now; `evicted` left the peer table.
    pub(crate) fn connection(&self, peer: &str, open: u64, evicted: Option<&str>) {
        self.forget(evicted);
        self.open
            .get_or_create(&[("peer", peer.to_owned())])
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Drops the labels of a peer that left the table.
    fn forget(&self, evicted: Option<&str>) {
        let Some(peer) = evicted else {
            return;
        };
        for decision in ["accepted", "denied"] {
            self.decisions
                .remove(&[("peer", peer.to_owned()), ("decision", decision.to_owned())]);
        }
        self.open.remove(&[("peer", peer.to_owned())]);
    }

    /// Sets the expiry gauges to the SVIDs of `context` now (none without a context).
    pub(crate) fn refresh_svids(&self, context: Option<&X509Context>) {
        self.expiry.clear();
        let now = SystemTime::now();
        for svid in context.map(X509Context::svids).unwrap_or_default() {
            let left = match svid.expires_at().duration_since(now) {
                Ok(left) => left.as_secs_f64(),
                Err(past) => -past.duration().as_secs_f64(),
            };
            self.expiry
                .get_or_create(&[("spiffe_id", svid.spiffe_id().to_string())])
                .set(left);
        }
    }
}
