//! The proxy's errors in words: a refused peer as what was expected and what was presented
//! (audit lines of both proxies), a failed target with its address and cause (the 502 body
//! and the audit line), a Workload API that has no identity for the proxy.
#![cfg(all(unix, feature = "cli"))]

mod proxy_world;

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
