//! The command's errors in words, through the built binary: a Workload API that has no
//! identity for the caller (both sides of it), and the exit codes of every subcommand.
#![cfg(all(unix, feature = "cli", feature = "dev-server"))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_spiffe-mtls");
const WAIT: Duration = Duration::from_secs(20);

/// A dev-server process whose stderr lines are collected; killed when dropped.
struct DevServerProcess {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl DevServerProcess {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("dev-server")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dev-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("a line").expect("utf-8");
        assert!(first.contains("listening on"), "{first}");
        std::thread::spawn(move || for _ in lines {});
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&stderr);
        let errors = BufReader::new(child.stderr.take().unwrap()).lines();
        std::thread::spawn(move || {
            for line in errors.map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        Self { child, stderr }
    }

    /// Waits (bounded) for a stderr line that starts with `prefix`.
    fn stderr_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|line| line.starts_with(prefix))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no stderr line {prefix:?} in {:?}",
                self.stderr.lock().unwrap()
            );
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

/// This binary's path as `/proc/<pid>/exe` shows it.
fn exe() -> String {
    std::fs::canonicalize(BIN).unwrap().display().to_string()
}

fn uid() -> u32 {
    spiffe_mtls::dev_server::effective_uid().unwrap()
}

/// A dev server whose only entry is for another executable.
fn server_for_someone_else(dir: &std::path::Path) -> (DevServerProcess, String) {
    let config = dir.join("entries.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/web\"\n\
             selectors = [\"unix:uid:{}\", \"unix:path:/srv/web/bin/web\"]\n",
            uid()
        ),
    )
    .unwrap();
    let socket = format!("unix://{}", dir.join("agent.sock").display());
    let server =
        DevServerProcess::start(&["--socket", &socket, "--config", config.to_str().unwrap()]);
    (server, socket)
}

#[test]
fn fetch_without_an_entry_names_this_process_and_the_server_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (server, socket) = server_for_someone_else(dir.path());
    let output = run(&["fetch", "--socket", &socket, "--timeout", "5s"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        format!(
            "the Workload API at {socket} has no identity for this process (uid {}, path {}): \
             register one whose selectors match it (the Workload API said: no identity issued)\n",
            uid(),
            exe()
        )
    );
    // The server's side: the caller as attested, and what the nearest entry needs.
    let line = server.stderr_line("refused: FetchX509SVID refused for ");
    let expected_start = format!("refused: FetchX509SVID refused for uid {}, gid ", uid());
    assert!(line.starts_with(&expected_start), "{line}");
    assert!(line.contains(", pid "), "{line}");
    assert!(
        line.ends_with(&format!(
            ", path {}: no entry matches: spiffe://example.org/web needs \
             unix:path:/srv/web/bin/web",
            exe()
        )),
        "{line}"
    );
}
