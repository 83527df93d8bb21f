//! The proxy's errors in words: a refused peer as what was expected and what was presented
//! (audit lines of both proxies), a failed target with its address and cause (the 502 body
//! and the audit line), a Workload API that has no identity for the proxy.
#![cfg(all(unix, feature = "cli"))]

use crate::proxy_world;

use proxy_world::*;

#[test]
fn a_client_expecting_another_server_id_says_what_it_expected() {
    let world = World::new();
    let backend = http_backend();
    let server = world.server(&backend, &["--allow-id", CLIENT_ID]);
    let program = world.path("proxy-client");
    let client = Proc::start(
        program.to_str().unwrap(),
        &[
            "proxy",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &server.listen,
            "--server-id",
            "spiffe://example.org/other",
            "--socket",
            &world.socket,
        ],
        "listening on",
    );
    let (code, body) = http_get(&client.listen, "/hello", &[]);
    assert_eq!(code, 0, "got a response: {body}");
    client.audit_line(&[
        "side=client",
        "decision=denied",
        &format!(
            "end=\"handshake: the server is not authorized: expected the ID \
             spiffe://example.org/other, presented {SERVER_ID}\""
        ),
    ]);
    // The server hears the client's alert, said as what it means.
    server.audit_line(&[
        "side=server",
        "decision=denied",
        "end=\"handshake: the client refused our certificate (TLS alert certificate_unknown): \
         it does not accept the certificate of our SPIFFE ID",
    ]);
}

#[test]
fn a_proxy_without_an_identity_says_so_not_unreachable() {
    let world = World::new();
    // The binary itself (not one of the world's links) has no entry.
    let output = std::process::Command::new(BIN)
        .args([
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
            "--allow-id",
            CLIENT_ID,
            "--socket",
            &world.socket,
        ])
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let exe = std::fs::canonicalize(BIN).unwrap();
    let uid = spiffe_mtls::dev_server::effective_uid().unwrap();
    assert!(
        stderr.contains(&format!(
            "the Workload API at {} has no identity for this process (uid {uid}, path {}): \
             register one whose selectors match it",
            world.socket,
            exe.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("unreachable"), "{stderr}");
}

/// An address where nothing listens.
fn dead_target() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn a_dead_target_is_named_with_its_cause_in_the_502_and_the_audit_line() {
    let world = World::new();
    let target = dead_target();
    let why = "connection refused (nothing listens there)";

    // --http: a 502 naming the target and the cause; the audit line ends with it.
    let server = world.server(&target, &["--allow-id", CLIENT_ID, "--http"]);
    let client = world.client("proxy-client", &server, &[]);
    let (code, body) = http_get(&client.listen, "/hello", &[]);
    assert_eq!(code, 502, "{body}");
    assert_eq!(
        body,
        format!("bad gateway: cannot connect to the target {target}: {why}\n")
    );
    server.audit_line(&[
        "side=server",
        "decision=accepted",
        &format!("end=\"target {target}: {why}\""),
    ]);

    // TCP: the audit line says the same.
    let server = world.server(&target, &["--allow-id", CLIENT_ID]);
    let client = world.client("proxy-client", &server, &[]);
    let (code, _) = http_get(&client.listen, "/hello", &[]);
    assert_eq!(code, 0);
    server.audit_line(&["side=server", &format!("end=\"target {target}: {why}\"")]);
}
