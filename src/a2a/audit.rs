//! Audit events of A2A calls, under the crate's audit target: one per decision (allowed or
//! refused), with the caller's SPIFFE ID, its trust domain, the method, the skill, the policy
//! route that was decided (`-` when none: the connection rule, task ownership) and the rule.
//! Never message content, never key material.

use std::fmt;

use serde_json::Value;

use crate::audit::{AuditEvent, Decision, dispatch};
use crate::spiffe_id::SpiffeId;
use crate::tls::{AUDIT_TARGET, Side};

/// What an A2A decision was made on besides the caller: the task it is about and the
/// policy that decided.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CallEvidence<'a> {
    /// The task the call names (`taskId` of a message, `id` of a task method).
    pub(crate) task_id: Option<&'a str>,
    /// The SHA-256 of the policy's text.
    pub(crate) policy_sha256: Option<&'a str>,
}

impl<'a> CallEvidence<'a> {
    /// The task named by `request` (the call's params) and the policy's digest.
    pub(crate) fn of(request: &'a Value, policy_sha256: Option<&'a str>) -> Self {
        let task_id = ["/message/taskId", "/taskId", "/id"]
            .into_iter()
            .find_map(|pointer| request.pointer(pointer).and_then(Value::as_str));
        Self {
            task_id,
            policy_sha256,
        }
    }
}

/// Hands the call's event to the audit sinks, if any.
#[allow(clippy::too_many_arguments)] // the fields of one event, each named at the call
fn to_sinks(
    decision: Decision,
    peer: Option<&SpiffeId>,
    method: &str,
    skill: &str,
    route: &str,
    rule: &dyn fmt::Display,
    reason: Option<&str>,
    evidence: CallEvidence<'_>,
) {
    let known = |field: &str| (field != "-").then(|| field.to_owned());
    dispatch(|| {
        let mut event = AuditEvent::new(Side::Server, decision, peer, rule.to_string());
        event.reason = reason.map(str::to_owned);
        event.method = Some(method.to_owned());
        event.skill = known(skill);
        event.route = known(route);
        event.task_id = evidence.task_id.map(str::to_owned);
        event.policy_sha256 = evidence.policy_sha256.map(str::to_owned);
        event
    });
}

/// The reason of a refusal by a rule.
const REFUSED_REASON: &str = "the rule does not allow this SPIFFE ID";

/// A call `rule` (of `route`) allowed.
pub(crate) fn allowed(
    peer: &SpiffeId,
    method: &str,
    skill: &str,
    route: &str,
    rule: &dyn fmt::Display,
    evidence: CallEvidence<'_>,
) {
    to_sinks(
        Decision::Accepted,
        Some(peer),
        method,
        skill,
        route,
        rule,
        None,
        evidence,
    );
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
    evidence: CallEvidence<'_>,
) {
    refused_because(peer, method, skill, route, rule, REFUSED_REASON, evidence);
}

/// A call refused for `reason` (when it is not the rule's refusal of the ID: a scope the
/// caller's token lacks, say).
pub(crate) fn refused_because(
    peer: &SpiffeId,
    method: &str,
    skill: &str,
    route: &str,
    rule: &dyn fmt::Display,
    reason: &str,
    evidence: CallEvidence<'_>,
) {
    to_sinks(
        Decision::Denied,
        Some(peer),
        method,
        skill,
        route,
        rule,
        Some(reason),
        evidence,
    );
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
        reason = reason,
        "A2A call refused"
    );
}

/// A call without a verified SPIFFE ID.
pub(crate) fn unauthenticated(method: &str) {
    to_sinks(
        Decision::Denied,
        None,
        method,
        "-",
        "-",
        &"verified SPIFFE ID",
        Some("the call carries no verified peer identity"),
        CallEvidence::default(),
    );
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
