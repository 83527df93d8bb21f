//! `spiffe-mtls proxy server` and `proxy client` end to end, through the built binary, with the
//! dev server as the Workload API.
//!
//! Each proxy runs as a hard link of the binary with its own name, and the dev server gives
//! each link its own SPIFFE ID by a `unix:path` selector: `proxy-server` is
//! `spiffe://example.org/server`, `proxy-client` is `spiffe://example.org/client`,
//! `proxy-intruder` is `spiffe://example.org/intruder`. Backends are small std servers on
//! 127.0.0.1 or Unix sockets in the test's directory; every wait is bounded.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::proxy_world;

use proxy_world::*;

#[test]
fn plain_http_backend_behind_server_reached_by_client_and_wrong_id_refused() {
    let world = World::new();
    let backend = http_backend();
    let server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--status", "127.0.0.1:0"],
    );
    let client = world.client("proxy-client", &server, &[]);

    let (code, body) = http_get(&client.listen, "/hello", &[]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("request: GET /hello HTTP/1.1"), "{body}");
    let line = server.audit_line(&["decision=accepted", &format!("peer={CLIENT_ID}")]);
    assert!(line.contains("side=server"), "{line}");
    assert!(
        line.contains(&format!("rule=\"the ID {CLIENT_ID}\"")),
        "{line}"
    );
    assert!(line.contains("end=closed"), "{line}");
    assert!(!line.contains("bytes_in=0 "), "{line}");
    client.audit_line(&[
        "side=client",
        "decision=accepted",
        &format!("peer={SERVER_ID}"),
    ]);

    // Another workload of the same trust domain is refused by the server's rule.
    let intruder = world.client("proxy-intruder", &server, &[]);
    let (code, body) = http_get(&intruder.listen, "/hello", &[]);
    assert_eq!(code, 0, "the intruder got a response: {body}");
    let line = server.audit_line(&["decision=denied", &format!("peer={INTRUDER_ID}")]);
    assert!(
        line.contains(&format!(
            "end=\"handshake: the client is not authorized: expected the ID {CLIENT_ID}, \
             presented {INTRUDER_ID}\""
        )),
        "{line}"
    );
    assert!(line.contains("bytes_in=0 bytes_out=0"), "{line}");
    // The intruder's own proxy learns it from the server's alert (TLS 1.3), in words.
    intruder.audit_line(&[
        "side=client",
        &format!(
            "end=\"the server refused our certificate (TLS alert access_denied): it does not \
             authorize {INTRUDER_ID} (our ID)\""
        ),
    ]);

    // Status and metrics.
    let (code, body) = server.status_get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = server.status_get("/_status");
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["spiffe_id"], SERVER_ID);
    assert_eq!(status["trust_domains"], serde_json::json!(["example.org"]));
    assert!(
        status["svid_serial"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(status["svid_expires_at"].as_str().is_some());
    assert!(status["svid_seconds_left"].as_f64().unwrap() > 60.0);
    assert_eq!(status["connections"]["accepted"], 1);
    assert_eq!(status["connections"]["refused"], 1);
    assert_eq!(status["rotations"], 0);
    assert!(status["last_rotation"].is_null());
    let (code, metrics) = server.status_get("/metrics");
    assert_eq!(code, 200);
    for expected in [
        "spiffe_proxy_connections_accepted_total 1",
        "spiffe_proxy_connections_refused_total{reason=\"unauthorized\"} 1",
        "spiffe_proxy_handshakes_total{result=\"ok\"} 1",
        "spiffe_proxy_handshake_duration_seconds_count 2",
        "spiffe_proxy_bytes_total{direction=\"in\"}",
        "spiffe_proxy_svid_expiry_seconds ",
        "spiffe_proxy_svid_rotations_total 0",
        "spiffe_proxy_workload_api_reconnects_total 0",
        "spiffe_proxy_connections_active 0",
    ] {
        assert!(metrics.contains(expected), "{expected} not in\n{metrics}");
    }
    // A client that requires another server ID refuses this server.
    let picky = Proc::start(
        world.path("proxy-client").to_str().unwrap(),
        &[
            "proxy",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &server.listen,
            "--server-id",
            "spiffe://example.org/someone-else",
            "--socket",
            &world.socket,
        ],
        "listening on",
    );
    let (code, _) = http_get(&picky.listen, "/", &[]);
    assert_eq!(code, 0);
    picky.audit_line(&["decision=denied", &format!("peer={SERVER_ID}")]);

    let (code, _) = server.status_get("/nothing");
    assert_eq!(code, 404);
}

#[test]
fn http_mode_replaces_spoofed_identity_header_and_authorizes_per_path() {
    let world = World::new();
    let backend = http_backend();
    let policy = world.path("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[connect]\ntrust_domains = [\"example.org\"]\n\
             [routes.\"/public\"]\ntrust_domains = [\"example.org\"]\n\
             [routes.\"/admin\"]\nids = [\"{INTRUDER_ID}\"]\n"
        ),
    )
    .unwrap();
    let server = world.server(&backend, &["--http", "--policy", policy.to_str().unwrap()]);
    let client = world.client("proxy-client", &server, &[]);

    let spoof = [
        "X-Spiffe-Id: spiffe://example.org/admin",
        "x-spiffe-id: spiffe://example.org/root",
    ];
    let (code, body) = http_get(&client.listen, "/public/items?x=1", &spoof);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("request: GET /public/items?x=1 HTTP/1.1"),
        "{body}"
    );
    let ids: Vec<&str> = body
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-spiffe-id:"))
        .collect();
    assert_eq!(ids, [format!("x-spiffe-id: {CLIENT_ID}")], "{body}");
    assert!(!body.contains("spiffe://example.org/admin"), "{body}");

    // The route the client may not call: 403 naming the route, the backend not called.
    let (code, body) = http_get(&client.listen, "/admin/users", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("route \"/admin\""), "{body}");
    assert!(body.contains(CLIENT_ID), "{body}");
    // A path no route covers is refused too.
    let (code, _) = http_get(&client.listen, "/other", &[]);
    assert_eq!(code, 403);
    let line = server.audit_line(&["requests=1 denied_requests=1"]);
    assert!(line.contains("decision=accepted"), "{line}");

    // Another header name.
    let custom = world.server(
        &backend,
        &[
            "--http",
            "--allow-td",
            "example.org",
            "--id-header",
            "X-Peer",
        ],
    );
    let client = world.client("proxy-client", &custom, &[]);
    let (code, body) = http_get(
        &client.listen,
        "/",
        &["x-peer: forged", "x-spiffe-id: kept"],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&format!("x-peer: {CLIENT_ID}")), "{body}");
    assert!(!body.contains("forged"), "{body}");
}

#[test]
fn rotation_during_a_long_lived_relay_does_not_break_it() {
    let world = World::new();
    let backend = echo_backend();
    let server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--status", "127.0.0.1:0"],
    );
    let client = world.client("proxy-client", &server, &["--status", "127.0.0.1:0"]);
    let mut relay = connect(&client.listen);
    echo(&mut relay, b"before rotation\n");
    let serial = |proxy: &Proc| -> String {
        let (_, body) = proxy.status_get("/_status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["svid_serial"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (server_before, client_before) = (serial(&server), serial(&client));

    world.dev.signal("USR1");
    wait_until("both proxies to take the new SVIDs", || {
        serial(&server) != server_before && serial(&client) != client_before
    });
    let (_, body) = server.status_get("/_status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["rotations"], 1);
    assert!(status["last_rotation"].as_str().is_some());

    // The relay opened before the rotation still works, both ways, with a bulk transfer.
    echo(&mut relay, b"after rotation\n");
    echo(&mut relay, &vec![7u8; 256 * 1024]);
    // New connections use the new SVIDs.
    let mut fresh = connect(&client.listen);
    echo(&mut fresh, b"new connection\n");
    drop(relay);
    drop(fresh);
    server.audit_line(&["end=closed", "bytes_in=262175"]);
    world.dev.signal("USR1");
    let (_, metrics) = server.status_get("/metrics");
    assert!(
        metrics.contains("spiffe_proxy_svid_rotations_total"),
        "{metrics}"
    );
}

/// Parses a PROXY v2 header from `stream`: (source address, TLV 0xE0 value).
fn read_proxy_v2(stream: &mut TcpStream) -> (String, String) {
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed).unwrap();
    assert_eq!(&fixed[..12], b"\r\n\r\n\0\r\nQUIT\n", "signature");
    assert_eq!(fixed[12], 0x21, "version 2, PROXY");
    assert_eq!(fixed[13], 0x11, "TCP over IPv4");
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let mut rest = vec![0u8; len];
    stream.read_exact(&mut rest).unwrap();
    let source = format!(
        "{}.{}.{}.{}:{}",
        rest[0],
        rest[1],
        rest[2],
        rest[3],
        u16::from_be_bytes([rest[8], rest[9]])
    );
    let mut tlvs = &rest[12..];
    let mut id = String::new();
    while tlvs.len() >= 3 {
        let kind = tlvs[0];
        let n = usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        let value = &tlvs[3..3 + n];
        if kind == 0xE0 {
            id = String::from_utf8(value.to_vec()).unwrap();
        }
        tlvs = &tlvs[3 + n..];
    }
    (source, id)
}

#[test]
fn proxy_protocol_v2_header_reaches_the_backend() {
    let world = World::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            let header = read_proxy_v2(&mut stream);
            let mut after = [0u8; 5];
            stream.read_exact(&mut after).unwrap();
            stream.write_all(b"done\n").unwrap();
            let _ = tx.send((header, after));
        }
    });
    let server = world.server(&backend, &["--allow-id", CLIENT_ID, "--proxy-protocol"]);
    let client = world.client("proxy-client", &server, &[]);
    let mut stream = connect(&client.listen);
    stream.write_all(b"hello").unwrap();
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"done\n");
    let ((source, id), after) = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(id, CLIENT_ID);
    assert!(source.starts_with("127.0.0.1:"), "{source}");
    assert!(!source.ends_with(":0"), "{source}");
    assert_eq!(&after, b"hello");
    drop(stream);
    // The source is the proxy client's outgoing address, as the server's audit saw it.
    server.audit_line(&[&format!("remote={source}")]);
}

#[test]
fn unix_socket_target() {
    let world = World::new();
    let path = world.path("backend.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader: UnixStream = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    let target = format!("unix:{}", path.display());
    let server = world.server(&target, &["--allow-prefix", "spiffe://example.org/client"]);
    let client = world.client("proxy-client", &server, &[]);
    let mut stream = connect(&client.listen);
    echo(&mut stream, b"through a unix socket\n");
    drop(stream);
    server.audit_line(&["decision=accepted", "bytes_in=22 bytes_out=22"]);

    // And an HTTP target on a Unix socket, listening on a Unix socket on the client side.
    let listen = world.path("client.sock");
    let unix_client = Proc::start(
        world.path("proxy-client").to_str().unwrap(),
        &[
            "proxy",
            "client",
            "--listen",
            &format!("unix:{}", listen.display()),
            "--target",
            &server.listen,
            "--server-id",
            SERVER_ID,
            "--socket",
            &world.socket,
        ],
        "listening on",
    );
    let mut stream = UnixStream::connect(&listen).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    drop(unix_client);
}

#[test]
fn sigterm_stops_accepting_and_drains() {
    let world = World::new();
    let backend = echo_backend();
    let mut server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--drain-timeout", "20s"],
    );
    let client = world.client("proxy-client", &server, &[]);
    let mut open = connect(&client.listen);
    echo(&mut open, b"open before SIGTERM\n");

    server.signal("TERM");
    // No new connections: the listener is closed.
    wait_until("the listener to close", || {
        TcpStream::connect(&server.listen).is_err()
    });
    // The open relay still works while draining, and ends the drain when it closes.
    echo(&mut open, b"still relaying\n");
    drop(open);
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    server.audit_line(&["end=closed", "bytes_in=35"]);

    // A relay left open is cut at the end of the drain timeout.
    let mut server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--drain-timeout", "300ms"],
    );
    let client = world.client("proxy-client", &server, &[]);
    let mut open = connect(&client.listen);
    echo(&mut open, b"left open\n");
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.audit_line(&["end=drained", "bytes_in=10"]);
}

#[test]
fn a_silent_peer_is_disconnected_after_the_handshake_timeout() {
    let world = World::new();
    let backend = echo_backend();
    let server = world.server(
        &backend,
        &[
            "--allow-id",
            CLIENT_ID,
            "--handshake-timeout",
            "300ms",
            "--max-conns",
            "2",
            "--status",
            "127.0.0.1:0",
        ],
    );
    let started = Instant::now();
    let mut silent = connect(&server.listen);
    let mut byte = [0u8; 1];
    let read = silent.read(&mut byte);
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.audit_line(&["decision=denied", "timed out"]);
    // The slots are free again: a real client gets through (max-conns 2).
    let _silent2 = connect(&server.listen);
    let client = world.client("proxy-client", &server, &[]);
    let mut stream = connect(&client.listen);
    echo(&mut stream, b"ok");
    let (_, metrics) = server.status_get("/metrics");
    assert!(
        metrics.contains("spiffe_proxy_connections_refused_total{reason=\"handshake_timeout\"}"),
        "{metrics}"
    );
}

fn refused(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn refuses_to_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}", dir.path().join("none.sock").display());
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
            "--socket",
            &missing,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>| refused(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let message = run(base(&[]));
    assert!(message.contains("--allow-id"), "{message}");
    let message = run(base(&[
        "--allow-id",
        CLIENT_ID,
        "--allow-td",
        "example.org",
    ]));
    assert!(message.contains("cannot be used with"), "{message}");
    let message = run(base(&["--allow-id", "http://example.org/x"]));
    assert!(message.contains("--allow-id"), "{message}");
    let policy = dir.path().join("bad.toml");
    std::fs::write(&policy, "[connect]\nids = [\"not an id\"]\n").unwrap();
    let message = run(base(&["--policy", policy.to_str().unwrap()]));
    assert!(message.contains("--policy: policy line 2"), "{message}");
    let message = run(base(&["--allow-td", "example.org"]));
    assert!(
        message.contains("Workload API is unreachable") && message.contains("none.sock"),
        "{message}"
    );
    let message = refused(&[
        "proxy",
        "server",
        "--listen",
        "nowhere",
        "--target",
        "127.0.0.1:9",
        "--allow-td",
        "example.org",
    ]);
    assert!(message.contains("not HOST:PORT or unix:/path"), "{message}");
    let message = refused(&[
        "proxy",
        "client",
        "--listen",
        "0.0.0.0:0",
        "--target",
        "127.0.0.1:9",
        "--server-id",
        SERVER_ID,
        "--socket",
        &missing,
    ]);
    assert!(message.contains("not a loopback address"), "{message}");
    let message = refused(&[
        "proxy",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--target",
        "127.0.0.1:9",
        "--allow-td",
        "example.org",
        "--http",
        "--proxy-protocol",
    ]);
    assert!(message.contains("cannot be used with"), "{message}");
    let message = refused(&[
        "proxy",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--target",
        "127.0.0.1:9",
        "--allow-td",
        "example.org",
        "--files",
        dir.path().to_str().unwrap(),
    ]);
    assert!(message.contains("cannot use the files in"), "{message}");
}

#[test]
fn files_source_from_fetch_write() {
    let world = World::new();
    // `fetch --write` run as the server link writes the server's SVID files.
    let dir = world.path("svid");
    let fetched = Command::new(world.path("proxy-server"))
        .args([
            "fetch",
            "--socket",
            &world.socket,
            "--write",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let backend = echo_backend();
    let server = Proc::start(
        BIN,
        &[
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &backend,
            "--files",
            dir.to_str().unwrap(),
            "--allow-id",
            CLIENT_ID,
            "--status",
            "127.0.0.1:0",
        ],
        "listening on",
    );
    let client = world.client("proxy-client", &server, &[]);
    let mut stream = connect(&client.listen);
    echo(&mut stream, b"from files\n");

    // A rotation written to the files is picked up (polled every second); the open relay
    // goes on, and new connections present the new SVID.
    let serial = |proxy: &Proc| -> String {
        let (_, body) = proxy.status_get("/_status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["svid_serial"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let before = serial(&server);
    world.dev.signal("USR1");
    wait_until("the dev server to rotate and fetch to write it", || {
        let written = Command::new(world.path("proxy-server"))
            .args([
                "fetch",
                "--socket",
                &world.socket,
                "--write",
                dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(written.status.success());
        serial(&server) != before
    });
    echo(&mut stream, b"still relaying\n");
    let mut fresh = connect(&client.listen);
    echo(&mut fresh, b"new connection\n");
    assert!(Path::new(&dir).join("svid.0.pem").exists());
}

#[cfg(feature = "reqwest")]
#[test]
fn http_mode_speaks_http2_to_clients_and_http1_to_the_target() {
    use spiffe_mtls::source::{FilePaths, FileSource};
    use spiffe_mtls::{authorize, net, tls};

    let world = World::new();
    // The client's SVID files, written by `fetch --write` run as the client link.
    let dir = world.path("client-svid");
    let fetched = Command::new(world.path("proxy-client"))
        .args([
            "fetch",
            "--socket",
            &world.socket,
            "--write",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let backend = http_backend();
    let server = world.server(&backend, &["--http", "--allow-id", CLIENT_ID]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let source = FileSource::open(FilePaths::fetch_layout(&dir)).unwrap();
        let config = tls::client_config(source, authorize::id(SERVER_ID.parse().unwrap()))
            .build()
            .unwrap();
        let client = net::reqwest_builder(config)
            .http2_prior_knowledge()
            .timeout(IO_TIMEOUT)
            .build()
            .unwrap();
        let url = format!("https://{}/h2?q=1", server.listen);
        let response = client
            .get(&url)
            .header("x-spiffe-id", "spiffe://example.org/admin")
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        assert!(body.contains("request: GET /h2?q=1 HTTP/1.1"), "{body}");
        assert!(
            body.contains(&format!("x-spiffe-id: {CLIENT_ID}")),
            "{body}"
        );
        assert!(!body.contains("example.org/admin"), "{body}");
    });
}

#[test]
fn workload_api_restart_is_counted_and_survived() {
    let mut world = World::new();
    let backend = echo_backend();
    let server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--status", "127.0.0.1:0"],
    );
    let client = world.client("proxy-client", &server, &[]);
    let mut relay = connect(&client.listen);
    echo(&mut relay, b"before the restart\n");

    world.restart_dev();
    let metric = |name: &str| -> f64 {
        let (_, text) = server.status_get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(-1.0)
    };
    wait_until("a reconnection and the new CA's SVID", || {
        metric("spiffe_proxy_workload_api_reconnects_total") >= 1.0
            && metric("spiffe_proxy_svid_rotations_total") >= 1.0
    });
    // The relay made under the old CA is closed within 1 s of the server proxy taking the
    // new bundle (seen here within 50 ms, by its metrics).
    relay
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    let closed = match relay.read(&mut byte) {
        Ok(read) => read == 0,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(
        closed,
        "the old CA's relay is open 1 s after the new bundle"
    );
    let (code, _) = server.status_get("/healthz");
    assert_eq!(code, 200);
    // New relays work under the new CA.
    let mut fresh = connect(&client.listen);
    echo(&mut fresh, b"after the restart\n");
    // Why it closed: the restarted dev server's bundle no longer holds that CA, so its peers
    // no longer pass (issue 18: trust re-checked on live
    // connections; a CA rotation with overlap, as SPIRE's, keeps them).
    // Both proxies re-check; whichever closes first names the reason.
    wait_until("a closure for the bundle", || {
        [&server, &client].iter().any(|proxy| {
            proxy
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains("end=\"closed (bundle)\""))
        })
    });
}

#[test]
fn sigterm_closes_idle_http_connections_without_waiting_for_the_drain_timeout() {
    let world = World::new();
    let backend = http_backend();
    let mut server = world.server(
        &backend,
        &["--http", "--allow-id", CLIENT_ID, "--drain-timeout", "30s"],
    );
    let client = world.client("proxy-client", &server, &[]);
    let mut stream = connect(&client.listen);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // Two requests on one keep-alive connection (the backend's `Connection: close` is its
    // own business), then the connection sits idle.
    for path in ["/keep", "/again"] {
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: backend\r\n\r\n").as_bytes())
            .unwrap();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(!line.to_ascii_lowercase().starts_with("connection: close"));
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        assert!(String::from_utf8_lossy(&body).contains(&format!("GET {path}")));
    }

    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an idle HTTP connection held the drain for {:?}",
        started.elapsed()
    );
    server.audit_line(&["requests=2", "end=closed"]);
}
