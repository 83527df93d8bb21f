//! `proxy server --http` under attack (issue 16, findings 1, 2, 4 and 10), over HTTP/1.1 (a raw
//! request line through `proxy client`) and HTTP/2 (hyper over mTLS, `:path` as written), in
//! front of backends nobody on the team wrote: Python's `http.server` (a file server that
//! decodes and normalizes the path) and a stdlib WSGI application (which reads `_` as `-` in
//! header names). Each attack sits next to its good twin.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use crate::proxy_world;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_world::web::*;
use proxy_world::*;

#[test]
fn encoded_paths_cannot_walk_around_a_route_to_python_http_server() {
    if !python3_available("encoded_paths_cannot_walk_around_a_route_to_python_http_server") {
        return;
    }
    let world = World::new();
    let files = Python::file_server(&document_root(&world));
    let config = h2_config(&world);
    // The client may read everything but /admin.
    let broad = all_but_admin_policy(&world);
    let server = world.server(&files.address, &["--http", "--policy", &broad]);
    let client = world.client("proxy-client", &server, &[]);

    // Good twins: the plain paths, and an encoded unreserved character, which is decoded.
    for (path, page) in [
        ("/public/index.html", "public page"),
        ("/%70ublic/index%2Ehtml", "public page"),
        ("/index.html", "home page"),
    ] {
        for (protocol, code, body) in get_both(&client, &config, &server, path) {
            assert_eq!((code, body.as_str()), (200, page), "{protocol} {path}");
        }
    }
    // The route itself: 403 naming it.
    for (protocol, code, body) in get_both(&client, &config, &server, "/admin/secret.txt") {
        assert_eq!(code, 403, "{protocol}: {body}");
        assert!(body.contains("route \"/admin\""), "{protocol}: {body}");
    }
    // Decoded to /admin/...: the /admin route decides, so 403 too.
    for path in ["/%61dmin/secret.txt", "/%61%64%6D%69%6E/secret.txt"] {
        for (protocol, code, body) in get_both(&client, &config, &server, path) {
            assert_eq!(code, 403, "{protocol} {path}: {body}");
            assert!(
                body.contains("route \"/admin\""),
                "{protocol} {path}: {body}"
            );
        }
    }
    // No canonical form: 400 naming the rule, the file server never asked.
    for (path, rule) in [
        ("//admin/secret.txt", "empty segment"),
        ("/admin%2Fsecret.txt", "encoded separator"),
        ("/admin%2fsecret.txt", "encoded separator"),
        ("/%2Fadmin/secret.txt", "encoded separator"),
        ("/public/..;/admin/secret.txt", "';'"),
        ("/public/..%5cadmin/secret.txt", "encoded separator"),
        ("/public/..%5Cadmin/secret.txt", "encoded separator"),
        ("/public/../admin/secret.txt", "dot segment"),
        ("/public/%2e%2e/admin/secret.txt", "dot segment"),
        ("/public/%00/x", "control byte"),
    ] {
        for (protocol, code, body) in get_both(&client, &config, &server, path) {
            assert_eq!(code, 400, "{protocol} {path}: {body}");
            assert!(body.contains(rule), "{protocol} {path}: {body}");
            assert!(!body.contains(SECRET), "{protocol} {path}: {body}");
        }
    }
    // A raw backslash (HTTP/1.1 only: HTTP/2 clients refuse to send it) is refused too.
    let (code, body) = http_get(&client.listen, "/public/..\\admin\\secret.txt", &[]);
    assert_eq!(code, 400, "{body}");
    assert!(!body.contains(SECRET), "{body}");
    let line = server.audit_line(&["denied_requests="]);
    assert!(line.contains("decision=accepted"), "{line}");
    // Each refusal has its line, naming the route decided on the canonical path.
    let line = request_line(&server, &["status=403", "path=/admin/secret.txt"]);
    assert!(line.contains("route=/admin "), "{line}");
    assert!(line.contains(&format!("peer={CLIENT_ID} ")), "{line}");
    let line = request_line(&server, &["status=400", "path=/admin%2Fsecret.txt"]);
    assert!(line.contains("route=- "), "{line}");
    assert!(line.contains("rule=\"canonical path\""), "{line}");

    // With no `/` route: only /public is open to the client.
    let narrow = policy(
        &world,
        "narrow.toml",
        &format!(
            "[routes.\"/public\"]\ntrust_domains = [\"example.org\"]\n\
             [routes.\"/admin\"]\nids = [\"{INTRUDER_ID}\"]\n"
        ),
    );
    let server = world.server(
        &files.address,
        &["--http", "--policy", &narrow, "--status", "127.0.0.1:0"],
    );
    let client = world.client("proxy-client", &server, &[]);
    for (protocol, code, body) in get_both(&client, &config, &server, "/public/index.html") {
        assert_eq!((code, body.as_str()), (200, "public page"), "{protocol}");
    }
    for path in [
        "/public/..%2fadmin/secret.txt",
        "/public/%2e%2e%2Fadmin/secret.txt",
        "/public/.%2e%2fadmin/secret.txt",
        "/public/.%2e/admin/secret.txt",
        "/public/..;/admin/secret.txt",
        "/public/..%5cadmin/secret.txt",
    ] {
        for (protocol, code, body) in get_both(&client, &config, &server, path) {
            assert_eq!(code, 400, "{protocol} {path}: {body}");
            assert!(!body.contains(SECRET), "{protocol} {path}: {body}");
        }
    }
    // Each refusal counted under its reason.
    let expected = "reason=\"path_refused\"} 12";
    wait_until("the refusals counted", || {
        server.status_get("/metrics").1.contains(expected)
    });
}

#[test]
fn the_target_sees_exactly_the_canonical_path_and_the_query_as_sent() {
    let world = World::new();
    let backend = http_backend();
    let config = h2_config(&world);
    let server = world.server(&backend, &["--http", "--allow-id", CLIENT_ID]);
    let client = world.client("proxy-client", &server, &[]);
    let path = "/%70ublic/a%2dz/%c3%a9?q=%2F..%2f&x=%61";
    for (protocol, code, body) in get_both(&client, &config, &server, path) {
        assert_eq!(code, 200, "{protocol}: {body}");
        assert!(
            body.contains("request: GET /public/a-z/%C3%A9?q=%2F..%2f&x=%61 HTTP/1.1"),
            "{protocol}: {body}"
        );
    }
    // Without a policy the proxy still refuses a path with no canonical form.
    for (protocol, code, body) in get_both(&client, &config, &server, "/a/..%2f..%2fetc/passwd") {
        assert_eq!(code, 400, "{protocol}: {body}");
    }
}

#[test]
fn the_client_cannot_remove_or_forge_the_identity_a_wsgi_backend_sees() {
    if !python3_available("the_client_cannot_remove_or_forge_the_identity_a_wsgi_backend_sees") {
        return;
    }
    let world = World::new();
    let wsgi = Python::wsgi_echo();
    let config = h2_config(&world);
    let server = world.server(&wsgi.address, &["--http", "--allow-id", CLIENT_ID]);
    let client = world.client("proxy-client", &server, &[]);
    let forged = "spiffe://example.org/admin";

    // Good twin: no tricks, the verified ID.
    let (code, body) = http_get(&client.listen, "/", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        wsgi_value(&body, "HTTP_X_SPIFFE_ID"),
        Some(CLIENT_ID),
        "{body}"
    );

    // HTTP/1.1: `Connection` names the identity header, and an underscore spelling forges it.
    for attack in [
        vec![
            "Connection: x-spiffe-id".to_owned(),
            format!("x_spiffe_id: {forged}"),
        ],
        vec![
            "Connection: X-SPIFFE-ID, keep-alive".to_owned(),
            format!("X_Spiffe_Id: {forged}"),
        ],
        vec![
            format!("x_spiffe_id: {forged}"),
            format!("x-spiffe_id: {forged}"),
        ],
        vec![
            "Connection: x_spiffe_id".to_owned(),
            format!("x-spiffe-id: {forged}"),
        ],
    ] {
        let headers: Vec<&str> = attack.iter().map(String::as_str).collect();
        let (code, body) = http_get(&client.listen, "/", &headers);
        assert_eq!(code, 200, "{attack:?}: {body}");
        assert_eq!(
            wsgi_value(&body, "HTTP_X_SPIFFE_ID"),
            Some(CLIENT_ID),
            "{attack:?}: {body}"
        );
    }
    // HTTP/2 (which has no `Connection`): the underscore spellings.
    let (code, body) = h2_get(
        &config,
        &server.listen,
        "/",
        &[
            ("x_spiffe_id", forged),
            ("x-spiffe_id", forged),
            ("x-spiffe-id", forged),
        ],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        wsgi_value(&body, "HTTP_X_SPIFFE_ID"),
        Some(CLIENT_ID),
        "{body}"
    );

    // Another header name, the same rules.
    let custom = world.server(
        &wsgi.address,
        &[
            "--http",
            "--allow-id",
            CLIENT_ID,
            "--id-header",
            "X-Peer-Id",
        ],
    );
    let client = world.client("proxy-client", &custom, &[]);
    let (code, body) = http_get(
        &client.listen,
        "/",
        &["Connection: x-peer-id", "x_peer_id: forged"],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        wsgi_value(&body, "HTTP_X_PEER_ID"),
        Some(CLIENT_ID),
        "{body}"
    );
}

#[test]
fn host_and_authority_reach_the_target_as_the_target_address() {
    if !python3_available("host_and_authority_reach_the_target_as_the_target_address") {
        return;
    }
    let world = World::new();
    let wsgi = Python::wsgi_echo();
    let config = h2_config(&world);
    let server = world.server(&wsgi.address, &["--http", "--allow-id", CLIENT_ID]);
    let client = world.client("proxy-client", &server, &[]);
    // http_get sends `Host: backend`; the HTTP/2 request's `:authority` is `backend` too.
    let (code, body) = http_get(&client.listen, "/", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        wsgi_value(&body, "HTTP_HOST"),
        Some(wsgi.address.as_str()),
        "{body}"
    );
    let (code, body) = h2_get(&config, &server.listen, "/", &[("host", "evil.example")]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        wsgi_value(&body, "HTTP_HOST"),
        Some(wsgi.address.as_str()),
        "{body}"
    );
}

#[test]
fn idle_verified_clients_cannot_keep_others_out() {
    let world = World::new();
    let backend = http_backend();
    let config = h2_config(&world);
    let server = world.server(
        &backend,
        &[
            "--http",
            "--allow-id",
            CLIENT_ID,
            "--max-conns",
            "2",
            "--first-read-timeout",
            "1s",
            "--idle-timeout",
            "2s",
        ],
    );
    let client = world.client("proxy-client", &server, &[]);
    // Two verified clients that finish the handshake and say nothing take both slots.
    let silent: Vec<TcpStream> = (0..2).map(|_| connect(&client.listen)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (code, body) = http_get(&client.listen, "/after", &[]);
    let waited = started.elapsed();
    assert_eq!(code, 200, "{body}");
    assert!(waited < Duration::from_secs(4), "kept out for {waited:?}");
    server.audit_line(&["sent nothing after its TLS handshake"]);
    drop(silent);

    // HTTP/1.1 kept alive after a request, then silent: the wait for the next request head is
    // bound by --first-read-timeout (1s here), before the idle timeout.
    let mut kept = connect(&client.listen);
    kept.write_all(b"GET /one HTTP/1.1\r\nHost: backend\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = kept.read_to_end(&mut rest);
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(800) && idle < Duration::from_secs(6),
        "closed after {idle:?}"
    );

    // HTTP/2, idle after a request: the server closes it too; a streaming response is not
    // idle (the good twin is `a_request_in_flight_keeps_the_connection...` in the library).
    runtime().block_on(async {
        let (mut sender, connection) = h2_connect(Arc::clone(&config), &server.listen).await;
        let request = http::Request::get("https://backend/h2")
            .body(String::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(8), connection).await;
        assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    });
    server.audit_line(&["idle for 2s"]);
}
