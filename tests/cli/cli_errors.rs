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

/// A chain (leaf) and its bundle, as PEM files in `dir`, and truncated copies of each.
struct Material {
    chain: std::path::PathBuf,
    bundle: std::path::PathBuf,
    short_chain: std::path::PathBuf,
    short_bundle: std::path::PathBuf,
}

impl Material {
    fn new(dir: &std::path::Path) -> Self {
        use spiffe_mtls::dev_server::{DevCa, SvidRequest};
        let hour = Duration::from_secs(3600);
        let ca = DevCa::new("example.org".parse().unwrap(), hour).unwrap();
        let svid = ca
            .issue(&SvidRequest::new(
                "spiffe://example.org/x".parse().unwrap(),
                hour,
            ))
            .unwrap();
        let root = ca.bundle().roots().next().unwrap().clone();
        let write = |name: &str, der: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, spiffe_mtls::pem::encode("CERTIFICATE", der)).unwrap();
            path
        };
        let leaf = svid.leaf().as_ref();
        Self {
            chain: write("chain.pem", leaf),
            bundle: write("bundle.pem", root.as_ref()),
            short_chain: write("short-chain.pem", &leaf[..leaf.len() / 2]),
            short_bundle: write("short-bundle.pem", &root.as_ref()[..root.len() / 2]),
        }
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_says_what_is_wrong_with_the_bytes_never_the_parser_internals() {
    let dir = tempfile::tempdir().unwrap();
    let m = Material::new(dir.path());
    let bundle_arg = |file: &std::path::Path| format!("example.org={}", path(file));

    let output = run(&[
        "verify",
        "--chain",
        path(&m.short_chain),
        "--bundle",
        &bundle_arg(&m.bundle),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "invalid SVID: leaf certificate is malformed: truncated (DER ended early)\n"
    );

    let output = run(&[
        "verify",
        "--chain",
        path(&m.chain),
        "--bundle",
        &bundle_arg(&m.short_bundle),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        format!(
            "bundle {}: bundle certificate #0 is corrupt: truncated (DER ended early)\n",
            path(&m.short_bundle)
        )
    );

    // PEM without its END line, and with bad base64: said in words, exit 2.
    let no_end = dir.path().join("no-end.pem");
    let pem = std::fs::read_to_string(&m.chain).unwrap();
    std::fs::write(&no_end, pem.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    let bad_base64 = dir.path().join("bad-base64.pem");
    std::fs::write(
        &bad_base64,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (file, reason) in [
        (&no_end, "no \"-----END CERTIFICATE-----\" line"),
        (&bad_base64, "a section is not valid base64"),
    ] {
        let output = run(&[
            "verify",
            "--chain",
            path(file),
            "--bundle",
            &bundle_arg(&m.bundle),
        ]);
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(
            text(&output.stderr),
            format!("chain {}: broken PEM: {reason}\n", path(file))
        );
    }
}

/// Runs the binary; the exit code and stderr.
fn code(args: &[&str]) -> (Option<i32>, String) {
    let output = run(args);
    (output.status.code(), text(&output.stderr))
}

#[test]
fn exit_codes_0_ok_1_refused_or_failed_2_usage_or_unusable_input() {
    let dir = tempfile::tempdir().unwrap();
    let m = Material::new(dir.path());
    let bundle = format!("example.org={}", path(&m.bundle));
    let missing = dir.path().join("missing");
    let missing_socket = format!("unix://{}", dir.path().join("none.sock").display());

    // verify: 0 allowed, 1 not allowed (a refused check), 2 an unreadable file.
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--chain", path(&m.chain), "--bundle", &bundle];
        args.extend_from_slice(extra);
        code(&args)
    };
    assert_eq!(verify(&[]).0, Some(0));
    assert_eq!(
        verify(&["--allow-id", "spiffe://example.org/other"]),
        (
            Some(1),
            "not authorized: expected the ID spiffe://example.org/other, presented \
             spiffe://example.org/x\n"
                .to_owned()
        )
    );
    let (status, stderr) = code(&["verify", "--chain", path(&missing), "--bundle", &bundle]);
    assert_eq!(status, Some(2), "{stderr}");

    // demo: 2 for a usage error (0 and 1 take a run: tests/cli/cli_demo.rs).
    assert_eq!(code(&["demo", "--duration", "soon"]).0, Some(2));

    // dev-server: 2 for an unreadable --config; 1 when it cannot listen (socket in use).
    let (status, stderr) = code(&["dev-server", "--config", path(&missing)]);
    assert_eq!(status, Some(2), "{stderr}");
    let (_server, socket) = server_for_someone_else(dir.path());
    let (status, stderr) = code(&[
        "dev-server",
        "--socket",
        &socket,
        "--trust-domain",
        "example.org",
        "--id",
        "spiffe://example.org/x",
    ]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("already listening"), "{stderr}");

    // fetch, watch, jwt fetch, jwt bundles: 2 without an address, 1 when nothing listens.
    for command in [
        &["fetch"][..],
        &["watch"],
        &["jwt", "fetch", "--audience", "a"],
        &["jwt", "bundles"],
    ] {
        let (status, stderr) = code(command);
        assert_eq!(status, Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains("SPIFFE_ENDPOINT_SOCKET"),
            "{command:?}: {stderr}"
        );
        let mut with_socket = command.to_vec();
        with_socket.extend_from_slice(&["--socket", &missing_socket]);
        let (status, stderr) = code(&with_socket);
        assert_eq!(status, Some(1), "{command:?}: {stderr}");
        assert!(
            stderr.contains("cannot connect to the Workload API"),
            "{command:?}: {stderr}"
        );
    }

    // proxy server: 2 for an unreadable --policy or unusable --files (1 for a Workload API
    // without an identity for it: tests/cli/proxy_errors.rs).
    let proxy_server = |extra: &[&str]| {
        let mut args = vec![
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
        ];
        args.extend_from_slice(extra);
        code(&args)
    };
    let (status, stderr) = proxy_server(&["--policy", path(&missing), "--files", path(dir.path())]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.starts_with("--policy: "), "{stderr}");
    let (status, stderr) = proxy_server(&["--allow-td", "example.org", "--files", path(&missing)]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.starts_with("cannot use the files in "), "{stderr}");

    // proxy client: 2 for a --listen others could reach.
    let (status, stderr) = code(&[
        "proxy",
        "client",
        "--listen",
        "0.0.0.0:0",
        "--target",
        "127.0.0.1:9",
        "--server-id",
        "spiffe://example.org/server",
        "--socket",
        &missing_socket,
    ]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("is not a loopback address"), "{stderr}");
}

/// As in SPIRE, a federated bundle goes to the entries that federate with its trust domain: a
/// `--federate` trust domain that no entry of `--config` federates with is refused at start,
/// in words (exit 2); with `federates_with` in the entry the server starts.
#[test]
fn dev_server_refuses_a_federation_no_entry_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let partner = spiffe_mtls::dev_server::DevCa::new(
        "partner.org".parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let bundle = dir.path().join("partner.pem");
    std::fs::write(
        &bundle,
        spiffe_mtls::pem::encode_certificates(partner.bundle().roots()),
    )
    .unwrap();
    let federate = format!("partner.org={}", bundle.display());
    let entry = format!(
        "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/web\"\n\
         selectors = [\"unix:uid:{}\"]\n",
        uid()
    );
    let config = dir.path().join("entries.toml");
    std::fs::write(&config, &entry).unwrap();
    let socket = format!("unix://{}", dir.path().join("agent.sock").display());
    let args = [
        "dev-server",
        "--socket",
        &socket,
        "--config",
        config.to_str().unwrap(),
        "--federate",
        &federate,
    ];
    let (code, stderr) = code(&args);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--federate partner.org: no entry of")
            && stderr.contains("add federates_with = [\"partner.org\"]"),
        "{stderr}"
    );

    std::fs::write(
        &config,
        format!("{entry}federates_with = [\"partner.org\"]\n"),
    )
    .unwrap();
    let server = DevServerProcess::start(&args[1..]);
    drop(server);
}
