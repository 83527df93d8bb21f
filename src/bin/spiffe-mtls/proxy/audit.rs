//! The audit line: one per connection, on standard output, written when the connection ends
//! (also when a drain cuts it or its task is aborted).
//!
//! ```text
//! proxy-audit time=2026-11-30T16:00:00Z side=server remote=127.0.0.1:53210 peer=spiffe://example.org/client decision=accepted rule="the ID spiffe://example.org/client" bytes_in=420 bytes_out=1337 duration_ms=12.408 end=closed
//! proxy-audit time=2026-11-30T16:00:01Z side=server remote=127.0.0.1:53214 peer=spiffe://example.org/intruder decision=denied rule="the ID spiffe://example.org/client" bytes_in=0 bytes_out=0 duration_ms=1.032 end="handshake: the client is not authorized: expected the ID spiffe://example.org/client, presented spiffe://example.org/intruder"
//! ```
//!
//! Fields, always all present, in this order (`key=value`, a value with a space, `"` or `=` is
//! double-quoted with `\"` and `\\` escapes; `-` when unknown):
//! - `side`: `server` (a `proxy server` deciding about its client) or `client` (a
//!   `proxy client` deciding about the server it connects to);
//! - `remote`: the address of the peer that connected to `--listen` (`unix` for a Unix socket);
//! - `peer`: the SPIFFE ID the TLS peer presented (verified, or the one refused by the rule),
//!   `-` when no certificate verified;
//! - `decision`: `accepted` (the handshake completed: chain verified, ID authorized, key
//!   proven) or `denied`;
//! - `rule`: the rule that decided;
//! - `bytes_in`: application bytes from the connecting client towards the target;
//! - `bytes_out`: application bytes from the target back to the connecting client;
//! - `duration_ms`: from accept to close;
//! - `end`: `closed` (both sides finished), `drained` (cut at the end of `--drain-timeout`),
//!   `closed (REASON)` (the proxy closed a live connection: its peer no longer passed the
//!   trust re-check, REASON `expired`, `bundle`, `policy` or `revoked`, or it reached
//!   `--max-conn-lifetime`, REASON `lifetime`), or what went wrong (`handshake: ...`, `target ADDRESS: why`, `relay: ...`). With `--http`, also
//!   `requests=N` and `denied_requests=N` (403 by the policy's routes, 400 for a path with no
//!   canonical form) before `end`.
//!
//! With `--http`, each refused request has a line of its own as it is refused:
//!
//! ```text
//! proxy-request time=2026-11-30T16:00:02Z side=server remote=127.0.0.1:53210 peer=spiffe://example.org/client decision=denied status=403 route=/admin path=/admin/secret.txt rule="route \"/admin\" allows the ID spiffe://example.org/ops" reason="the rule does not allow this SPIFFE ID"
//! proxy-request time=2026-11-30T16:00:03Z side=server remote=127.0.0.1:53212 peer=spiffe://example.org/client decision=denied status=400 route=- path=/admin%2Fsecret.txt rule="canonical path" reason="the path has an encoded separator \"%2F\""
//! ```
//!
//! `route` is the route that was decided, on the canonical path (`-` when the path had none);
//! `path` is that canonical path, or the path as received when it had none.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use spiffe_mtls::net::RouteRefusal;

use super::counted::Traffic;
use super::metrics::Metrics;

/// One connection's record; printed on drop.
#[derive(Debug)]
pub struct Record {
    /// `server` or `client`.
    pub side: &'static str,
    /// Who connected to `--listen`.
    pub remote: String,
    /// The TLS peer's SPIFFE ID, if known.
    pub peer: Option<String>,
    /// `accepted` or `denied`.
    pub decision: &'static str,
    /// The rule that decided.
    pub rule: Arc<str>,
    /// The bytes each way.
    pub traffic: Arc<Traffic>,
    /// When the connection was accepted.
    pub started: Instant,
    /// How it ended; `None` (printed `drained`) when its task was cut.
    pub end: Option<String>,
    /// `(requests, denied)` in HTTP mode.
    pub requests: Option<Arc<(AtomicU64, AtomicU64)>>,
    /// Where the bytes are counted too.
    pub metrics: Arc<Metrics>,
    /// The connection counted open on the dashboard, once its peer is accepted.
    pub open: Option<spiffe_mtls::health::OpenConnection>,
}

/// Writes `value` as a logfmt value.
fn value(out: &mut String, value: &str) {
    if !value.is_empty() && !value.contains([' ', '"', '=', '\\', '\n', '\t']) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Record {
    /// The line, without its newline.
    pub fn line(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("proxy-audit time=");
        out.push_str(&crate::fetch::rfc3339(SystemTime::now()));
        let _ = write!(out, " side={} remote=", self.side);
        value(&mut out, &self.remote);
        out.push_str(" peer=");
        value(&mut out, self.peer.as_deref().unwrap_or("-"));
        let _ = write!(out, " decision={} rule=", self.decision);
        value(&mut out, &self.rule);
        let _ = write!(
            out,
            " bytes_in={} bytes_out={} duration_ms={:.3}",
            self.traffic.inbound(),
            self.traffic.outbound(),
            self.started.elapsed().as_secs_f64() * 1e3
        );
        if let Some(requests) = &self.requests {
            let _ = write!(
                out,
                " requests={} denied_requests={}",
                requests.0.load(Ordering::Relaxed),
                requests.1.load(Ordering::Relaxed)
            );
        }
        out.push_str(" end=");
        value(&mut out, self.end.as_deref().unwrap_or("drained"));
        out
    }
}

/// The `--audit-log` file, receiving every decision of the process while this lives.
pub struct DecisionLog {
    log: Arc<spiffe_mtls::audit::AuditLog>,
    _registration: spiffe_mtls::audit::Registration,
    watcher: tokio::task::JoinHandle<()>,
}

/// How often the log's health is looked at (to say on stderr that it failed).
const LOG_WATCH: std::time::Duration = std::time::Duration::from_secs(1);

impl DecisionLog {
    /// Opens `--audit-log` (chained with `--audit-chain`), if given. A write error later is
    /// said once on stderr (`cannot write the audit log FILE: ...`) and on the status port.
    pub fn open(common: &super::CommonArgs) -> Result<Option<Self>, crate::Failure> {
        let Some(path) = &common.audit_log else {
            return Ok(None);
        };
        let log = spiffe_mtls::audit::AuditLog::open(path, common.audit_chain)
            .map_err(|e| crate::Failure::Usage(format!("--audit-log {}: {e}", path.display())))?;
        let log = Arc::new(log);
        let watched = Arc::clone(&log);
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(LOG_WATCH).await;
                if let Some(failure) = watched.failure() {
                    eprintln!("{failure}: later decisions are not written (counted as lost)");
                    return;
                }
            }
        });
        let sink: Arc<dyn spiffe_mtls::audit::AuditSink> = Arc::clone(&log) as _;
        Ok(Some(Self {
            _registration: spiffe_mtls::audit::register(sink),
            log,
            watcher,
        }))
    }

    /// Adds `audit_log` (`path`, `failure`, `lost_events`) to the dashboard's `/_status`.
    pub fn show_on(&self, monitor: &spiffe_mtls::health::HealthMonitor) {
        let log = Arc::clone(&self.log);
        monitor.section("audit_log", move || {
            serde_json::json!({
                "path": log.path().display().to_string(),
                "failure": log.failure(),
                "lost_events": log.lost(),
            })
        });
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Who a connection's requests come from, for [`request_refused`].
#[derive(Debug, Clone)]
pub struct Who {
    /// The address that connected to `--listen` (`unix` for a Unix socket).
    pub remote: String,
    /// The verified SPIFFE ID.
    pub peer: String,
}

/// The `proxy-request` line of a request the route layers refused.
pub fn request_refused(who: &Who, status: http::StatusCode, refusal: &RouteRefusal) {
    let mut out = String::with_capacity(256);
    out.push_str("proxy-request time=");
    out.push_str(&crate::fetch::rfc3339(SystemTime::now()));
    out.push_str(" side=server remote=");
    value(&mut out, &who.remote);
    out.push_str(" peer=");
    value(&mut out, &who.peer);
    let _ = write!(out, " decision=denied status={} route=", status.as_u16());
    value(&mut out, refusal.route().unwrap_or("-"));
    out.push_str(" path=");
    value(&mut out, refusal.path());
    out.push_str(" rule=");
    value(&mut out, refusal.rule());
    out.push_str(" reason=");
    value(&mut out, refusal.reason());
    out.push('\n');
    write_line(&out);
}

/// Writes one whole line to standard output: lines of concurrent connections never
/// interleave, and a closed standard output must not take the proxy down.
fn write_line(line: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
}

impl Drop for Record {
    fn drop(&mut self) {
        self.metrics
            .bytes(self.traffic.inbound(), self.traffic.outbound());
        let mut line = self.line();
        line.push('\n');
        write_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_when_needed() {
        let mut out = String::new();
        value(&mut out, "spiffe://example.org/a");
        out.push(' ');
        value(&mut out, "id spiffe://x/y \"q\"");
        out.push(' ');
        value(&mut out, "");
        assert_eq!(out, r#"spiffe://example.org/a "id spiffe://x/y \"q\"" """#);
    }
}
