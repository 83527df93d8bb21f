//! The proxy's limits against local clients, end to end through the built binary (issue 16,
//! findings 8 and 11):
//! - the `--status` port keeps answering `/healthz` while many silent or trickling clients
//!   hold connections to it, and closes a client that has not sent its request head in 5 s;
//! - the Unix sockets the proxy creates are 0600 (or `--socket-mode`) from the moment they
//!   exist, and are refused in a directory that group or others may write to.
//!
//! Each attack sits next to its good twin. Every wait is bounded; servers bind 127.0.0.1
//! port 0 or Unix sockets in temp dirs.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proxy_world;

use proxy_world::*;

/// The status port's request-head deadline (`status::HEAD_TIMEOUT`).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a probe may take while the status port is under attack.
const PROBE_WITHIN: Duration = Duration::from_secs(2);

/// The status port's connection bound (`status::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 64;

/// A `proxy server` (TCP mode, echo backend) with `--status 127.0.0.1:0`.
fn server_with_status(world: &World) -> Proc {
    let backend = echo_backend();
    world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--status", "127.0.0.1:0"],
    )
}

/// Whether the server closed `stream` (end of stream or a reset) within `within`; false
/// when it is still open at the end.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!(
            "the server answered a client that sent no request: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            false
        }
        Err(_) => true,
    }
}

/// `GET path` on a fresh connection, timed; the status code, the body and how long it took.
fn timed_get(address: &str, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let (code, body) = status_get_at(address, path);
    (code, body, started.elapsed())
}

#[test]
fn status_answers_healthz_while_100_slow_clients_hold_connections() {
    let world = World::new();
    let server = server_with_status(&world);
    let status = server.status.clone().expect("--status");

    // The attack: 100 connections (more than the bound of 64), half silent, half trickling
    // an unfinished request head.
    let attack = Instant::now();
    let mut held: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut stream = TcpStream::connect(&status).unwrap();
            if i % 2 == 1 {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x")
                    .unwrap();
            }
            stream
        })
        .collect();
    // Let the server accept them all before the probe.
    std::thread::sleep(Duration::from_millis(300));

    for path in ["/healthz", "/healthz", "/_status", "/metrics"] {
        let (code, body, took) = timed_get(&status, path);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(took < PROBE_WITHIN, "{path} took {took:?} under attack");
        if path == "/healthz" {
            assert_eq!(body, "ok\n");
        }
    }

    // The bound holds: at least 100 + 1 - 64 of the held connections were pushed out at once
    // (long before the head deadline), the newest ones are still open.
    let mut closed = 0;
    for stream in &mut held {
        if closed_within(stream, Duration::from_millis(20)) {
            closed += 1;
        }
    }
    assert!(
        closed > 100 - MAX_CONNECTIONS,
        "only {closed} of 100 held connections were closed"
    );
    // Pushed out, not all timed out (only meaningful before the head deadline).
    if attack.elapsed() < HEAD_TIMEOUT - Duration::from_millis(500) {
        assert!(closed < 100, "every held connection was closed at once");
    }
}

#[test]
fn status_closes_silent_and_trickling_clients_at_the_head_deadline() {
    let world = World::new();
    let server = server_with_status(&world);
    let status = server.status.clone().expect("--status");

    // A trickler: one byte of an unfinished request head every 200 ms (for up to 12 s).
    let trickle_to = status.clone();
    let trickler = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&trickle_to).unwrap();
        let started = Instant::now();
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
        for byte in head.iter() {
            if stream.write_all(&[*byte]).is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    });

    // A silent client: closed by the server after the deadline, not before.
    let started = Instant::now();
    let mut silent = TcpStream::connect(&status).unwrap();
    assert!(
        !closed_within(&mut silent, HEAD_TIMEOUT - Duration::from_secs(1)),
        "closed before the head deadline"
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)),
        "a silent client still open after {:?}",
        started.elapsed()
    );
    let took = started.elapsed();
    assert!(
        took >= HEAD_TIMEOUT - Duration::from_millis(100)
            && took < HEAD_TIMEOUT + Duration::from_secs(2),
        "closed after {took:?}"
    );

    let cut = trickler.join().unwrap();
    let cut = cut.expect("the trickler sent its whole head over 12 s without being cut off");
    assert!(
        cut >= HEAD_TIMEOUT - Duration::from_millis(100)
            && cut < HEAD_TIMEOUT + Duration::from_secs(3),
        "the trickler was cut after {cut:?}"
    );

    // Good twin: a slow but finished head (two parts 2 s apart, within the deadline) is
    // answered.
    let mut slow = TcpStream::connect(&status).unwrap();
    slow.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    slow.write_all(b"Host: x\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = slow.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response}");
}

#[test]
fn status_endpoints_answer_one_request_per_connection() {
    let world = World::new();
    let server = server_with_status(&world);
    let status = server.status.clone().expect("--status");

    let (code, body) = server.status_get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = server.status_get("/_status");
    assert_eq!(code, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["spiffe_id"], SERVER_ID);
    assert_eq!(json["healthy"], true);
    let (code, metrics) = server.status_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("spiffe_proxy_connections_active 0"),
        "{metrics}"
    );
    let (code, _) = server.status_get("/nothing");
    assert_eq!(code, 404);

    // A keep-alive request (no `Connection: close`) is answered, then the connection closed:
    // a scraper cannot keep an idle connection once answered.
    let mut stream = TcpStream::connect(&status).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(started.elapsed() < PROBE_WITHIN, "{:?}", started.elapsed());
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
}

/// A private (0700) directory in the world's temp dir.
fn private_dir(world: &World, name: &str) -> PathBuf {
    let dir = world.path(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The permission bits of `path`.
fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// The `proxy client` arguments listening on `listen` towards `server`, then `extra`.
fn client_args(world: &World, server: &Proc, listen: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "proxy",
        "client",
        "--listen",
        listen,
        "--target",
        &server.listen,
        "--server-id",
        SERVER_ID,
        "--socket",
        &world.socket,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `proxy client` (as `proxy-client`) listening on the Unix socket `path`.
fn unix_client(world: &World, server: &Proc, path: &Path, extra: &[&str]) -> Proc {
    let args = client_args(world, server, &format!("unix:{}", path.display()), extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::start(
        world.path("proxy-client").to_str().unwrap(),
        &args,
        "listening on",
    )
}

/// Runs `program` with `args`, which must fail to start within 20 s; its stderr.
fn refused(program: &Path, args: &[String]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not stop within {WAIT:?}: it started");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(!status.success(), "{args:?} succeeded: {stderr}");
    stderr
}

/// Echoes `message` through the Unix socket `path`.
fn echo_unix(path: &Path, message: &[u8]) {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(message).unwrap();
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, message);
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn client_unix_socket_is_0600_and_socket_mode_changes_it() {
    let world = World::new();
    let server = server_with_status(&world);
    let dir = private_dir(&world, "sockets");

    let path = dir.join("c.sock");
    let client = unix_client(&world, &server, &path, &[]);
    assert_eq!(mode_of(&path), 0o600);
    echo_unix(&path, b"through a 0600 socket");
    // Nothing else is left in the directory (the private bind directory is gone).
    assert_eq!(names_in(&dir), ["c.sock"]);
    drop(client);

    // --socket-mode 0700: still the owner only, allowed as is.
    let path = dir.join("owner.sock");
    let _owner = unix_client(&world, &server, &path, &["--socket-mode", "0700"]);
    assert_eq!(mode_of(&path), 0o700);

    // --socket-mode 0660 lets the group connect as this workload: refused without
    // --allow-remote, accepted with it.
    let path = dir.join("group.sock");
    let args = client_args(
        &world,
        &server,
        &format!("unix:{}", path.display()),
        &["--socket-mode", "0660"],
    );
    let message = refused(&world.path("proxy-client"), &args);
    assert!(
        message.contains(&format!(
            "--socket-mode 0660 lets group or others connect to --listen unix:{} as this workload",
            path.display()
        )),
        "{message}"
    );
    assert!(!path.exists());
    let group = unix_client(
        &world,
        &server,
        &path,
        &["--socket-mode", "0660", "--allow-remote"],
    );
    assert_eq!(mode_of(&path), 0o660);
    echo_unix(&path, b"through a 0660 socket");
    drop(group);

    // Not a mode.
    let args = client_args(
        &world,
        &server,
        &format!("unix:{}", dir.join("x.sock").display()),
        &["--socket-mode", "0999"],
    );
    let message = refused(&world.path("proxy-client"), &args);
    assert!(
        message.contains("\"0999\" is not an octal permission mode such as 0600 or 0660"),
        "{message}"
    );
}

#[test]
fn unix_socket_never_exists_with_the_umask_mode() {
    let world = World::new();
    let server = server_with_status(&world);
    let dir = private_dir(&world, "umask");
    let path = dir.join("c.sock");

    // A watcher records every mode the socket path shows while a client starts under umask
    // 000 (which would make a freshly bound socket 0777).
    let (stop, watching) = std::sync::mpsc::channel::<()>();
    let watched = path.clone();
    let watcher = std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + WAIT;
        while watching.try_recv().is_err() && Instant::now() < deadline {
            if let Ok(meta) = std::fs::symlink_metadata(&watched) {
                seen.insert(meta.permissions().mode() & 0o7777);
            }
        }
        seen
    });
    let mut args = vec!["-c".to_owned(), "umask 000; exec \"$0\" \"$@\"".to_owned()];
    args.push(world.path("proxy-client").display().to_string());
    args.extend(client_args(
        &world,
        &server,
        &format!("unix:{}", path.display()),
        &[],
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = Proc::start("/bin/sh", &args, "listening on");
    std::thread::sleep(Duration::from_millis(100));
    stop.send(()).unwrap();
    let seen = watcher.join().unwrap();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [0o600]);
    echo_unix(&path, b"under umask 000");
    drop(client);
}

#[test]
fn unix_socket_in_a_directory_others_may_write_is_refused() {
    let world = World::new();
    let server = server_with_status(&world);

    for mode in [0o777, 0o1777, 0o770, 0o702] {
        let dir = world.path(&format!("open{mode:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let path = dir.join("c.sock");
        let args = client_args(&world, &server, &format!("unix:{}", path.display()), &[]);
        let message = refused(&world.path("proxy-client"), &args);
        assert!(
            message.contains(&format!(
                "socket directory {} has mode {mode:04o}: group or others may write to it",
                dir.display()
            )),
            "{mode:o}: {message}"
        );
        assert!(names_in(&dir).is_empty(), "{mode:o}: {:?}", names_in(&dir));
    }

    // `proxy server --listen unix:` and `--status unix:` in such a directory: refused too.
    let open = world.path("open777");
    let server_args = |listen: &str, status: &str| -> Vec<String> {
        [
            "proxy",
            "server",
            "--listen",
            listen,
            "--target",
            "127.0.0.1:9",
            "--allow-id",
            CLIENT_ID,
            "--socket",
            &world.socket,
            "--status",
            status,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = server_args(
        &format!("unix:{}", open.join("s.sock").display()),
        "127.0.0.1:0",
    );
    let message = refused(&world.path("proxy-server"), &args);
    assert!(
        message.contains(&format!(
            "socket directory {} has mode 0777",
            open.display()
        )),
        "{message}"
    );
    let args = server_args(
        "127.0.0.1:0",
        &format!("unix:{}", open.join("status.sock").display()),
    );
    let message = refused(&world.path("proxy-server"), &args);
    assert!(
        message.contains(&format!(
            "--status: cannot listen on unix:{}: socket directory {} has mode 0777",
            open.join("status.sock").display(),
            open.display()
        )),
        "{message}"
    );

    // Good twins: a 0700 and a 0755 directory (others may read it, not write it).
    for mode in [0o700, 0o755] {
        let dir = world.path(&format!("mine{mode:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let path = dir.join("c.sock");
        let client = unix_client(&world, &server, &path, &[]);
        assert_eq!(mode_of(&path), 0o600);
        echo_unix(&path, b"accepted");
        drop(client);
    }

    // A missing directory is created private (0700).
    let path = world.path("new/deeper/c.sock");
    let _client = unix_client(&world, &server, &path, &[]);
    assert_eq!(mode_of(&world.path("new/deeper")), 0o700);
    assert_eq!(mode_of(&path), 0o600);
}

#[test]
fn server_unix_listen_and_status_sockets_are_0600() {
    let world = World::new();
    let dir = private_dir(&world, "srv");
    let listen = dir.join("s.sock");
    let status = dir.join("status.sock");
    let backend = echo_backend();
    let server = Proc::start(
        world.path("proxy-server").to_str().unwrap(),
        &[
            "proxy",
            "server",
            "--listen",
            &format!("unix:{}", listen.display()),
            "--target",
            &backend,
            "--allow-id",
            CLIENT_ID,
            "--socket",
            &world.socket,
            "--status",
            &format!("unix:{}", status.display()),
        ],
        "listening on",
    );
    assert_eq!(mode_of(&listen), 0o600);
    assert_eq!(mode_of(&status), 0o600);
    let mut stream = UnixStream::connect(&status).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    drop(server);

    // A stale socket left at the path is replaced (and gets 0600); a regular file is not.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o777)).unwrap();
    let tcp_server = server_with_status(&world);
    let client = unix_client(&world, &tcp_server, &stale, &[]);
    assert_eq!(mode_of(&stale), 0o600);
    echo_unix(&stale, b"replaced");
    drop(client);
    let file = dir.join("file.sock");
    std::fs::write(&file, "not a socket").unwrap();
    let args = client_args(
        &world,
        &tcp_server,
        &format!("unix:{}", file.display()),
        &[],
    );
    let message = refused(&world.path("proxy-client"), &args);
    assert!(
        message.contains("the path exists and is not a socket"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a socket");
}

/// The Send-Q column of `ss -ltn` for the listening socket on `port`: its backlog.
fn listen_backlog(port: &str) -> Option<u32> {
    let output = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn listen_backlog_defaults_to_4096_and_follows_the_flag() {
    if Command::new("ss").arg("-V").output().is_err() {
        eprintln!("skipped: `ss` (iproute2) is not installed");
        return;
    }
    let world = World::new();
    let backend = echo_backend();
    for (args, expected) in [(&[][..], 4096), (&["--backlog", "2048"][..], 2048)] {
        let mut all = vec!["--allow-id", CLIENT_ID];
        all.extend_from_slice(args);
        let server = world.server(&backend, &all);
        let port = server.listen.rsplit(':').next().unwrap().to_owned();
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(expected);
        assert_eq!(
            listen_backlog(&port),
            Some(expected.min(somaxconn)),
            "{args:?}"
        );
    }
}
