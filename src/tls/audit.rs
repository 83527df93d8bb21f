//! The audit trail: one `tracing` event per authentication decision, under the target
//! `spiffe_mtls::audit`. Events carry identities, trust domains and rules, never key material.
//!
//! A decision is recorded when it takes effect, which for an acceptance is only once the peer
//! proved it holds the key of its certificate:
//! - the certificate check (rustls' `verify_client_cert` / `verify_server_cert`) records its
//!   refusals: `denied` with peer `-`, rule `X.509-SVID verification` and the reason when the
//!   chain does not verify (or there are no bundles to verify it by); `denied` with the peer's
//!   ID, its trust domain, the rule and the reason when the rule does not allow the ID. A
//!   certificate that passes records nothing yet;
//! - the peer's handshake signature check, which rustls makes next with the same leaf (the
//!   CertificateVerify of TLS 1.3 and of a TLS 1.2 client, the ServerKeyExchange signature of
//!   a TLS 1.2 server), records `accepted` with the peer's ID, trust domain and rule when the
//!   signature verified, and `denied` with the peer's ID, rule `handshake signature` and the
//!   reason when it did not: a peer that replays another workload's public chain is denied,
//!   never accepted.
//!
//! Route decisions (the [`RoutePolicyLayer`](crate::net::RoutePolicyLayer)) are recorded
//! per request with the same fields plus `route`: side `server`, `accepted` with the peer's
//! ID, trust domain and the route's rule (`route "/api" allows ...`), or `denied` with the
//! rule that refused (`route "/admin" allows ...`, `route "/x" is not in the policy`,
//! `connection rule ...`) and a reason; a request without a verified identity is `denied`
//! with peer `-`, rule `verified SPIFFE ID`.
//!
//! A live connection that [`LiveConnections`](crate::net::LiveConnections) closes records
//! `closed` with the peer's ID, its trust domain, rule `trust re-checked on a live
//! connection` and the reason: `expired`, `bundle`, `policy`, `revoked` or `lifetime`.
//!
//! A client that presents no certificate to a server that requires one is refused by rustls
//! without asking the verifier; the server's stream (`net::accept` and everything on it)
//! records it: `denied`, peer `-`, rule `X.509-SVID verification`, reason `the client
//! presented no certificate`.
//!
//! Every event also reaches the [`crate::audit`] sinks, with its evidence.
//!
//! The web-PKI verifier of [`mtls_web_client_config`](super::mtls_web_client_config) records
//! its decisions the same way, with the server name as `peer`, trust domain `-` and rule
//! `web PKI certificate for the server name`. The TLS-only server
//! ([`tls_server_config`](super::tls_server_config)) makes no decision about its clients,
//! and records nothing.
//!
//! So a handshake records one event per side that decides: `accepted` or `denied`. A handshake abandoned between
//! the two checks (the peer goes away or sends something else than its signature) records
//! nothing, as nothing was accepted; so does a TLS 1.2 server that signs its key exchange
//! with an algorithm its cipher suite does not allow, which rustls refuses without asking the
//! verifier.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::audit::{AuditEvent, Decision, dispatch, sha256_hex};
use crate::spiffe_id::SpiffeId;

/// The tracing target of audit events.
pub const AUDIT_TARGET: &str = "spiffe_mtls::audit";

/// The rule named by a denial for a handshake signature that did not verify.
const SIGNATURE_RULE: &str = "handshake signature";

/// Adds what a decider knows to an event (the leaf's and root's digests, the bundles'
/// generation, the policy); only called when an audit sink is registered.
pub(crate) type Evidence<'a> = &'a dyn Fn(AuditEvent) -> AuditEvent;

/// No evidence beyond the event's own fields.
pub(crate) fn no_evidence(event: AuditEvent) -> AuditEvent {
    event
}

/// Hands the event to the audit sinks, if any: `decision` about `peer` by `rule`, with
/// `reason` and `evidence`.
fn to_sinks(
    side: Side,
    decision: Decision,
    peer: Option<&SpiffeId>,
    rule: &dyn fmt::Display,
    reason: Option<&dyn fmt::Display>,
    evidence: Evidence<'_>,
) {
    dispatch(|| {
        let mut event = AuditEvent::new(side, decision, peer, rule.to_string());
        if let Some(reason) = reason {
            event = event.reason(reason);
        }
        evidence(event)
    });
}

/// The roots the chains of recently authorized leaves ended at (digests), for the event the
/// handshake signature check records a moment later; filled only while an audit sink is
/// registered.
#[derive(Debug, Default)]
pub(crate) struct RootMemo {
    recent: Mutex<VecDeque<(String, String)>>,
}

/// The leaves a [`RootMemo`] remembers.
const ROOT_MEMO_ENTRIES: usize = 256;

impl RootMemo {
    /// Notes that the chain of `leaf` ended at `root`.
    pub(crate) fn note(&self, leaf: &[u8], root: &[u8]) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= ROOT_MEMO_ENTRIES {
            recent.pop_front();
        }
        if let (Some(leaf), Some(root)) = (sha256_hex(leaf), sha256_hex(root)) {
            recent.push_back((leaf, root));
        }
    }

    /// The root digest noted for the leaf whose digest is `leaf`.
    pub(crate) fn root_of(&self, leaf: &str) -> Option<String> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .iter()
            .rev()
            .find(|(noted, _)| noted == leaf)
            .map(|(_, root)| root.clone())
    }
}

/// Which end of the connection decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

/// A peer that was verified, allowed by `rule`, and proved its key with its handshake
/// signature.
pub(crate) fn accepted(
    side: Side,
    peer: &SpiffeId,
    rule: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    tracing::info!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "accepted",
        rule = %rule,
        "mTLS peer accepted"
    );
    to_sinks(side, Decision::Accepted, Some(peer), rule, None, evidence);
}

/// A peer that was verified but refused by `rule`.
pub(crate) fn refused(
    side: Side,
    peer: &SpiffeId,
    rule: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "denied",
        rule = %rule,
        reason = "the rule does not allow this SPIFFE ID",
        "mTLS peer not authorized"
    );
    to_sinks(
        side,
        Decision::Denied,
        Some(peer),
        rule,
        Some(&"the rule does not allow this SPIFFE ID"),
        evidence,
    );
}

/// A live connection closed because its peer no longer passes (`reason`: `expired`,
/// `bundle`, `policy`, `revoked`) or reached its maximum lifetime (`lifetime`).
#[cfg(feature = "net")]
pub(crate) fn closed(side: Side, peer: &SpiffeId, reason: &str, evidence: Evidence<'_>) {
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "closed",
        rule = "trust re-checked on a live connection",
        reason = reason,
        "live connection closed: its peer no longer passes"
    );
    to_sinks(
        side,
        Decision::Closed,
        Some(peer),
        &"trust re-checked on a live connection",
        Some(&reason),
        evidence,
    );
}

/// A resumed session denied: its stored peer chain, or its ticket, no longer passes
/// (`reason`). When a ticket is declined a full handshake follows, which checks the peer
/// afresh; when a resumed client connection is refused it is closed before any application
/// data.
pub(crate) fn resumption_denied(
    side: Side,
    id: Option<&SpiffeId>,
    reason: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    let (peer, trust_domain) = peer_fields(id);
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %trust_domain,
        decision = "denied",
        rule = "resumed session re-checked",
        reason = %reason,
        "resumed session denied"
    );
    to_sinks(
        side,
        Decision::Denied,
        id,
        &"resumed session re-checked",
        Some(reason),
        evidence,
    );
}

/// A resumed session accepted: its stored peer chain passed the checks again.
#[cfg(feature = "net")]
pub(crate) fn resumed(side: Side, peer: &SpiffeId, evidence: Evidence<'_>) {
    tracing::info!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "accepted",
        rule = "resumed session re-checked",
        "mTLS peer accepted (resumed session)"
    );
    to_sinks(
        side,
        Decision::Accepted,
        Some(peer),
        &"resumed session re-checked",
        None,
        evidence,
    );
}

/// The `peer` and `trust_domain` fields of an event: `-` for a peer without an ID.
fn peer_fields(peer: Option<&SpiffeId>) -> (&dyn fmt::Display, &dyn fmt::Display) {
    match peer {
        Some(id) => (id, id.trust_domain()),
        None => (&"-", &"-"),
    }
}

/// A client that presented no certificate to a server that requires one (rustls refuses it
/// without asking the verifier: the stream layer records it).
#[cfg(feature = "net")]
pub(crate) fn no_certificate() {
    unverified(
        Side::Server,
        &"the client presented no certificate",
        &no_evidence,
    );
}

/// A peer without a verified identity: its chain failed, or there was nothing to check it by.
pub(crate) fn unverified(side: Side, reason: &dyn fmt::Display, evidence: Evidence<'_>) {
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
    to_sinks(
        side,
        Decision::Denied,
        None,
        &"X.509-SVID verification",
        Some(reason),
        evidence,
    );
}

/// A peer whose certificate passed but whose handshake signature did not verify: it did not
/// prove it holds the certificate's key. `peer` is the certificate's ID (`None` only if it
/// could not be read again, which a certificate that passed does not allow).
pub(crate) fn unproven(
    side: Side,
    id: Option<&SpiffeId>,
    error: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    let (peer, trust_domain) = peer_fields(id);
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = %peer,
        trust_domain = %trust_domain,
        decision = "denied",
        rule = SIGNATURE_RULE,
        reason = %format_args!("handshake signature did not verify: {error}"),
        "mTLS peer did not prove its key"
    );
    to_sinks(
        side,
        Decision::Denied,
        id,
        &SIGNATURE_RULE,
        Some(&format_args!("handshake signature did not verify: {error}")),
        evidence,
    );
}

/// The rule of the web-PKI client mode: the server's chain ends at one of the configured
/// web roots and its certificate is valid for the server name dialed.
const WEB_RULE: &str = "web PKI certificate for the server name";

/// The event of a web-PKI decision: the peer is the server name.
fn web_to_sinks(
    side: Side,
    decision: Decision,
    server_name: &str,
    rule: &str,
    reason: Option<&dyn fmt::Display>,
    evidence: Evidence<'_>,
) {
    dispatch(|| {
        let mut event = AuditEvent::new(side, decision, None, rule);
        event.peer = Some(server_name.to_owned());
        if let Some(reason) = reason {
            event = event.reason(reason);
        }
        evidence(event)
    });
}

/// A web-PKI server whose certificate is valid for `server_name` and which proved its key.
pub(crate) fn web_accepted(side: Side, server_name: &str, evidence: Evidence<'_>) {
    web_to_sinks(
        side,
        Decision::Accepted,
        server_name,
        WEB_RULE,
        None,
        evidence,
    );
    tracing::info!(
        target: AUDIT_TARGET,
        side = %side,
        peer = server_name,
        trust_domain = "-",
        decision = "accepted",
        rule = WEB_RULE,
        "web PKI peer accepted"
    );
}

/// A web-PKI server whose certificate was refused (unknown issuer, wrong name, expired...).
pub(crate) fn web_denied(
    side: Side,
    server_name: &str,
    reason: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    web_to_sinks(
        side,
        Decision::Denied,
        server_name,
        WEB_RULE,
        Some(reason),
        evidence,
    );
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = server_name,
        trust_domain = "-",
        decision = "denied",
        rule = WEB_RULE,
        reason = %reason,
        "web PKI peer refused"
    );
}

/// A web-PKI server whose certificate passed but whose handshake signature did not verify.
pub(crate) fn web_unproven(
    side: Side,
    server_name: &str,
    error: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    let reason = format_args!("handshake signature did not verify: {error}");
    web_to_sinks(
        side,
        Decision::Denied,
        server_name,
        SIGNATURE_RULE,
        Some(&reason),
        evidence,
    );
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %side,
        peer = server_name,
        trust_domain = "-",
        decision = "denied",
        rule = SIGNATURE_RULE,
        reason = %format_args!("handshake signature did not verify: {error}"),
        "web PKI peer did not prove its key"
    );
}

#[cfg(feature = "http")]
/// A request allowed on `route` by `rule`.
pub(crate) fn route_allowed(
    peer: &SpiffeId,
    route: &str,
    rule: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    to_sinks(
        Side::Server,
        Decision::Accepted,
        Some(peer),
        rule,
        None,
        &|event| with_route(evidence(event), route),
    );
    tracing::info!(
        target: AUDIT_TARGET,
        side = %Side::Server,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "accepted",
        rule = %rule,
        route = route,
        "request allowed on route"
    );
}

#[cfg(feature = "http")]
/// A request refused on `route`: `peer` is `None` when it carried no verified identity.
pub(crate) fn route_denied(
    peer: Option<&SpiffeId>,
    route: &str,
    rule: &dyn fmt::Display,
    reason: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    to_sinks(
        Side::Server,
        Decision::Denied,
        peer,
        rule,
        Some(reason),
        &|event| with_route(evidence(event), route),
    );
    let (peer, trust_domain) = peer_fields(peer);
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %Side::Server,
        peer = %peer,
        trust_domain = %trust_domain,
        decision = "denied",
        rule = %rule,
        route = route,
        reason = %reason,
        "request refused on route"
    );
}

#[cfg(feature = "http")]
/// `event` with the evidence of a request: its method, the peer's leaf (an mTLS peer) or
/// token `jti` (a JWT-SVID), and the digest of the policy that decided.
pub(crate) fn request_evidence(
    mut event: AuditEvent,
    method: &str,
    peer: Option<&super::PeerIdentity>,
    policy_sha256: Option<&str>,
) -> AuditEvent {
    event.method = Some(method.to_owned());
    if let Some(peer) = peer {
        event = with_peer(event, peer);
    }
    event.policy_sha256 = policy_sha256.map(str::to_owned);
    event
}

#[cfg(feature = "net")]
/// `event` with the peer's leaf digest (an mTLS peer) or token `jti` (a JWT-SVID).
pub(crate) fn with_peer(event: AuditEvent, peer: &super::PeerIdentity) -> AuditEvent {
    #[cfg(feature = "jwt")]
    if let Some(svid) = peer.jwt_svid() {
        let mut event = event;
        event.jti = svid
            .claims()
            .get("jti")
            .and_then(|jti| jti.as_str())
            .map(str::to_owned);
        return event;
    }
    match peer.chain().first() {
        Some(leaf) => event.leaf(leaf),
        None => event,
    }
}

#[cfg(feature = "http")]
/// `event` with its route (`-` is no route).
fn with_route(mut event: AuditEvent, route: &str) -> AuditEvent {
    if route != "-" {
        event.route = Some(route.to_owned());
    }
    event
}

#[cfg(all(feature = "http", feature = "jwt"))]
/// A JWT-SVID accepted for `audience`.
pub(crate) fn jwt_accepted(peer: &SpiffeId, audience: &str, evidence: Evidence<'_>) {
    to_sinks(
        Side::Server,
        Decision::Accepted,
        Some(peer),
        &format_args!("JWT-SVID for audience {audience}"),
        None,
        evidence,
    );
    tracing::info!(
        target: AUDIT_TARGET,
        side = %Side::Server,
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "accepted",
        rule = %format_args!("JWT-SVID for audience {audience}"),
        "JWT-SVID accepted"
    );
}

#[cfg(all(feature = "http", feature = "jwt"))]
/// A request whose bearer token was missing or invalid (`rule` names the broken rule), or
/// valid for a `peer` the authorizer refused.
pub(crate) fn jwt_denied(
    peer: Option<&SpiffeId>,
    audience: &str,
    rule: &str,
    reason: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    to_sinks(
        Side::Server,
        Decision::Denied,
        peer,
        &format_args!("JWT-SVID for audience {audience}: {rule}"),
        Some(reason),
        evidence,
    );
    let (peer, trust_domain) = peer_fields(peer);
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %Side::Server,
        peer = %peer,
        trust_domain = %trust_domain,
        decision = "denied",
        rule = %format_args!("JWT-SVID for audience {audience}: {rule}"),
        reason = %reason,
        "JWT-SVID refused"
    );
}

#[cfg(feature = "oauth")]
/// An OAuth access token accepted (`rule`: the issuer and the scopes required); `peer` is
/// the mutual TLS peer, when the request came over it.
pub(crate) fn token_accepted(peer: Option<&SpiffeId>, rule: &str, evidence: Evidence<'_>) {
    to_sinks(
        Side::Server,
        Decision::Accepted,
        peer,
        &rule,
        None,
        evidence,
    );
    let (peer, trust_domain) = peer_fields(peer);
    tracing::info!(
        target: AUDIT_TARGET,
        side = %Side::Server,
        peer = %peer,
        trust_domain = %trust_domain,
        decision = "accepted",
        rule = %rule,
        "OAuth access token accepted"
    );
}

#[cfg(feature = "oauth")]
/// An OAuth access token missing, invalid, or without a scope `rule` requires.
pub(crate) fn token_denied(
    peer: Option<&SpiffeId>,
    rule: &str,
    reason: &dyn fmt::Display,
    evidence: Evidence<'_>,
) {
    to_sinks(
        Side::Server,
        Decision::Denied,
        peer,
        &rule,
        Some(reason),
        evidence,
    );
    let (peer, trust_domain) = peer_fields(peer);
    tracing::warn!(
        target: AUDIT_TARGET,
        side = %Side::Server,
        peer = %peer,
        trust_domain = %trust_domain,
        decision = "denied",
        rule = %rule,
        reason = %reason,
        "OAuth access token refused"
    );
}
