//! One audit event: who was decided, by which rule, and on what evidence.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::spiffe_id::SpiffeId;
use crate::tls::Side;

/// What a decision was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Decision {
    /// The peer (or its request) was let through.
    Accepted,
    /// The peer (or its request) was refused.
    Denied,
    /// A live connection was closed: its peer no longer passed the trust re-check.
    Closed,
}

impl Decision {
    /// `accepted`, `denied` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Denied => "denied",
            Self::Closed => "closed",
        }
    }
}

/// One authentication or authorization decision, with the evidence it was made on.
///
/// Its JSON form (see [`AuditEvent::to_json_line`]) has every field below, in this order,
/// `null` where it does not apply. Events carry identities, digests and rules, never key
/// material or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When the decision was made (RFC 3339, milliseconds, UTC).
    #[serde(serialize_with = "serialize_time")]
    pub time: SystemTime,
    /// `server` (deciding about a client) or `client` (deciding about a server).
    #[serde(serialize_with = "serialize_side")]
    pub side: Side,
    /// The decision.
    pub decision: Decision,
    /// Why, for a denial or a closed connection.
    pub reason: Option<String>,
    /// The peer's SPIFFE ID (the server name for a web-PKI server); `None` when no
    /// certificate verified.
    pub peer: Option<String>,
    /// The peer's trust domain.
    pub trust_domain: Option<String>,
    /// The rule that decided.
    pub rule: String,
    /// SHA-256 (hex) of the peer's leaf certificate (DER), when one was presented.
    pub leaf_sha256: Option<String>,
    /// SHA-256 (hex) of the bundle root the peer's chain ended at.
    pub root_sha256: Option<String>,
    /// The generation of the bundles the peer was checked against: the number of changes
    /// of the source's context since it started.
    pub bundle_generation: Option<u64>,
    /// The `spiffe_sequence` of the peer's trust-domain bundle, where the bundle has one
    /// (a SPIFFE bundle document).
    pub spiffe_sequence: Option<u64>,
    /// SHA-256 (hex) of the text of the policy file whose rule decided.
    pub policy_sha256: Option<String>,
    /// The HTTP method (or the A2A method) of a request decision.
    pub method: Option<String>,
    /// The policy route of a request decision.
    pub route: Option<String>,
    /// The A2A skill of a call.
    pub skill: Option<String>,
    /// The A2A task of a call.
    pub task_id: Option<String>,
    /// The `jti` of a JWT-SVID.
    pub jti: Option<String>,
}

impl AuditEvent {
    /// An event made now, by `rule`, about `peer`; the evidence is added with the setters.
    pub fn new(
        side: Side,
        decision: Decision,
        peer: Option<&SpiffeId>,
        rule: impl Into<String>,
    ) -> Self {
        Self {
            time: SystemTime::now(),
            side,
            decision,
            reason: None,
            peer: peer.map(ToString::to_string),
            trust_domain: peer.map(|id| id.trust_domain().to_string()),
            rule: rule.into(),
            leaf_sha256: None,
            root_sha256: None,
            bundle_generation: None,
            spiffe_sequence: None,
            policy_sha256: None,
            method: None,
            route: None,
            skill: None,
            task_id: None,
            jti: None,
        }
    }

    /// With `reason`.
    #[must_use]
    pub fn reason(mut self, reason: impl ToString) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    /// With the digest of the peer's leaf certificate (`der`).
    #[must_use]
    pub fn leaf(mut self, der: &[u8]) -> Self {
        self.leaf_sha256 = sha256_hex(der);
        self
    }

    /// With the digest of the bundle root the chain ended at (`der`).
    #[must_use]
    pub fn root(mut self, der: &[u8]) -> Self {
        self.root_sha256 = sha256_hex(der);
        self
    }

    /// Cuts every text field to [`MAX_FIELD_BYTES`] (on a character boundary, marked with
    /// `…`): fields a peer chooses (a task id, a skill, a route, a reason quoting what it
    /// presented) cannot make an event, a log line or the dashboard large.
    #[must_use]
    pub fn bounded(mut self) -> Self {
        for field in [
            &mut self.reason,
            &mut self.peer,
            &mut self.trust_domain,
            &mut self.method,
            &mut self.route,
            &mut self.skill,
            &mut self.task_id,
            &mut self.jti,
        ]
        .into_iter()
        .flatten()
        {
            cut(field);
        }
        cut(&mut self.rule);
        self
    }

    /// The line of the JSON-lines audit log (no newline): the fields in order, then
    /// `prev_sha256` when `previous` is given (`Some(None)`: the first line of a chain).
    pub fn to_json_line(&self, previous: Option<Option<&str>>) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        if let Some(previous) = previous {
            line.pop();
            let _ = write!(
                line,
                ",\"prev_sha256\":{}}}",
                serde_json::to_string(&previous).unwrap_or_default()
            );
        }
        line
    }
}

/// The longest text field of an event, in bytes (see [`AuditEvent::bounded`]).
pub const MAX_FIELD_BYTES: usize = 2048;

/// Cuts `text` to [`MAX_FIELD_BYTES`], marking the cut.
fn cut(text: &mut String) {
    if text.len() <= MAX_FIELD_BYTES {
        return;
    }
    let mut end = MAX_FIELD_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

/// The lowercase hex SHA-256 of `bytes` (see [`crate::crypto::sha256`]; `None` without a
/// crypto provider).
pub fn sha256_hex(bytes: &[u8]) -> Option<String> {
    crate::crypto::sha256(bytes).map(|digest| hex(&digest))
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn serialize_time<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_millis(*time))
}

fn serialize_side<S: serde::Serializer>(side: &Side, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(side)
}

/// `time` as RFC 3339 in UTC with milliseconds (`2026-12-05T16:00:00.123Z`).
pub fn rfc3339_millis(time: SystemTime) -> String {
    let (secs, millis) = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => (since.as_secs(), since.subsec_millis()),
        Err(_) => (0, 0),
    };
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0)) else {
        return format!("unix time {secs}");
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_line_has_every_field_in_order() {
        let id: SpiffeId = "spiffe://example.org/a".parse().unwrap();
        let mut event = AuditEvent::new(Side::Server, Decision::Denied, Some(&id), "the ID x")
            .reason("no")
            .leaf(b"leaf");
        event.time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_800_000_000_123);
        let line = event.to_json_line(Some(None));
        assert!(
            line.starts_with(
                r#"{"time":"2027-01-15T08:00:00.123Z","side":"server","decision":"denied","reason":"no","peer":"spiffe://example.org/a","trust_domain":"example.org","rule":"the ID x","leaf_sha256":""#
            ),
            "{line}"
        );
        assert!(
            line.ends_with(r#""jti":null,"prev_sha256":null}"#),
            "{line}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["leaf_sha256"], sha256_hex(b"leaf").unwrap());
        let mut long = event.clone();
        long.task_id = Some("é".repeat(5000));
        long.rule = "r".repeat(10_000);
        let long = long.bounded();
        assert!(long.task_id.as_ref().unwrap().len() <= MAX_FIELD_BYTES);
        assert!(long.task_id.as_ref().unwrap().ends_with('…'));
        assert_eq!(long.rule.len(), MAX_FIELD_BYTES);
        let chained = event.to_json_line(Some(Some("ab")));
        assert!(chained.ends_with(r#""prev_sha256":"ab"}"#));
        assert!(!event.to_json_line(None).contains("prev_sha256"));
    }
}
