//! The `/_status` document: everything the page shows.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

use super::alerts::{self, Alert, Thresholds};
use super::{HealthMonitor, lock};
use crate::X509Svid;
use crate::audit::{AuditEvent, rfc3339_millis};
use crate::source::{StreamState, X509Context};

/// A time as JSON: RFC 3339 with milliseconds.
fn time(time: SystemTime) -> Value {
    Value::String(rfc3339_millis(time))
}

/// An optional time as JSON.
fn optional_time(at: Option<SystemTime>) -> Value {
    at.map_or(Value::Null, time)
}

/// Seconds from `now` to `at` (negative when past).
fn seconds_until(at: SystemTime, now: SystemTime) -> f64 {
    match at.duration_since(now) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    }
}

/// A Unix time in seconds as a `SystemTime` (the epoch for one before it).
fn from_unix(seconds: i64) -> SystemTime {
    u64::try_from(seconds).map_or(SystemTime::UNIX_EPOCH, |s| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    })
}

/// An SVID's serial (hex) and notBefore, read from its leaf.
fn leaf_details(svid: &X509Svid) -> (String, SystemTime) {
    match x509_parser::certificate::X509Certificate::from_der(svid.leaf()) {
        Ok((_, cert)) => {
            let serial = cert.raw_serial().iter().fold(String::new(), |mut hex, b| {
                let _ = write!(hex, "{b:02x}");
                hex
            });
            (serial, from_unix(cert.validity().not_before.timestamp()))
        }
        Err(_) => (String::new(), svid.expires_at()),
    }
}

impl HealthMonitor {
    /// The `/_status` document now (see the README's "Dashboard" section, field by field).
    pub fn status(&self) -> Value {
        let now = SystemTime::now();
        let thresholds = lock(&self.inner.thresholds).clone();
        let (source, description) = match &*lock(&self.inner.watched) {
            Some(watched) => (
                Some(std::sync::Arc::clone(&watched.source)),
                watched.description.clone(),
            ),
            None => (None, String::from("none")),
        };
        let context = source.as_ref().and_then(|s| s.x509_context().ok());
        let stream = source.as_ref().and_then(|s| s.stream_state());
        let mut alerts = Vec::new();

        let svids = svids_json(context.as_deref(), &thresholds, now, &mut alerts);
        let (rotations, last_rotation, bundle_changes, peers, decisions) = {
            let mut state = lock(&self.inner.state);
            let peers: Vec<_> = state.peers.rows(super::peers::Tick::now());
            let decisions: Vec<Value> = state.decisions.iter().rev().map(decision_json).collect();
            (
                state.rotations,
                state.last_rotation,
                state.bundle_changes.clone(),
                peers,
                decisions,
            )
        };
        let bundles = bundles_json(
            context.as_deref(),
            &bundle_changes,
            &thresholds,
            now,
            &mut alerts,
        );
        let workload_api = match stream {
            Some(StreamState {
                connected,
                since,
                reconnects,
            }) => {
                if !connected
                    && let Some(alert) =
                        alerts::workload_api_unreachable(&thresholds, &description, since, now)
                {
                    alerts.push(alert);
                }
                json!({
                    "source": description,
                    "state": if connected { "connected" } else { "reconnecting" },
                    "since": time(since),
                    "reconnects": reconnects,
                })
            }
            None => json!({
                "source": description,
                "state": "not streamed",
                "since": Value::Null,
                "reconnects": 0,
            }),
        };
        let peers_json: Vec<Value> = peers
            .iter()
            .map(|(id, peer)| {
                let (calls, denials) = (peer.window.calls(), peer.window.denials());
                alerts.extend(alerts::peer_denials(&thresholds, id, denials));
                alerts.extend(alerts::peer_call_spike(
                    &thresholds,
                    id,
                    calls,
                    peer.window.average(),
                ));
                json!({
                    "spiffe_id": id,
                    "trust_domain": peer.trust_domain,
                    "open": peer.open,
                    "accepted": peer.accepted,
                    "denied": peer.denied,
                    "last_deny_reason": peer.last_deny_reason,
                    "last_seen": time(peer.last_seen),
                    "calls_last_minute": calls,
                    "denials_last_minute": denials,
                })
            })
            .collect();
        alerts.sort_by_key(|alert| (alert.severity != alerts::Severity::Critical, alert.rule));

        let default = context.as_ref().map(|c| c.default_svid());
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
        let mut document = json!({
            "mode": self.inner.mode,
            "healthy": context.is_some(),
            "now": time(now),
            "spiffe_id": default.map(|s| s.spiffe_id().to_string()),
            "svid_serial": default.map(|s| leaf_details(s).0),
            "svid_expires_at": default.map(|s| rfc3339_millis(s.expires_at())),
            "svid_seconds_left": default.map(|s| seconds_until(s.expires_at(), now).floor()),
            "trust_domains": trust_domains,
            "source": description,
            "rotations": rotations,
            "last_rotation": optional_time(last_rotation),
            "workload_api_reconnects": stream.map_or(0, |s| s.reconnects),
            "svids": svids,
            "rotation": { "rotations": rotations, "last_rotation": optional_time(last_rotation) },
            "workload_api": workload_api,
            "bundles": bundles,
            "peers": peers_json,
            "decisions": decisions,
            "alerts": serde_json::to_value(&alerts).unwrap_or_default(),
            "thresholds": thresholds.to_json(),
        });
        if let Value::Object(members) = &mut document {
            for (name, value) in lock(&self.inner.sections).iter() {
                members.insert(name.clone(), value());
            }
        }
        document
    }
}

/// The `svids` array; raises `svid_not_rotated`.
fn svids_json(
    context: Option<&X509Context>,
    thresholds: &Thresholds,
    now: SystemTime,
    alerts: &mut Vec<Alert>,
) -> Vec<Value> {
    let Some(context) = context else {
        return Vec::new();
    };
    context
        .svids()
        .iter()
        .enumerate()
        .map(|(index, svid)| {
            let (serial, not_before) = leaf_details(svid);
            let id = svid.spiffe_id().to_string();
            let expires = svid.expires_at();
            let lifetime = expires
                .duration_since(not_before)
                .unwrap_or_default()
                .as_secs_f64();
            let left = seconds_until(expires, now);
            alerts.extend(alerts::svid_not_rotated(thresholds, &id, not_before, expires, now));
            json!({
                "spiffe_id": id,
                "hint": svid.hint(),
                "default": index == 0,
                "serial": serial,
                "not_before": time(not_before),
                "expires_at": time(expires),
                "lifetime_seconds": lifetime.floor(),
                "seconds_left": left.floor(),
                "fraction_left": if lifetime > 0.0 { (left / lifetime).clamp(0.0, 1.0) } else { 0.0 },
            })
        })
        .collect()
}

/// The `bundles` array; raises `root_expiring`.
fn bundles_json(
    context: Option<&X509Context>,
    changes: &std::collections::HashMap<String, SystemTime>,
    thresholds: &Thresholds,
    now: SystemTime,
    alerts: &mut Vec<Alert>,
) -> Vec<Value> {
    let Some(context) = context else {
        return Vec::new();
    };
    let mut bundles: Vec<Value> = context
        .bundles()
        .iter()
        .map(|bundle| {
            let trust_domain = bundle.trust_domain().to_string();
            let earliest = bundle
                .anchors()
                .iter()
                .map(|anchor| anchor.not_after)
                .min()
                .map(from_unix);
            if let Some(expiry) = earliest {
                alerts.extend(alerts::root_expiring(
                    thresholds,
                    &trust_domain,
                    expiry,
                    now,
                ));
            }
            json!({
                "trust_domain": trust_domain,
                "roots": bundle.roots().len(),
                "earliest_root_expiry": optional_time(earliest),
                "last_change": optional_time(changes.get(&trust_domain).copied()),
            })
        })
        .collect();
    bundles.sort_by(|a, b| a["trust_domain"].as_str().cmp(&b["trust_domain"].as_str()));
    bundles
}

/// One row of `decisions`.
fn decision_json(event: &AuditEvent) -> Value {
    json!({
        "time": time(event.time),
        "side": event.side.to_string(),
        "decision": event.decision.as_str(),
        "peer": event.peer.as_deref().unwrap_or("-"),
        "rule": event.rule,
        "reason": event.reason,
        "method": event.method,
        "route": event.route,
        "skill": event.skill,
    })
}
