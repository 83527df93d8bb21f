//! The audit trail: one `tracing` event per authentication decision, under the target
//! `spiffe_mtls::audit`. Events carry identities, trust domains and rules, never key material.

use std::fmt;

use crate::spiffe_id::SpiffeId;

/// The tracing target of audit events.
pub const AUDIT_TARGET: &str = "spiffe_mtls::audit";

/// Which end of the connection decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A server deciding about a client.
    Server,
    /// A client deciding about a server.
    Client,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Server => "server",
            Self::Client => "client",
        })
    }
}

/// A peer that was verified and allowed by `rule`.
pub(crate) fn accepted(side: Side, peer: &SpiffeId, rule: &dyn fmt::Display) {
    tracing::info!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "accepted",
        rule = %rule,
        "mTLS peer accepted"
    );
}

/// A peer that was verified but refused by `rule`.
pub(crate) fn refused(side: Side, peer: &SpiffeId, rule: &dyn fmt::Display) {
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "denied",
        rule = %rule,
        "mTLS peer not authorized"
    );
}

/// A peer without a verified identity: its chain failed, or there was nothing to check it by.
pub(crate) fn unverified(side: Side, reason: &dyn fmt::Display) {
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = "-",
        trust_domain = "-",
        decision = "denied",
        rule = "X.509-SVID verification",
        reason = %reason,
        "mTLS peer has no verified SPIFFE ID"
    );
}
