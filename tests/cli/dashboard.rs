//! The identity-health dashboard and the decision log, through the built binary: `proxy
//! server --status --audit-log --audit-chain`, `dev-server --status`, `audit verify`.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::proxy_world;

use proxy_world::*;

/// A GET of `target` on `address` with `Host: host`: the response head (lowercase) and body.
fn raw_get(address: &str, host: &str, target: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(stream, "GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
    (head.to_ascii_lowercase(), body.to_owned())
}

fn status(proxy: &Proc) -> Value {
    let (code, body) = proxy.status_get("/_status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn peer<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["peers"]
        .as_array()?
        .iter()
        .find(|peer| peer["spiffe_id"] == id)
}

/// No key material or token in `text`: no PEM, no JWK private member, nothing shaped like a
/// JWT (three base64url segments, the first a JSON object's).
fn holds_no_secret(what: &str, text: &str) {
    assert!(!text.contains("-----BEGIN"), "{what} holds PEM");
    assert!(
        !text.contains("\"d\":"),
        "{what} holds a JWK private member"
    );
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c))) {
        let parts: Vec<&str> = word.split('.').collect();
        let jwt_shaped =
            parts.len() == 3 && parts[0].starts_with("eyJ") && parts.iter().all(|p| p.len() >= 4);
        assert!(!jwt_shaped, "{what} holds a JWT-shaped word: {word}");
    }
}

#[test]
fn the_status_port_shows_peers_decisions_and_alerts_and_the_log_holds_the_evidence() {
    let mut world = World::new();
    let backend = http_backend();
    let log = world.path("audit.jsonl");
    let server = world.server(
        &backend,
        &[
            "--allow-id",
            CLIENT_ID,
            "--status",
            "127.0.0.1:0",
            "--audit-log",
            log.to_str().unwrap(),
            "--audit-chain",
            "--alert-unreachable",
            "2s",
        ],
    );
    let client = world.client("proxy-client", &server, &[]);
    let intruder = world.client("proxy-intruder", &server, &[]);
    assert_eq!(http_get(&client.listen, "/hello", &[]).0, 200);
    assert_eq!(http_get(&intruder.listen, "/hello", &[]).0, 0);

    // The peers, within 2 s of the refusal.
    let mut seen = Value::Null;
    wait_until("both peers on /_status", || {
        seen = status(&server);
        peer(&seen, INTRUDER_ID).is_some_and(|p| p["denied"] == 1)
            && peer(&seen, CLIENT_ID).is_some_and(|p| p["accepted"] == 1 && p["open"] == 0)
    });
    let refused = peer(&seen, INTRUDER_ID).unwrap();
    assert_eq!(
        refused["last_deny_reason"],
        "the rule does not allow this SPIFFE ID"
    );
    assert_eq!(refused["accepted"], 0);
    let decisions = seen["decisions"].as_array().unwrap();
    assert!(
        decisions
            .iter()
            .any(|d| d["decision"] == "denied" && d["peer"] == INTRUDER_ID),
        "{decisions:?}"
    );
    assert_eq!(seen["svids"][0]["spiffe_id"], SERVER_ID);
    assert!(seen["svids"][0]["fraction_left"].as_f64().unwrap() > 0.5);
    assert_eq!(seen["workload_api"]["state"], "connected");
    assert_eq!(seen["bundles"][0]["trust_domain"], "example.org");
    assert_eq!(seen["connections"]["accepted"], 1, "the proxy's own counts");

    // The page: same origin only, hashed inline script, no secret.
    let status_address = server.status.clone().unwrap();
    let (head, page) = raw_get(&status_address, &status_address, "/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    let policy = head
        .lines()
        .find_map(|line| line.strip_prefix("content-security-policy: "))
        .expect("a Content-Security-Policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("http"),
        "{policy}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no outside address"
    );
    holds_no_secret("the page", &page);
    holds_no_secret("/_status", &serde_json::to_string(&seen).unwrap());

    // A page of another site reaching the port through DNS rebinding sends its own name:
    // refused, in the Host header or the request target; `localhost` and liveness probes pass.
    for (host, target) in [
        ("evil.example", "/_status".to_owned()),
        ("evil.example:80", "/metrics".to_owned()),
        (
            status_address.as_str(),
            "http://evil.example/_status".to_owned(),
        ),
    ] {
        let (head, _) = raw_get(&status_address, host, &target);
        assert!(head.starts_with("http/1.1 421"), "{host} {target}: {head}");
    }
    let port = status_address.rsplit_once(':').unwrap().1;
    let (head, _) = raw_get(&status_address, &format!("localhost:{port}"), "/_status");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let (head, _) = raw_get(&status_address, "probe.example", "/healthz");
    assert!(head.starts_with("http/1.1 200"), "{head}");

    let (_, metrics) = server.status_get("/metrics");
    for expected in [
        format!("spiffe_peer_decisions_total{{peer=\"{INTRUDER_ID}\",decision=\"denied\"}} 1"),
        format!("spiffe_svid_expiry_seconds{{spiffe_id=\"{SERVER_ID}\"}}"),
        "spiffe_proxy_connections_accepted_total 1".to_owned(),
    ] {
        assert!(metrics.contains(&expected), "{expected} in {metrics}");
    }

    // The decision log: the evidence of each decision, chained.
    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let denial = events
        .iter()
        .find(|e| e["decision"] == "denied" && e["peer"] == INTRUDER_ID)
        .unwrap_or_else(|| panic!("the intruder's denial in {text}"));
    for field in ["leaf_sha256", "root_sha256"] {
        assert_eq!(denial[field].as_str().map(str::len), Some(64), "{field}");
    }
    assert!(denial["bundle_generation"].is_u64());
    assert_eq!(denial["rule"], format!("the ID {CLIENT_ID}"));
    let verified = Command::new(BIN)
        .args(["audit", "verify", log.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("ok: "));
    assert_eq!(seen["audit_log"]["failure"], Value::Null);
    assert_eq!(seen["audit_log"]["lost_events"], 0);

    // The Workload API goes away: an alert within the threshold and a poll.
    world.dev.signal("TERM");
    world.dev.wait(Duration::from_secs(10));
    wait_until("the unreachable alert", || {
        seen = status(&server);
        seen["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "workload_api_unreachable")
    });
    assert_eq!(seen["workload_api"]["state"], "reconnecting");
    assert_eq!(seen["healthy"], true, "the last SVID stays in use");
}

/// `audit verify` on a chained log: 0 when whole, 1 naming the line where an edited, deleted
/// or reordered line shows, 2 when the file cannot be read.
#[test]
fn audit_verify_catches_edited_deleted_and_reordered_lines() {
    use spiffe_mtls::audit::{AuditEvent, AuditLog, AuditSink, Decision};
    use spiffe_mtls::tls::Side;

    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.jsonl");
    {
        let log = AuditLog::open(&whole, true).unwrap();
        for n in 0..5 {
            let id = format!("spiffe://example.org/peer{n}").parse().unwrap();
            log.record(&AuditEvent::new(
                Side::Server,
                Decision::Accepted,
                Some(&id),
                "the ID x",
            ));
        }
    }
    let lines: Vec<String> = std::fs::read_to_string(&whole)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 5);
    let verify = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let output = Command::new(BIN)
            .args(["audit", "verify", path.to_str().unwrap()])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, _) = verify("copy.jsonl", &lines);
    assert_eq!(code, Some(0));

    // The digest printed for the first three lines, kept: the grown log holds that line, a
    // log cut back to two lines does not.
    let three = dir.path().join("three.jsonl");
    std::fs::write(
        &three,
        lines[..3]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let printed = Command::new(BIN)
        .args(["audit", "verify", three.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&printed.stdout).into_owned();
    let kept = stdout.trim().rsplit(' ').next().unwrap().to_owned();
    assert_eq!(kept.len(), 64, "{stdout}");
    let with_kept = |name: &str, lines: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        Command::new(BIN)
            .args(["audit", "verify", path.to_str().unwrap(), "--last", &kept])
            .output()
            .unwrap()
    };
    assert_eq!(with_kept("grown.jsonl", &lines).status.code(), Some(0));
    let cut = with_kept("cut.jsonl", &lines[..2]);
    assert_eq!(cut.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&cut.stderr).contains("lines were cut from the end"),
        "{cut:?}"
    );

    let mut edited = lines.clone();
    edited[1] = edited[1].replace("peer1", "peer9");
    let (code, stderr) = verify("edited.jsonl", &edited);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("line 3: "), "{stderr}");
    assert!(stderr.contains("line 2 was edited"), "{stderr}");

    let mut deleted = lines.clone();
    deleted.remove(2);
    let (code, stderr) = verify("deleted.jsonl", &deleted);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("line 3: "), "{stderr}");

    let mut reordered = lines.clone();
    reordered.swap(3, 4);
    let (code, stderr) = verify("reordered.jsonl", &reordered);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("line 4: "), "{stderr}");

    let output = Command::new(BIN)
        .args(["audit", "verify", dir.path().join("none").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("cannot read "));
}

#[test]
fn the_dev_server_page_lists_its_entries_and_the_svids_it_issued() {
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}", dir.path().join("agent.sock").display());
    let dev = Proc::start(
        BIN,
        &[
            "dev-server",
            "--trust-domain",
            "example.org",
            "--id",
            "spiffe://example.org/me",
            "--socket",
            &socket,
            "--status",
            "127.0.0.1:0",
        ],
        "listening on",
    );
    let (code, body) = dev.status_get("/_status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["mode"], "dev-server");
    let section = &status["dev_server"];
    assert_eq!(section["trust_domain"], "example.org");
    assert_eq!(
        section["entries"][0]["spiffe_id"],
        "spiffe://example.org/me"
    );
    let first = section["issued"][0]["serial"].clone();
    assert!(first.is_string());
    dev.signal("USR1");
    wait_until("the rotated SVID in the issued list", || {
        let (_, body) = dev.status_get("/_status");
        let status: Value = serde_json::from_str(&body).unwrap();
        status["dev_server"]["issued"].as_array().unwrap().len() == 2
            && status["dev_server"]["issued"][1]["serial"] == first
    });
    let (code, page) = dev.status_get("/");
    assert_eq!(code, 200);
    holds_no_secret("the page", &page);
}

#[test]
fn the_status_port_is_loopback_only_unless_asked() {
    let world = World::new();
    let backend = http_backend();
    let allowed = world.server(
        &backend,
        &[
            "--allow-id",
            CLIENT_ID,
            "--status",
            "0.0.0.0:0",
            "--status-allow-remote",
        ],
    );
    assert!(allowed.status.as_deref().unwrap().starts_with("0.0.0.0:"));

    let output = Command::new(BIN)
        .args([
            "dev-server",
            "--trust-domain",
            "example.org",
            "--id",
            "spiffe://example.org/me",
            "--socket",
            &format!(
                "unix://{}",
                tempfile::tempdir().unwrap().path().join("a.sock").display()
            ),
            "--status",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not a loopback address") && stderr.contains("--status-allow-remote"),
        "{stderr}"
    );
}

#[test]
fn an_audit_log_that_cannot_be_written_is_said_and_counted() {
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let world = World::new();
    let backend = http_backend();
    let server = world.server(
        &backend,
        &[
            "--allow-id",
            CLIENT_ID,
            "--status",
            "127.0.0.1:0",
            "--audit-log",
            "/dev/full",
        ],
    );
    let intruder = world.client("proxy-intruder", &server, &[]);
    assert_eq!(http_get(&intruder.listen, "/hello", &[]).0, 0);
    wait_until("the failure on /_status", || {
        let status: Value = serde_json::from_str(&server.status_get("/_status").1).unwrap();
        status["audit_log"]["failure"]
            .as_str()
            .is_some_and(|f| f.starts_with("cannot write the audit log /dev/full: "))
            && status["audit_log"]["lost_events"].as_u64() >= Some(1)
    });
}
