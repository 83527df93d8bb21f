//! A client we did not write: the Python `spiffe` package (py-spiffe, on grpcio) fetches a
//! valid context from the dev server.
//!
//! The interpreter is `$SPIFFE_MTLS_PYTHON`, else `.venv/bin/python` (which `.ci/run` creates
//! with `pip install spiffe`). A plain `cargo test` lists the test as ignored (skipped), since
//! it needs that Python; `.ci/run` runs it with `--include-ignored`, and then a missing
//! interpreter is a failure.
#![cfg(all(unix, feature = "dev-server", feature = "workload-api"))]

use std::path::PathBuf;
use std::time::Duration;

use spiffe_mtls::dev_server::{DevCa, DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::workload::EndpointAddress;

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("SPIFFE_MTLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let usable = std::process::Command::new(&candidate)
        .args(["-c", "import spiffe"])
        .output()
        .is_ok_and(|o| o.status.success());
    usable.then_some(candidate)
}

#[tokio::test]
#[ignore = "skipped: needs a Python with the `spiffe` package (.ci/run creates .venv and runs it with --include-ignored)"]
async fn python_spiffe_package_fetches_from_the_dev_server() {
    let python = python().expect(
        "no Python with the `spiffe` package: set SPIFFE_MTLS_PYTHON, or create .venv (python3 -m venv .venv && .venv/bin/pip install spiffe==0.3.2)",
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let partner = DevCa::new("partner.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
    let config = DevServerConfig::one_identity(
        "example.org".parse().unwrap(),
        "spiffe://example.org/agent/python".parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let server = DevServer::start(
        config,
        EndpointAddress::Unix(socket.clone()),
        DevServerOptions::default().with_federated(partner.bundle()),
    )
    .await
    .unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py_fetch.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(script)
            .arg(format!("unix://{}", socket.display()))
            .output(),
    )
    .await
    .expect("python finished within 60 s")
    .expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("svid spiffe://example.org/agent/python "),
        "{stdout}"
    );
    assert_eq!(
        &lines[1..],
        [
            "bundle example.org",
            "bundle partner.org",
            "fetch-bundles 2",
            "x509-source spiffe://example.org/agent/python"
        ],
        "{stdout}"
    );
    server.shutdown().await;
}
