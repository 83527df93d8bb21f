//! The alert rules of the dashboard, and their thresholds.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// When an alert is raised. Every field has a default; set the ones to change.
///
/// ```
/// use std::time::Duration;
/// use spiffe_mtls::health::Thresholds;
///
/// let mut thresholds = Thresholds::default();
/// thresholds.peer_denials_per_minute = 3;
/// thresholds.workload_api_unreachable = Duration::from_secs(30);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Thresholds {
    /// `svid_not_rotated`: an SVID past this fraction of its lifetime (default 0.75; SPIRE
    /// rotates at one half).
    pub svid_rotation_fraction: f64,
    /// `workload_api_unreachable`: the Workload API stream down for longer than this
    /// (default 10 s).
    pub workload_api_unreachable: Duration,
    /// `peer_denials`: more denials than this from one peer in the last minute (default 10).
    pub peer_denials_per_minute: u32,
    /// `peer_call_spike`: a peer's calls in the last minute above this many times its own
    /// moving average (default 5)...
    pub peer_spike_factor: f64,
    /// ... and at least this many calls in the minute (default 20).
    pub peer_spike_min_calls: u32,
    /// `root_expiring`: a bundle root expiring within this long (default 7 days).
    pub root_expiry: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            svid_rotation_fraction: 0.75,
            workload_api_unreachable: Duration::from_secs(10),
            peer_denials_per_minute: 10,
            peer_spike_factor: 5.0,
            peer_spike_min_calls: 20,
            root_expiry: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Thresholds {
    /// The `thresholds` object of `/_status`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "svid_rotation_fraction": self.svid_rotation_fraction,
            "workload_api_unreachable_seconds": self.workload_api_unreachable.as_secs_f64(),
            "peer_denials_per_minute": self.peer_denials_per_minute,
            "peer_spike_factor": self.peer_spike_factor,
            "peer_spike_min_calls": self.peer_spike_min_calls,
            "root_expiry_days": self.root_expiry.as_secs_f64() / 86_400.0,
        })
    }
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Warning,
    Critical,
}

/// One raised alert.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Alert {
    /// The rule that raised it.
    pub(crate) rule: &'static str,
    pub(crate) severity: Severity,
    /// What it is about: an SVID's ID, a peer's, a trust domain, the source.
    pub(crate) subject: String,
    /// A sentence.
    pub(crate) message: String,
    /// When the condition began, where known.
    #[serde(serialize_with = "super::serialize_optional_time")]
    pub(crate) since: Option<SystemTime>,
}

/// `svid_not_rotated`: the SVID `id`, valid from `not_before` to `not_after`, is past the
/// threshold fraction of its lifetime at `now`.
pub(crate) fn svid_not_rotated(
    thresholds: &Thresholds,
    id: &str,
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
) -> Option<Alert> {
    let lifetime = not_after.duration_since(not_before).ok()?;
    let due = not_before + lifetime.mul_f64(thresholds.svid_rotation_fraction.clamp(0.0, 1.0));
    if now < due {
        return None;
    }
    let left = not_after.duration_since(now).unwrap_or_default();
    Some(Alert {
        rule: "svid_not_rotated",
        severity: if left.is_zero() || left < lifetime / 10 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        subject: id.to_owned(),
        message: format!(
            "past {:.0} % of its lifetime without a rotation: {} left",
            thresholds.svid_rotation_fraction * 100.0,
            humane(left)
        ),
        since: Some(due),
    })
}

/// `workload_api_unreachable`: the stream of `source` down since `since`.
pub(crate) fn workload_api_unreachable(
    thresholds: &Thresholds,
    source: &str,
    since: SystemTime,
    now: SystemTime,
) -> Option<Alert> {
    let down = now.duration_since(since).unwrap_or_default();
    (down > thresholds.workload_api_unreachable).then(|| Alert {
        rule: "workload_api_unreachable",
        severity: Severity::Critical,
        subject: source.to_owned(),
        message: format!(
            "the Workload API has been unreachable for {} (threshold {}); the last SVIDs stay in use until they expire",
            humane(down),
            humane(thresholds.workload_api_unreachable)
        ),
        since: Some(since),
    })
}

/// `peer_denials`: `denials` from peer `id` in the last minute.
pub(crate) fn peer_denials(thresholds: &Thresholds, id: &str, denials: u32) -> Option<Alert> {
    (denials > thresholds.peer_denials_per_minute).then(|| Alert {
        rule: "peer_denials",
        severity: Severity::Warning,
        subject: id.to_owned(),
        message: format!(
            "{denials} denials in the last minute (threshold {})",
            thresholds.peer_denials_per_minute
        ),
        since: None,
    })
}

/// `peer_call_spike`: `calls` from peer `id` in the last minute against its moving
/// `average`.
pub(crate) fn peer_call_spike(
    thresholds: &Thresholds,
    id: &str,
    calls: u32,
    average: Option<f64>,
) -> Option<Alert> {
    let average = average?;
    let spiking = calls >= thresholds.peer_spike_min_calls
        && f64::from(calls) > thresholds.peer_spike_factor * average;
    spiking.then(|| Alert {
        rule: "peer_call_spike",
        severity: Severity::Warning,
        subject: id.to_owned(),
        message: format!(
            "{calls} calls in the last minute, {:.1} times its moving average of {average:.1} per minute (threshold {} times)",
            f64::from(calls) / average.max(f64::MIN_POSITIVE),
            thresholds.peer_spike_factor
        ),
        since: None,
    })
}

/// `root_expiring`: a root of `trust_domain` expires at `expiry`.
pub(crate) fn root_expiring(
    thresholds: &Thresholds,
    trust_domain: &str,
    expiry: SystemTime,
    now: SystemTime,
) -> Option<Alert> {
    let left = expiry.duration_since(now).unwrap_or_default();
    (left <= thresholds.root_expiry).then(|| Alert {
        rule: "root_expiring",
        severity: if left.is_zero() {
            Severity::Critical
        } else {
            Severity::Warning
        },
        subject: trust_domain.to_owned(),
        message: if left.is_zero() {
            format!("a root of {trust_domain} has expired")
        } else {
            format!(
                "a root of {trust_domain} expires in {} (threshold {})",
                humane(left),
                humane(thresholds.root_expiry)
            )
        },
        since: None,
    })
}

/// `3d 4h`, `12m 5s`, `45 s`.
pub(crate) fn humane(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn each_rule_fires_past_its_threshold_and_not_before() {
        let t = Thresholds::default();
        // An SVID of 100 s: due at 75 s.
        assert!(svid_not_rotated(&t, "id", at(0), at(100), at(74)).is_none());
        let late = svid_not_rotated(&t, "id", at(0), at(100), at(76)).unwrap();
        assert_eq!(
            (late.rule, late.severity),
            ("svid_not_rotated", Severity::Warning)
        );
        assert_eq!(late.since, Some(at(75)));
        let later = svid_not_rotated(&t, "id", at(0), at(100), at(95)).unwrap();
        assert_eq!(later.severity, Severity::Critical);

        assert!(workload_api_unreachable(&t, "api", at(0), at(10)).is_none());
        assert!(workload_api_unreachable(&t, "api", at(0), at(11)).is_some());

        assert!(peer_denials(&t, "p", 10).is_none());
        assert!(peer_denials(&t, "p", 11).is_some());

        assert!(
            peer_call_spike(&t, "p", 100, None).is_none(),
            "no average yet"
        );
        assert!(
            peer_call_spike(&t, "p", 19, Some(1.0)).is_none(),
            "too few calls"
        );
        assert!(
            peer_call_spike(&t, "p", 50, Some(10.0)).is_none(),
            "5 times, not above"
        );
        assert!(peer_call_spike(&t, "p", 51, Some(10.0)).is_some());

        let week = 7 * 86_400;
        assert!(root_expiring(&t, "td", at(week + 1), at(0)).is_none());
        assert!(root_expiring(&t, "td", at(week), at(0)).is_some());
        assert_eq!(
            root_expiring(&t, "td", at(0), at(1)).unwrap().severity,
            Severity::Critical
        );
    }
}
