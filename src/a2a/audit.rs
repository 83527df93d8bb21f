//! Audit events of A2A calls, under the crate's audit target: one per decision (allowed or
//! refused), with the caller's SPIFFE ID, its trust domain, the method, the skill, the policy
//! route that was decided (`-` when none: the connection rule, task ownership) and the rule.
//! Never message content, never key material.

use std::fmt;

use crate::spiffe_id::SpiffeId;
use crate::tls::AUDIT_TARGET;

/// A call `rule` (of `route`) allowed.
pub(crate) fn allowed(
    peer: &SpiffeId,
    method: &str,
    skill: &str,
    route: &str,
    rule: &dyn fmt::Display,
) {
    tracing::info!(
        target: AUDIT_TARGET,
        side = "server",
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "accepted",
        rule = %rule,
        method = method,
        skill = skill,
        route = route,
        "A2A call allowed"
    );
}

/// A call `rule` (of `route`) refused.
pub(crate) fn refused(
    peer: &SpiffeId,
    method: &str,
    skill: &str,
    route: &str,
    rule: &dyn fmt::Display,
) {
    tracing::warn!(
        target: AUDIT_TARGET,
        side = "server",
        peer = %peer,
        trust_domain = %peer.trust_domain(),
        decision = "denied",
        rule = %rule,
        method = method,
        skill = skill,
        route = route,
        reason = "the rule does not allow this SPIFFE ID",
        "A2A call refused"
    );
}

/// A call without a verified SPIFFE ID.
pub(crate) fn unauthenticated(method: &str) {
    tracing::warn!(
        target: AUDIT_TARGET,
        side = "server",
        peer = "-",
        trust_domain = "-",
        decision = "denied",
        rule = "verified SPIFFE ID",
        method = method,
        skill = "-",
        route = "-",
        reason = "the call carries no verified peer identity",
        "A2A call refused"
    );
}
