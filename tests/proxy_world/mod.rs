//! The proxy tests' world: a temp dir with links of the binary, a dev server giving each link
//! its own SPIFFE ID, proxies started as child processes, and small std backends. Shared by
//! the proxy tests in `tests/cli/` and `tests/interop/interop_spire.rs`; each uses part of it.
#![allow(dead_code)]

pub mod web;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_spiffe-mtls");
pub const SERVER_ID: &str = "spiffe://example.org/server";
pub const CLIENT_ID: &str = "spiffe://example.org/client";
pub const INTRUDER_ID: &str = "spiffe://example.org/intruder";
pub const WAIT: Duration = Duration::from_secs(20);
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A temp dir with the binary's links, a dev server and its socket.
pub struct World {
    pub dir: tempfile::TempDir,
    pub dev: Proc,
    pub socket: String,
}

impl World {
    pub fn new() -> Self {
        Self::with_settings("")
    }

    /// A world whose dev server's config starts with `settings` (TOML top-level keys, such
    /// as `svid_ttl = "3s"`).
    pub fn with_settings(settings: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("px")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let mut entries = format!("trust_domain = \"example.org\"\n{settings}");
        for (name, id) in [
            ("proxy-server", SERVER_ID),
            ("proxy-client", CLIENT_ID),
            ("proxy-intruder", INTRUDER_ID),
        ] {
            let link = dir.path().join(name);
            if std::fs::hard_link(BIN, &link).is_err() {
                std::fs::copy(BIN, &link).unwrap();
            }
            entries.push_str(&format!(
                "[[entry]]\nspiffe_id = \"{id}\"\nselectors = [\"unix:path:{}\"]\n",
                link.display()
            ));
        }
        let config = dir.path().join("dev.toml");
        std::fs::write(&config, entries).unwrap();
        let socket = format!("unix://{}", dir.path().join("agent.sock").display());
        let dev = Proc::start(
            BIN,
            &[
                "dev-server",
                "--socket",
                &socket,
                "--config",
                config.to_str().unwrap(),
            ],
            "listening on",
        );
        Self { dir, dev, socket }
    }

    /// Stops the dev server and starts another on the same socket and entries (a new CA).
    pub fn restart_dev(&mut self) {
        self.dev.signal("TERM");
        self.dev.wait(Duration::from_secs(10));
        let config = self.path("dev.toml");
        self.dev = Proc::start(
            BIN,
            &[
                "dev-server",
                "--socket",
                &self.socket,
                "--config",
                config.to_str().unwrap(),
            ],
            "listening on",
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `proxy server` as `spiffe://example.org/server`, with `args` after the Workload API.
    pub fn server(&self, target: &str, args: &[&str]) -> Proc {
        let program = self.path("proxy-server");
        let mut all = vec![
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            target,
            "--socket",
            &self.socket,
        ];
        all.extend_from_slice(args);
        Proc::start(program.to_str().unwrap(), &all, "listening on")
    }

    /// `proxy client` as `name` (`proxy-client` or `proxy-intruder`) towards `server`.
    pub fn client(&self, name: &str, server: &Proc, args: &[&str]) -> Proc {
        let program = self.path(name);
        let target = server.listen.clone();
        let mut all = vec![
            "proxy",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &target,
            "--server-id",
            SERVER_ID,
            "--socket",
            &self.socket,
        ];
        all.extend_from_slice(args);
        Proc::start(program.to_str().unwrap(), &all, "listening on")
    }
}

/// A child process whose stdout lines are collected; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    /// The address of the "listening on ADDR" line.
    pub listen: String,
    /// The address of the "status on http://ADDR" line, if any.
    pub status: Option<String>,
    /// What it wrote on stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

impl Proc {
    // The child is returned inside `Proc`, whose `Drop` kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start(program: &str, args: &[&str], ready: &str) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env_remove("SPIFFE_ENDPOINT_SOCKET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let collected = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let errors = Arc::new(Mutex::new(String::new()));
        let errors_in = Arc::clone(&errors);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                errors_in.lock().unwrap().push_str(&line);
                errors_in.lock().unwrap().push('\n');
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut status = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{program} {args:?} did not say {ready:?}; stderr: {}",
                    errors.lock().unwrap()
                )
            });
            if let Some(rest) = line.strip_prefix("status on http://") {
                status = Some(rest.to_owned());
            }
            if let Some((_, rest)) = line.split_once(ready) {
                let listen = rest.split_whitespace().next().unwrap_or_default();
                return Self {
                    child,
                    lines,
                    listen: listen.trim_end_matches(',').to_owned(),
                    status,
                    stderr: errors,
                };
            }
        }
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for an audit line containing every one of `parts`.
    pub fn audit_line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with("proxy-audit ") && parts.iter().all(|p| l.contains(p)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no audit line with {parts:?} in {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A GET of the status port (see [`status_get_at`]).
    pub fn status_get(&self, path: &str) -> (u16, String) {
        status_get_at(self.status.as_deref().expect("--status"), path)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET of a status port at `address`, naming it by its address (a status port answers a
/// `Host` that is an IP address or `localhost`); the status code and the body.
pub fn status_get_at(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(stream)
}

/// A one-shot HTTP/1.1 GET with extra header lines; the status code and the body.
pub fn http_get(address: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream)
}

/// Reads a whole HTTP/1.1 response (the server closes): its status code (0 when none came)
/// and its body.
fn read_response(mut stream: TcpStream) -> (u16, String) {
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// A plain HTTP/1.1 backend: answers every request with 200 and a body listing the request's
/// `x-` headers (`name: value` lines, as received), then closes.
pub fn http_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let mut reader = BufReader::new(&stream);
                let mut seen = String::new();
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                seen.push_str(&format!("request: {}\n", first.trim_end()));
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {
                            if line.to_ascii_lowercase().starts_with("x-") {
                                seen.push_str(line.trim_end());
                                seen.push('\n');
                            }
                        }
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{seen}",
                    seen.len()
                );
                let _ = (&stream).write_all(response.as_bytes());
            });
        }
    });
    address
}

/// An echo backend on TCP.
pub fn echo_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                let _ = std::io::copy(&mut reader, &mut writer);
            });
        }
    });
    address
}

/// Writes `message` and reads it back.
pub fn echo(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut back = vec![0; message.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, message);
}

pub fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
