//! A client we did not write: the official Python A2A SDK (`a2a-sdk` 1.3.0) calls the Rust
//! agent (`examples/support/agents.rs`, what `agent_server` runs) over SPIFFE mutual TLS,
//! with a client SVID that `spiffe-mtls fetch --write` wrote: card resolution (both
//! dialects), `SendMessage`, `SendStreamingMessage`, v0.3 `message/send` by hand and through
//! the SDK's v0.3 client, and a skill the policy refuses to that SVID.
//!
//! The interpreter is `$SPIFFE_MTLS_PYTHON`, else `.venv/bin/python` (which `.ci/run` creates
//! with `pip install a2a-sdk==1.3.0`). A plain `cargo test` lists the test as ignored
//! (skipped), since it needs that Python; `.ci/run` runs it with `--include-ignored`, and then a
//! missing interpreter is a failure.
#![cfg(all(feature = "a2a", feature = "cli"))]

use crate::agents;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::Policy;
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::workload::EndpointAddress;

const SERVER: &str = "spiffe://example.org/agent/server";
const PYTHON: &str = "spiffe://example.org/agent/python";

fn python() -> Option<PathBuf> {
    python_with("a2a.client, a2a.compat.v0_3.types")
}

/// `$SPIFFE_MTLS_PYTHON`, else `.venv/bin/python`, if it imports `modules`.
pub(crate) fn python_with(modules: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("SPIFFE_MTLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let usable = std::process::Command::new(&candidate)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    usable.then_some(candidate)
}

/// A dev server of `config` on a socket in `dir`, and the folder where `spiffe-mtls fetch
/// --write` wrote the SVID it got from it (`svid.0.pem`, `svid.0.key`, `bundle.0.pem`).
pub(crate) async fn dev_server_and_fetched(dir: &Path, config: &str) -> (DevServer, PathBuf) {
    let socket = dir.join("agent.sock");
    let dev = DevServer::start(
        DevServerConfig::from_toml(config).unwrap(),
        EndpointAddress::Unix(socket.clone()),
        DevServerOptions::default(),
    )
    .await
    .unwrap();
    let files = dir.join("svid");
    let fetched = tokio::process::Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .args([
            "fetch",
            "--socket",
            &format!("unix://{}", socket.display()),
            "--write",
        ])
        .arg(&files)
        .output()
        .await
        .unwrap();
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    (dev, files)
}

pub(crate) fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "skipped: needs a Python with `a2a-sdk` 1.3.0 (.ci/run creates .venv and runs it with --include-ignored)"]
async fn python_a2a_sdk_calls_the_rust_agent_over_mtls() {
    let python = python().expect(
        "no Python with `a2a-sdk`: set SPIFFE_MTLS_PYTHON, or create .venv (python3 -m venv .venv && .venv/bin/pip install a2a-sdk==1.3.0)",
    );
    let dir = tempfile::tempdir().unwrap();
    // The agent is this test process; the Python client's SVID goes to `spiffe-mtls fetch`.
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    let fetch = PathBuf::from(env!("CARGO_BIN_EXE_spiffe-mtls"));
    let uid = uid();
    let config = format!(
        r#"trust_domain = "example.org"
[[entry]]
spiffe_id = "{SERVER}"
selectors = ["unix:uid:{uid}", "unix:path:{}"]
dns_names = ["localhost"]
[[entry]]
spiffe_id = "{PYTHON}"
selectors = ["unix:uid:{uid}", "unix:path:{}"]
"#,
        me.display(),
        fetch.canonicalize().unwrap().display()
    );
    let (dev, files) = dev_server_and_fetched(dir.path(), &config).await;

    let source = Arc::new(
        WorkloadApiSource::connect(dev.address().clone())
            .await
            .unwrap(),
    );
    let policy = Policy::from_toml(
        r#"
[connect]
trust_domains = ["example.org"]
[routes.echo]
trust_domains = ["example.org"]
[routes.secret]
ids = ["spiffe://example.org/agent/boss"]
"#,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server =
        agents::start_agent_server(Arc::clone(&source), None, listener, "localhost", policy)
            .unwrap();
    assert_eq!(server.id.to_string(), SERVER);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/a2a_client.py");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(python)
            .arg(script)
            .arg(&server.base_url)
            .arg(files.join("svid.0.pem"))
            .arg(files.join("svid.0.key"))
            .arg(files.join("bundle.0.pem"))
            .arg(SERVER)
            .output(),
    )
    .await
    .expect("python finished within 90 s")
    .expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let url = format!("{}/a2a", server.base_url);
    assert_eq!(
        lines[0],
        format!("card v0.3 0.3.0 {url} JSONRPC mutualTLS"),
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        format!("card v1.0 1.0 {url} mtls=True"),
        "{stdout}"
    );
    assert_eq!(
        lines[2], "resolved spiffe-mtls example agent skills=echo,secret",
        "{stdout}"
    );
    assert_eq!(
        lines[3], "SendMessage 'hello from python' state=TASK_STATE_COMPLETED",
        "{stdout}"
    );
    assert!(
        lines[4].starts_with("SendStreamingMessage 'streamed from python")
            && lines[4].contains("artifact_update")
            && lines[4].ends_with("status_update"),
        "{stdout}"
    );
    assert_eq!(
        lines[5],
        format!("secret refused: InvalidRequestError: skill \"secret\" does not allow {PYTHON}"),
        "{stdout}"
    );
    assert_eq!(
        lines[6], "message/send kind=task state=completed text='hello in v0.3' part-kind=text",
        "{stdout}"
    );
    assert!(
        lines[7] == "v0.3 client CompatJsonRpcTransport 'hello via the v0.3 client'",
        "{stdout}"
    );
    server.stop();
    dev.shutdown().await;
}
