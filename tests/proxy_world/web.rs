//! HTTP helpers of the proxy tests: Python backends (tests/interop/*.py, `http.server`), an
//! HTTP/2 client over mTLS that sends `:path` as written, policy files, `proxy-request` lines.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use spiffe_mtls::rustls::ClientConfig;
use spiffe_mtls::source::{FilePaths, FileSource};
use spiffe_mtls::{authorize, net, tls};

use super::*;

/// A Python backend, killed when dropped.
pub struct Python {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Python {
    /// Starts `python3 args`, which prints a line ending in its port once listening.
    // The child is returned inside `Python`, whose `Drop` kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start(args: &[&str], ready: &str) -> Self {
        let mut child = Command::new("python3")
            .arg("-u")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("the Python backend started");
            if let Some(rest) = line.strip_prefix(ready) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                return Self {
                    child,
                    address: format!("127.0.0.1:{port}"),
                };
            }
        }
    }

    /// `python3 -m http.server` serving `root` (HTTP/1.0: a connection per request).
    pub fn file_server(root: &Path) -> Self {
        Self::file_server_speaking(root, "HTTP/1.0")
    }

    /// `python3 -m http.server --protocol VERSION` serving `root` (`HTTP/1.1` keeps
    /// connections alive).
    pub fn file_server_speaking(root: &Path, version: &str) -> Self {
        let root = root.to_str().unwrap();
        let args = [
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--protocol",
            version,
            "--directory",
            root,
        ];
        Self::start(&args, "Serving HTTP on 127.0.0.1 port ")
    }

    /// tests/interop/wsgi_echo.py: every `HTTP_*` variable of the WSGI environ, and PATH_INFO.
    pub fn wsgi_echo() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/wsgi_echo.py");
        Self::start(&[script], "serving on ")
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `proxy-request` line of `server` that contains every one of `parts` (bounded wait).
pub fn request_line(server: &Proc, parts: &[&str]) -> String {
    let mut found = None;
    wait_until("a proxy-request line", || {
        let lines = server.lines.lock().unwrap();
        found = lines
            .iter()
            .find(|l| l.starts_with("proxy-request ") && parts.iter().all(|p| l.contains(p)))
            .cloned();
        found.is_some()
    });
    found.unwrap_or_default()
}

/// A policy file: `[connect]` for example.org and `routes` (TOML lines).
pub fn policy(world: &World, name: &str, routes: &str) -> String {
    let path = world.path(name);
    let text = format!("[connect]\ntrust_domains = [\"example.org\"]\n{routes}");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The client's SVID as a rustls config offering h2, from `fetch --write` run as the client.
pub fn h2_config(world: &World) -> Arc<ClientConfig> {
    let dir = world.path("client-svid");
    if !dir.exists() {
        let fetched = Command::new(world.path("proxy-client"))
            .args(["fetch", "--socket", &world.socket, "--write"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(fetched.status.success(), "{fetched:?}");
    }
    let source = FileSource::open(FilePaths::fetch_layout(&dir)).unwrap();
    let config = tls::client_config(source, authorize::id(SERVER_ID.parse().unwrap()))
        .alpn_protocols([b"h2".to_vec()])
        .build()
        .unwrap();
    Arc::new(config)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP/2 connection to `server` over mTLS: a sender and the connection's task.
pub async fn h2_connect(
    config: Arc<ClientConfig>,
    server: &str,
) -> (
    hyper::client::conn::http2::SendRequest<String>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
    let name = "example.org".try_into().unwrap();
    let stream = net::connect(config, name, tcp).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

/// One HTTP/2 GET of `path` (sent as written) with `headers`: status and body.
pub fn h2_get(
    config: &Arc<ClientConfig>,
    server: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use http_body_util::BodyExt;
    runtime().block_on(async {
        let (mut sender, _connection) = h2_connect(Arc::clone(config), server).await;
        let mut request = http::Request::get(format!("https://backend{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(String::new()).unwrap();
        let response = tokio::time::timeout(IO_TIMEOUT, sender.send_request(request))
            .await
            .expect("an answer in time")
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

/// Both protocols: `(protocol, status, body)` for `path`.
pub fn get_both(
    client: &Proc,
    config: &Arc<ClientConfig>,
    server: &Proc,
    path: &str,
) -> [(&'static str, u16, String); 2] {
    let (code1, body1) = http_get(&client.listen, path, &[]);
    let (code2, body2) = h2_get(config, &server.listen, path, &[]);
    [("HTTP/1.1", code1, body1), ("HTTP/2", code2, body2)]
}

/// The value the WSGI application sees as `name` (`HTTP_X_SPIFFE_ID`, ...), from its echo.
pub fn wsgi_value<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

/// Whether `python3` runs here; when it does not, says that the test `name` is skipped (the
/// Python backends are stdlib only, so any Python 3 will do).
pub fn python3_available(name: &str) -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !ok {
        eprintln!("skipped {name}: python3 is not installed (its backends are Python's)");
    }
    ok
}

/// The content of `/admin/secret.txt` in [`document_root`].
pub const SECRET: &str = "top secret";

/// A document root with `/admin/secret.txt`, `/public/index.html` and `/index.html`.
pub fn document_root(world: &World) -> std::path::PathBuf {
    let root = world.path("www");
    std::fs::create_dir_all(root.join("admin")).unwrap();
    std::fs::create_dir_all(root.join("public")).unwrap();
    std::fs::write(root.join("admin/secret.txt"), SECRET).unwrap();
    std::fs::write(root.join("public/index.html"), "public page").unwrap();
    std::fs::write(root.join("index.html"), "home page").unwrap();
    root
}

/// A policy letting example.org read every path but `/admin`, which only the intruder may.
pub fn all_but_admin_policy(world: &World) -> String {
    policy(
        world,
        "broad.toml",
        &format!(
            "[routes.\"/\"]\ntrust_domains = [\"example.org\"]\n\
             [routes.\"/admin\"]\nids = [\"{INTRUDER_ID}\"]\n"
        ),
    )
}
