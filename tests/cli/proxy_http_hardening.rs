//! `proxy server --http` against the second adversarial pass of issue 16: request smuggling in
//! a GET body (route bypass, and one peer's request run under another's identity), HTTP/2
//! control frames keeping a connection "busy", request bodies that never arrive, trailers and
//! forwarding headers carrying claims, and target connections beyond `--max-conns`. Each
//! attack next to its good twin.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use crate::proxy_world;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use proxy_world::web::*;
use proxy_world::*;

/// Writes `request` on a new connection to `address` and reads until the server closes or
/// `IO_TIMEOUT`: everything received.
fn exchange(address: &str, request: &[u8]) -> String {
    let mut stream = connect(address);
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_get_body_cannot_smuggle_a_request_past_the_routes_or_into_another_peer() {
    if !python3_available(
        "a_get_body_cannot_smuggle_a_request_past_the_routes_or_into_another_peer",
    ) {
        return;
    }
    let world = World::new();
    let files = Python::file_server_speaking(&document_root(&world), "HTTP/1.1");
    let broad = all_but_admin_policy(&world);
    let server = world.server(&files.address, &["--http", "--policy", &broad]);
    let client = world.client("proxy-client", &server, &[]);
    let smuggled = "GET /admin/secret.txt HTTP/1.1\r\nX-Ignore: ";

    // HTTP/1.1, the smuggled request then a plain one on the same connection and on another.
    let request = format!(
        "GET /index.html HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n{smuggled}\
         GET /index.html HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
        smuggled.len()
    );
    let answer = exchange(&client.listen, request.as_bytes());
    assert!(answer.contains("home page"), "{answer}");
    assert!(!answer.contains("top secret"), "{answer}");
    for _ in 0..3 {
        let (code, body) = http_get(&client.listen, "/index.html", &[]);
        assert_eq!((code, body.as_str()), (200, "home page"));
    }
    // HTTP/2: a GET with a DATA frame holding the same prefix, then more GETs.
    let config = h2_config(&world);
    runtime().block_on(async {
        let (mut sender, _connection) = h2_connect(Arc::clone(&config), &server.listen).await;
        let request = http::Request::get("https://backend/index.html")
            .header("content-length", smuggled.len().to_string())
            .body(smuggled.to_owned())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), b"home page");
        for _ in 0..3 {
            let request = http::Request::get("https://backend/index.html")
                .body(String::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.as_ref(), b"home page");
        }
    });

    // Another peer: the intruder's request must run as the intruder, on its own path.
    let echo = Python::start(
        &[concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/keepalive_echo.py"
        )],
        "serving on ",
    );
    let server = world.server(&echo.address, &["--http", "--allow-td", "example.org"]);
    let client = world.client("proxy-client", &server, &[]);
    let intruder = world.client("proxy-intruder", &server, &[]);
    let smuggled = "GET /admin/delete-everything HTTP/1.1\r\nX-Ignore: ";
    let request = format!(
        "GET /public HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n\
         {smuggled}",
        smuggled.len()
    );
    let answer = exchange(&client.listen, request.as_bytes());
    assert!(
        answer.contains(&format!("path=/public id={CLIENT_ID}")),
        "{answer}"
    );
    let (code, body) = http_get(&intruder.listen, "/hello", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, format!("path=/hello id={INTRUDER_ID}\n"));
}

#[test]
fn http2_pings_without_requests_do_not_keep_a_connection() {
    let world = World::new();
    let backend = http_backend();
    let config = h2_config(&world);
    let server = world.server(
        &backend,
        &["--http", "--allow-id", CLIENT_ID, "--idle-timeout", "2s"],
    );
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(&server.listen)
            .await
            .unwrap();
        let stream = spiffe_mtls::net::connect(config, "example.org".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(Duration::from_millis(200))
                .keep_alive_while_idle(true)
                .handshake::<_, String>(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        // Good twin: a request is answered, and the PINGs go on after it.
        let request = http::Request::get("https://backend/x")
            .body(String::new())
            .unwrap();
        assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
        assert!(ended.is_ok(), "PING frames kept an idle connection open");
        let after = started.elapsed();
        assert!(after >= Duration::from_millis(1500), "{after:?}");
    });
    server.audit_line(&["idle for 2s"]);
}

/// A backend that counts the connections it accepted and never answers.
fn silent_backend() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (address, accepted)
}

/// A backend that reads each request's whole body (by its `Content-Length`) before it answers
/// 200 with the body's length, then closes.
fn body_reading_backend() -> String {
    use std::io::BufRead;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(&stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {
                            let lower = line.to_ascii_lowercase();
                            if let Some(value) = lower.strip_prefix("content-length:") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let text = format!("read {length}\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = (&stream).write_all(response.as_bytes());
            });
        }
    });
    address
}

#[test]
fn a_body_that_never_arrives_is_cut_and_target_connections_are_bounded() {
    let world = World::new();
    let backend = body_reading_backend();
    let server = world.server(
        &backend,
        &[
            "--http",
            "--allow-id",
            CLIENT_ID,
            "--max-conns",
            "2",
            "--idle-timeout",
            "2s",
        ],
    );
    let client = world.client("proxy-client", &server, &[]);
    // Two clients announce a body and never send it: both slots held.
    let stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect(&client.listen);
            let head = "POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: 100\r\n\r\n";
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (code, body) = http_get(&client.listen, "/after", &[]);
    let waited = started.elapsed();
    assert_eq!((code, body.as_str()), (200, "read 0\n"));
    // Kept out until a stalled body was cut (--idle-timeout), and no longer.
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < Duration::from_secs(6), "kept out for {waited:?}");
    drop(stalled);
    // Good twin: a body that does arrive is forwarded whole.
    let request = "POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello";
    let answer = exchange(&client.listen, request.as_bytes());
    assert!(answer.contains("read 5"), "{answer}");

    // One HTTP/2 connection opening many streams whose bodies never come opens no more than
    // its share of the --max-conns target connections.
    let (silent, accepted) = silent_backend();
    let server = world.server(
        &silent,
        &["--http", "--allow-id", CLIENT_ID, "--max-conns", "3"],
    );
    let config = h2_config(&world);
    runtime().block_on(async {
        let (sender, _connection) = h2_connect(config, &server.listen).await;
        let mut requests = Vec::new();
        for _ in 0..20 {
            let mut sender = sender.clone();
            requests.push(tokio::spawn(async move {
                let request = http::Request::post("https://backend/x")
                    .body(String::from("x"))
                    .unwrap();
                sender.send_request(request).await
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Counted while all 20 are waiting for the target.
        // One client connection holds at most a quarter of --max-conns (at least one): the
        // others stay for other clients.
        let opened = accepted.load(Ordering::SeqCst);
        assert_eq!(opened, 1, "{opened} target connections");
        for request in &requests {
            request.abort();
        }
    });
}

/// A request body with one data frame and trailers.
struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match self.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

/// An h2c backend answering every request with its headers and trailers, `name: value` lines
/// (trailers prefixed `trailer `).
fn h2c_echo_backend(runtime: &tokio::runtime::Runtime) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap().to_string();
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let mut seen = String::new();
                        for (name, value) in request.headers() {
                            seen.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                        }
                        let collected = request.into_body().collect().await;
                        if let Some(trailers) = collected.ok().and_then(|c| c.trailers().cloned()) {
                            for (name, value) in &trailers {
                                let value = value.to_str().unwrap_or("?");
                                seen.push_str(&format!("trailer {name}: {value}\n"));
                            }
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from(seen)),
                        ))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
            });
        }
    });
    address
}

#[test]
fn trailers_and_forwarding_headers_carry_no_claims_to_the_target() {
    let world = World::new();
    let config = h2_config(&world);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let backend = h2c_echo_backend(&runtime);
    let server = world.server(&backend, &["--http", "--h2c", "--allow-id", CLIENT_ID]);
    let forged = "spiffe://example.org/admin";
    let seen = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&server.listen)
            .await
            .unwrap();
        let name = "example.org".try_into().unwrap();
        let stream = spiffe_mtls::net::connect(config, name, tcp).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, WithTrailers>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-spiffe-id", forged.parse().unwrap());
        trailers.insert("x_spiffe_id", forged.parse().unwrap());
        trailers.insert(
            "x-forwarded-client-cert",
            format!("URI={forged}").parse().unwrap(),
        );
        let body = WithTrailers {
            data: Some(Bytes::from_static(b"data")),
            trailers: Some(trailers),
        };
        let request = http::Request::post("https://backend/")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x_forwarded_host", "admin.internal")
            .header("forwarded", "for=10.0.0.1;host=admin.internal")
            .header("x-forwarded-client-cert", format!("URI={forged}"))
            .header("x-original-url", "/admin/secret.txt")
            .header("x-real-ip", "10.0.0.1")
            .header("x-ssl-client-s-dn", "CN=admin")
            .header("true-client-ip", "10.0.0.1")
            .header("x-arr-clientcert", "forged-cert")
            .header("x-client-cert-chain", "forged-cert")
            .header("x-amzn-mtls-clientcert", "forged-cert")
            .header("x-envoy-original-path", "/admin")
            .header("x-http-method-override", "DELETE")
            .header("x-other", "kept")
            .body(body)
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    });
    assert!(!seen.contains("trailer "), "{seen}");
    assert!(!seen.contains(forged), "{seen}");
    for gone in [
        "x_forwarded_host",
        "forwarded:",
        "x-forwarded-client-cert",
        "x-original-url",
        "x-real-ip",
        "x-ssl-client-s-dn",
        "10.0.0.1",
        "forged-cert",
        "x-envoy-original-path",
        "x-http-method-override",
    ] {
        assert!(!seen.contains(gone), "{gone}: {seen}");
    }
    // Good twins: the verified identity, the proxy's own forwarding headers, other headers.
    assert!(
        seen.contains(&format!("x-spiffe-id: {CLIENT_ID}\n")),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
    assert!(seen.contains("x-other: kept\n"), "{seen}");
}

#[test]
fn route_names_match_every_spelling_of_their_path() {
    if !python3_available("route_names_match_every_spelling_of_their_path") {
        return;
    }
    let world = World::new();
    let root = world.path("www");
    for dir in ["café", "v1:admin", "it's"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join("secret.txt"), format!("{dir} secret")).unwrap();
    }
    std::fs::write(root.join("index.html"), "home page").unwrap();
    let files = Python::file_server(&root);
    let names = policy(
        &world,
        "names.toml",
        &format!(
            "[routes.\"/\"]\ntrust_domains = [\"example.org\"]\n\
             [routes.\"/café\"]\nids = [\"{INTRUDER_ID}\"]\n\
             [routes.\"/v1:admin\"]\nids = [\"{INTRUDER_ID}\"]\n\
             [routes.\"/it's\"]\nids = [\"{INTRUDER_ID}\"]\n"
        ),
    );
    let server = world.server(&files.address, &["--http", "--policy", &names]);
    let client = world.client("proxy-client", &server, &[]);
    let intruder = world.client("proxy-intruder", &server, &[]);
    let config = h2_config(&world);
    for (path, route) in [
        ("/caf%C3%A9/secret.txt", "/café"),
        ("/caf%c3%a9/secret.txt", "/café"),
        ("/v1%3Aadmin/secret.txt", "/v1:admin"),
        ("/v1%3aadmin/secret.txt", "/v1:admin"),
        ("/v1:admin/secret.txt", "/v1:admin"),
        ("/it%27s/secret.txt", "/it's"),
    ] {
        for (protocol, code, body) in get_both(&client, &config, &server, path) {
            assert_eq!(code, 403, "{protocol} {path}: {body}");
            assert!(
                body.contains(&format!("route {route:?}")),
                "{protocol} {path}: {body}"
            );
        }
        // Good twin: the peer the route allows reads it, by any spelling.
        let (code, body) = http_get(&intruder.listen, path, &[]);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(body.ends_with(" secret"), "{path}: {body}");
    }
    // Not UTF-8 once decoded (an overlong "."): refused.
    let (code, body) = http_get(&client.listen, "/%c0%ae%c0%ae/x", &[]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not UTF-8"), "{body}");

    // A policy whose path route has no canonical form, or names a path twice, is refused at
    // start with the reason.
    for (routes, reason) in [
        ("[routes.\"/a/../admin\"]\n", "is not a usable path"),
        (
            "[routes.\"/admin\"]\n[routes.\"/%61dmin\"]\n",
            "name the same path",
        ),
    ] {
        let bad = policy(&world, "bad.toml", routes);
        let output = std::process::Command::new(world.path("proxy-server"))
            .args(["proxy", "server", "--listen", "127.0.0.1:0", "--target"])
            .arg(&files.address)
            .args(["--http", "--socket", &world.socket, "--policy", &bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // An unusable policy file is unusable input: exit 2.
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
}
