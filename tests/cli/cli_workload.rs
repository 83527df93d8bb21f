//! `spiffe-mtls dev-server`, `fetch` and `watch` through the built binary.
#![cfg(all(unix, feature = "cli", feature = "dev-server"))]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_spiffe-mtls");

/// A dev-server process, stopped with SIGTERM when dropped.
struct DevServerProcess {
    child: Child,
}

impl DevServerProcess {
    /// Starts the server and waits for its "listening" line.
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("dev-server")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dev-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("a line").expect("utf-8");
        assert!(first.contains("listening on"), "{first}");
        // keep draining stdout so the server never blocks on a full pipe
        std::thread::spawn(move || for _ in lines {});
        Self { child }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "dev-server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DevServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .expect("run")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn fetch_write_verify_watch_rotate_stop() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let socket_arg = format!("unix://{}", socket.display());
    let written_bundle = dir.path().join("published-bundle.pem");
    let server = DevServerProcess::start(&[
        "--socket",
        &socket_arg,
        "--trust-domain",
        "example.org",
        "--id",
        "spiffe://example.org/agent/server",
        "--write-bundle",
        written_bundle.to_str().unwrap(),
    ]);

    let out = dir.path().join("out");
    let fetched = run(&[
        "fetch",
        "--socket",
        &socket_arg,
        "--write",
        out.to_str().unwrap(),
    ]);
    assert!(fetched.status.success(), "{}", text(&fetched.stderr));
    let stdout = text(&fetched.stdout);
    assert!(
        stdout.starts_with("svid[0] spiffe://example.org/agent/server hint=- expires="),
        "{stdout}"
    );
    assert!(stdout.contains("bundles: example.org"), "{stdout}");
    for name in ["svid.0.pem", "svid.0.key", "bundle.0.pem"] {
        assert!(out.join(name).exists(), "{name}");
    }
    let mode = std::fs::metadata(out.join("svid.0.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // what fetch wrote is a valid SVID for the bundle it wrote, and the published bundle agrees
    for bundle in [out.join("bundle.0.pem"), written_bundle.clone()] {
        let verified = run(&[
            "verify",
            "--chain",
            out.join("svid.0.pem").to_str().unwrap(),
            "--bundle",
            &format!("example.org={}", bundle.display()),
        ]);
        assert_eq!(
            verified.status.code(),
            Some(0),
            "{}",
            text(&verified.stderr)
        );
        assert_eq!(
            text(&verified.stdout).lines().next(),
            Some("spiffe://example.org/agent/server")
        );
    }

    // watch sees the first update, then the rotation that SIGUSR1 causes
    let watcher = Command::new(BIN)
        .args([
            "watch",
            "--socket",
            socket.to_str().unwrap(),
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.signal("USR1");
    let watched = watcher.wait_with_output().unwrap();
    assert!(watched.status.success());
    let lines: Vec<String> = text(&watched.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert!(
            line.starts_with("spiffe://example.org/agent/server serial="),
            "{line}"
        );
        assert!(
            line.contains(" not_after=") && line.ends_with(" bundles=example.org"),
            "{line}"
        );
    }
    assert_ne!(lines[0], lines[1], "the rotation brought a new serial");

    let status = server.stop();
    assert!(status.success(), "{status:?}");
    assert!(!Path::new(&socket).exists(), "socket removed");
}

#[test]
fn clear_errors_without_a_server_or_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}", dir.path().join("none.sock").display());
    let output = run(&["fetch", "--socket", &missing]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("cannot connect to the Workload API"),
        "{}",
        text(&output.stderr)
    );

    // No address at all: a usage error.
    let output = run(&["fetch"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("SPIFFE_ENDPOINT_SOCKET"),
        "{}",
        text(&output.stderr)
    );

    let config = dir.path().join("entries.toml");
    std::fs::write(
        &config,
        "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/x\"\nselectors = [\"unix:path:/nonexistent/binary\"]\n",
    )
    .unwrap();
    let socket = format!("unix://{}", dir.path().join("agent.sock").display());
    let server =
        DevServerProcess::start(&["--socket", &socket, "--config", config.to_str().unwrap()]);
    let output = run(&["fetch", "--socket", &socket]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("no identity issued"),
        "{}",
        text(&output.stderr)
    );
    let output = run(&["watch", "--socket", &socket, "--count", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("no identity issued"));
    assert!(server.stop().success());
}

#[test]
fn dev_server_usage_errors() {
    for args in [
        vec!["dev-server"],
        vec!["dev-server", "--trust-domain", "example.org"],
        vec![
            "dev-server",
            "--trust-domain",
            "example.org",
            "--id",
            "spiffe://other.org/x",
        ],
        vec!["dev-server", "--config", "/nonexistent.toml"],
        vec![
            "dev-server",
            "--socket",
            "relative.sock",
            "--trust-domain",
            "example.org",
            "--id",
            "spiffe://example.org/x",
        ],
    ] {
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}
