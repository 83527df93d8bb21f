//! Trust re-checked on the proxy's live connections (issue 18): `proxy server --policy FILE`
//! watches the file, and an edit that drops an ID, or revokes it, closes that ID's open
//! connections within a second and refuses its new ones, while other peers' connections stay
//! open; `--max-conn-lifetime` closes connections on both proxies. Each closure is an audit
//! line naming the reason, and a metric by reason.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::proxy_world::{
    CLIENT_ID, INTRUDER_ID, World, connect, echo, echo_backend, http_backend,
};

/// The acceptance bound: a closure within this long of the change.
const WITHIN: Duration = Duration::from_secs(1);

/// A policy file allowing `allowed` to connect, with `revoked` on its revoked list; written
/// whole with a rename, as an editor or a config manager does.
fn write_policy(path: &Path, allowed: &[&str], revoked: &[&str]) {
    let list = |ids: &[&str]| {
        ids.iter()
            .map(|id| format!("{id:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "revoked = [{}]\n[connect]\nids = [{}]\n",
        list(revoked),
        list(allowed)
    );
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// How long until the peer closes `stream` (end of stream or reset), if it does within
/// `bound`; `None` when the stream is still open then.
fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut byte = [0u8; 1];
    loop {
        let left = bound.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut byte) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

/// Whether `stream` is still relayed (an echo goes through).
fn still_open(stream: &mut TcpStream, message: &[u8]) {
    stream
        .set_read_timeout(Some(crate::proxy_world::IO_TIMEOUT))
        .unwrap();
    echo(stream, message);
}

fn metric(text: &str, reason: &str) -> u64 {
    let prefix = format!("spiffe_proxy_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[test]
fn editing_the_policy_closes_the_dropped_ids_connections_and_refuses_its_new_ones() {
    let world = World::new();
    let backend = echo_backend();
    let policy = world.path("policy.toml");
    write_policy(&policy, &[CLIENT_ID, INTRUDER_ID], &[]);
    let server = world.server(
        &backend,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--status",
            "127.0.0.1:0",
        ],
    );
    let client = world.client("proxy-client", &server, &[]);
    let other = world.client("proxy-intruder", &server, &[]);
    let mut kept = connect(&client.listen);
    echo(&mut kept, b"before");
    let mut dropped = connect(&other.listen);
    echo(&mut dropped, b"before");

    // The policy stops allowing the second peer: only its connection closes.
    write_policy(&policy, &[CLIENT_ID], &[]);
    let took = closed_within(&mut dropped, Duration::from_secs(10))
        .expect("the dropped ID's connection stays open");
    assert!(took < WITHIN, "closed after {took:?}");
    eprintln!("the dropped ID's relay closed {took:?} after the edit");
    server.audit_line(&[
        &format!("peer={INTRUDER_ID} "),
        "decision=accepted",
        "end=\"closed (policy)\"",
    ]);
    still_open(&mut kept, b"after the edit");
    // Its new connections are refused by the reloaded rule.
    let mut again = connect(&other.listen);
    assert!(closed_within(&mut again, Duration::from_secs(10)).is_some());
    server.audit_line(&[&format!("peer={INTRUDER_ID} "), "decision=denied"]);

    // Revoked: refused everywhere, whatever [connect] says; the other peer is allowed again.
    write_policy(&policy, &[CLIENT_ID, INTRUDER_ID], &[CLIENT_ID]);
    let took = closed_within(&mut kept, Duration::from_secs(10))
        .expect("the revoked ID's connection stays open");
    assert!(took < WITHIN, "closed after {took:?}");
    server.audit_line(&[&format!("peer={CLIENT_ID} "), "end=\"closed (revoked)\""]);
    let mut readmitted = connect(&other.listen);
    still_open(&mut readmitted, b"allowed again");
    let mut refused = connect(&client.listen);
    assert!(closed_within(&mut refused, Duration::from_secs(10)).is_some());

    let (status, metrics) = server.status_get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&metrics, "policy"), 1, "{metrics}");
    assert_eq!(metric(&metrics, "revoked"), 1, "{metrics}");
}

#[test]
fn an_invalid_edit_keeps_the_last_good_policy_and_the_connections() {
    let world = World::new();
    let backend = echo_backend();
    let policy = world.path("policy.toml");
    write_policy(&policy, &[CLIENT_ID], &[]);
    let server = world.server(&backend, &["--policy", policy.to_str().unwrap()]);
    let client = world.client("proxy-client", &server, &[]);
    let mut open = connect(&client.listen);
    echo(&mut open, b"before");

    std::fs::write(&policy, "[connect]\nids = [\"not a SPIFFE ID\"]\n").unwrap();
    // Longer than a few polls of the file: nothing closes, new connections still work.
    assert_eq!(closed_within(&mut open, Duration::from_millis(1200)), None);
    still_open(&mut open, b"after the invalid edit");
    let mut new = connect(&client.listen);
    still_open(&mut new, b"a new connection");
}

#[test]
fn an_http_keep_alive_connection_closes_when_its_peer_is_dropped() {
    let world = World::new();
    let backend = http_backend();
    let policy = world.path("policy.toml");
    write_policy(&policy, &[CLIENT_ID], &[]);
    let server = world.server(&backend, &["--http", "--policy", policy.to_str().unwrap()]);
    let client = world.client("proxy-client", &server, &[]);
    let mut stream = connect(&client.listen);
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: backend\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Read the rest of that response: the connection is then idle and kept alive.
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut rest = [0u8; 4096];
    while stream.read(&mut rest).is_ok_and(|n| n > 0) {}

    write_policy(&policy, &[INTRUDER_ID], &[]);
    let took = closed_within(&mut stream, Duration::from_secs(10))
        .expect("the kept-alive connection stays open");
    assert!(took < WITHIN, "closed after {took:?}");
    server.audit_line(&[&format!("peer={CLIENT_ID} "), "end=\"closed (policy)\""]);
}

#[test]
fn max_conn_lifetime_closes_connections_on_both_proxies() {
    let world = World::new();
    let backend = echo_backend();
    let server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--max-conn-lifetime", "1s"],
    );
    let client = world.client("proxy-client", &server, &[]);
    let mut stream = connect(&client.listen);
    echo(&mut stream, b"hello");
    let took = closed_within(&mut stream, Duration::from_secs(10))
        .expect("the connection outlives --max-conn-lifetime");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    server.audit_line(&[&format!("peer={CLIENT_ID} "), "end=\"closed (lifetime)\""]);

    // The client side's own limit, against a server without one.
    let unlimited = world.server(&backend, &["--allow-id", CLIENT_ID]);
    let client = world.client(
        "proxy-client",
        &unlimited,
        &["--max-conn-lifetime", "500ms"],
    );
    let mut stream = connect(&client.listen);
    echo(&mut stream, b"hello");
    assert!(closed_within(&mut stream, Duration::from_secs(10)).is_some());
    client.audit_line(&["side=client", "end=\"closed (lifetime)\""]);
    // The server's side of it ends too (the client went away without a close_notify).
    unlimited.audit_line(&[&format!("peer={CLIENT_ID} "), "decision=accepted"]);
}

#[test]
fn a_connection_closes_when_a_certificate_of_its_handshake_expires() {
    // Three-second SVIDs: both proxies' certificates of the handshake expire while the
    // relay is open (the proxies take new SVIDs for new connections meanwhile).
    let world = World::with_settings("svid_ttl = \"3s\"\n");
    let backend = echo_backend();
    let server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--status", "127.0.0.1:0"],
    );
    let client = world.client("proxy-client", &server, &["--status", "127.0.0.1:0"]);
    let mut stream = connect(&client.listen);
    echo(&mut stream, b"hello");
    // The certificates of the handshake expire at the earliest `svid_expires_at` the proxies
    // report now, or sooner (a proxy that rotated since reports a later one: a looser
    // bound, never a stricter one).
    let expires = [&server, &client]
        .iter()
        .map(|proxy| svid_expires_at(proxy))
        .min()
        .unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(10))
        .expect("the relay outlived its certificates");
    let closed = std::time::SystemTime::now();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    let late = closed.duration_since(expires).unwrap_or_default();
    assert!(
        late < WITHIN,
        "closed {late:?} after the first certificate expired"
    );
    // Whichever proxy saw its peer's certificate expire first closed it, naming the reason.
    crate::proxy_world::wait_until("an audit line closed (expired)", || {
        [&server, &client].iter().any(|proxy| {
            proxy
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains("end=\"closed (expired)\""))
        })
    });
    // A new connection works with the new SVIDs.
    let mut again = connect(&client.listen);
    still_open(&mut again, b"with new SVIDs");
}

/// The `svid_expires_at` of a proxy's `/_status`.
fn svid_expires_at(proxy: &crate::proxy_world::Proc) -> std::time::SystemTime {
    let (_, body) = proxy.status_get("/_status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = status["svid_expires_at"].as_str().unwrap();
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(at.unix_timestamp() as u64)
}

fn resumed_handshakes(proxy: &crate::proxy_world::Proc) -> u64 {
    let (_, metrics) = proxy.status_get("/metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("spiffe_proxy_resumed_handshakes_total "))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// `--resumption` on both proxies: reconnections resume; a policy edit that drops the
/// client retires its tickets, and its next connection is refused, not resumed.
#[test]
fn with_resumption_reconnections_resume_until_the_policy_drops_the_client() {
    let world = World::new();
    let backend = echo_backend();
    let policy = world.path("policy.toml");
    write_policy(&policy, &[CLIENT_ID], &[]);
    let server = world.server(
        &backend,
        &[
            "--resumption",
            "--policy",
            policy.to_str().unwrap(),
            "--status",
            "127.0.0.1:0",
        ],
    );
    let client = world.client("proxy-client", &server, &["--resumption"]);
    for round in 0..4 {
        let mut stream = connect(&client.listen);
        echo(&mut stream, format!("round {round}").as_bytes());
    }
    // The first connection is a full handshake; the next ones resume its tickets.
    let resumed = resumed_handshakes(&server);
    assert!((2..=3).contains(&resumed), "{resumed} resumed of 4");

    write_policy(&policy, &[INTRUDER_ID], &[]);
    crate::proxy_world::wait_until("the policy reload refuses the client", || {
        let mut stream = connect(&client.listen);
        closed_within(&mut stream, Duration::from_secs(10)).is_some()
    });
    // Once the reload is seen, the client's tickets are retired: refused, not resumed.
    let before = resumed_handshakes(&server);
    let mut stream = connect(&client.listen);
    assert!(closed_within(&mut stream, Duration::from_secs(10)).is_some());
    assert_eq!(
        resumed_handshakes(&server),
        before,
        "resumed after the edit"
    );
    server.audit_line(&[&format!("peer={CLIENT_ID} "), "decision=denied"]);
}
