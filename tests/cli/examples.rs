//! The examples, run as their users run them, against the dev server: the gRPC client and
//! server see each other's SPIFFE IDs; the reqwest client reaches the service that reads
//! `spiffe-mtls fetch --write` files; a client expecting another server ID sends nothing.
//! Each example gets its own identity, attested by its executable's path.
#![cfg(all(
    unix,
    feature = "cli",
    feature = "grpc",
    feature = "http",
    feature = "reqwest"
))]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::workload::EndpointAddress;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Far beyond what any step takes.
const PATIENCE: Duration = Duration::from_secs(30);

/// `target/<profile>/examples/<name>`, built by `cargo test` beside this test.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    let path = profile.join("examples").join(name);
    assert!(path.exists(), "{} is not built", path.display());
    path.canonicalize().unwrap()
}

fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .canonicalize()
        .unwrap()
}

/// A dev server giving each program its own ID by executable path.
async fn dev_server(dir: &Path, programs: &[(&Path, &str)]) -> (EndpointAddress, DevServer) {
    let mut entries = String::from("trust_domain = \"example.org\"\n");
    for (program, id) in programs {
        entries.push_str(&format!(
            "[[entry]]\nspiffe_id = \"spiffe://example.org/{id}\"\nselectors = [\"unix:uid:{}\", \"unix:path:{}\"]\n",
            common::my_uid(),
            program.display()
        ));
    }
    let config = DevServerConfig::from_toml(&entries).unwrap();
    let address = EndpointAddress::Unix(dir.join("agent.sock"));
    let server = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .unwrap();
    (address, server)
}

/// Starts a server example and waits for its `listening on ADDR` line.
async fn start_server(program: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the server started")
        .unwrap()
        .expect("a first line");
    let address = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    // Keep reading its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

/// Runs a client example to the end: (success, stdout, stderr).
async fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
    let output = tokio::time::timeout(
        PATIENCE,
        Command::new(program).args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("the client finished")
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_client_and_server_see_each_others_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (server_exe, client_exe) = (example("grpc_server"), example("grpc_client"));
    let (address, dev) = dev_server(
        dir.path(),
        &[(&server_exe, "grpc-server"), (&client_exe, "grpc-client")],
    )
    .await;
    let socket = address.to_string();
    let (_server, listen) = start_server(
        &server_exe,
        &[
            "--socket",
            &socket,
            "--listen",
            "127.0.0.1:0",
            "--allow-td",
            "example.org",
        ],
    )
    .await;
    let url = format!("https://{listen}");
    let (ok, stdout, stderr) = run(
        &client_exe,
        &[
            "--socket",
            &socket,
            "--server",
            &url,
            "--server-id",
            "spiffe://example.org/grpc-server",
            "--text",
            "hi",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "server saw spiffe://example.org/grpc-client: hi\n");

    // Expecting another server ID: the handshake fails, the call is never made.
    let (ok, stdout, stderr) = run(
        &client_exe,
        &[
            "--socket",
            &socket,
            "--server",
            &url,
            "--server-id",
            "spiffe://example.org/someone-else",
        ],
    )
    .await;
    assert!(!ok, "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    // Said as what the client expected and what the server presented, not a Debug dump.
    assert_eq!(
        stderr.trim_end(),
        format!(
            "grpc_client: cannot connect to {url}: the server is not authorized: expected the ID \
             spiffe://example.org/someone-else, presented spiffe://example.org/grpc-server"
        )
    );
    dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reqwest_client_reaches_the_service_reading_fetch_write_files() {
    let dir = tempfile::tempdir().unwrap();
    let (service_exe, client_exe) = (example("file_service"), example("http_client"));
    let (address, dev) = dev_server(
        dir.path(),
        &[(&cli(), "file-service"), (&client_exe, "http-client")],
    )
    .await;
    let socket = address.to_string();
    let files = dir.path().join("svids");
    let files_arg = files.to_str().unwrap();
    let (ok, stdout, stderr) = run(
        &cli(),
        &["fetch", "--socket", &socket, "--write", files_arg],
    )
    .await;
    assert!(ok, "{stdout}{stderr}");
    let (_service, listen) = start_server(
        &service_exe,
        &[
            "--dir",
            files_arg,
            "--listen",
            "127.0.0.1:0",
            "--allow-td",
            "example.org",
        ],
    )
    .await;
    let url = format!("https://{listen}/");
    let (ok, stdout, stderr) = run(
        &client_exe,
        &[
            "--socket",
            &socket,
            "--url",
            &url,
            "--server-id",
            "spiffe://example.org/file-service",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "hello spiffe://example.org/http-client\n");
    assert!(
        stderr.contains("server spiffe://example.org/file-service"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = run(
        &client_exe,
        &[
            "--socket",
            &socket,
            "--url",
            &url,
            "--server-id",
            "spiffe://example.org/someone-else",
        ],
    )
    .await;
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "http_client: {url}: the server is not authorized: expected the ID \
             spiffe://example.org/someone-else, presented spiffe://example.org/file-service"
        )
    );
    dev.shutdown().await;
}

/// The agent example (`agent_server`) on a dev server that gives it and `agent_client` their
/// IDs: (the server, its base URL, the socket, the dev server).
async fn agent_server(dir: &Path) -> (Child, String, String, DevServer) {
    let (server_exe, client_exe) = (example("agent_server"), example("agent_client"));
    let (address, dev) = dev_server(
        dir,
        &[(&server_exe, "agent/server"), (&client_exe, "agent/client")],
    )
    .await;
    let socket = address.to_string();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[connect]\ntrust_domains = [\"example.org\"]\n[routes.echo]\ntrust_domains = [\"example.org\"]\n",
    )
    .unwrap();
    let mut server = Command::new(&server_exe)
        .args(["--socket", &socket, "--listen", "127.0.0.1:0", "--policy"])
        .arg(&policy)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the agent server started")
        .unwrap()
        .expect("a first line");
    // "agent server ID on URL (card ...)"
    let base = line
        .split(" on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, base, socket, dev)
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_client_discovers_the_agent_from_its_signed_card() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, socket, dev) = agent_server(dir.path()).await;
    let card = format!("{base}/.well-known/agent-card.json");
    let client_exe = example("agent_client");
    let (ok, stdout, stderr) = run(
        &client_exe,
        &[
            "--socket", &socket, "--card", &card, "--text", "hi", "--skill", "echo",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "hi\n");
    assert!(
        stderr.contains("agent spiffe://example.org/agent/server verified by its signed card"),
        "{stderr}"
    );
    // --card finds the server: --server-id beside it is a usage error, said before connecting.
    let (ok, _, stderr) = run(
        &client_exe,
        &[
            "--socket",
            "unix:///nonexistent",
            "--card",
            &card,
            "--server-id",
            "spiffe://example.org/x",
            "--text",
            "hi",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("--card finds the server and its ID"),
        "{stderr}"
    );
    dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_client_says_which_server_id_it_expected() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base, socket, dev) = agent_server(dir.path()).await;
    let client_exe = example("agent_client");
    let (ok, stdout, stderr) = run(
        &client_exe,
        &[
            "--socket",
            &socket,
            "--server",
            &base,
            "--server-id",
            "spiffe://example.org/agent/other",
            "--text",
            "hi",
        ],
    )
    .await;
    assert!(!ok, "{stdout}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "agent_client: cannot fetch the agent card from {base}/.well-known/agent-card.json: \
             the server is not authorized: expected the ID spiffe://example.org/agent/other, \
             presented spiffe://example.org/agent/server"
        ),
        "{stderr}"
    );
    dev.shutdown().await;
}
