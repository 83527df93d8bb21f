//! Clients we did not write: the Python `spiffe` package (py-spiffe, on grpcio) fetches a
//! valid context from the dev server; it fetches JWT-SVIDs and JWT bundles and validates the
//! token itself; PyJWT verifies our tokens against our JWKS, and `spiffe-mtls jwt validate`
//! accepts PyJWT's tokens against the JWKS PyJWT published.
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
    .unwrap()
    .with_federation("partner.org".parse().unwrap());
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

/// Runs a `tests/interop` script; its stdout, or a panic with its output.
async fn run_script(python: &PathBuf, script: &str, args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(script)
            .args(args)
            .output(),
    )
    .await
    .expect("python finished within 60 s")
    .expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[cfg(all(feature = "cli", feature = "jwt"))]
#[tokio::test]
#[ignore = "skipped: needs a Python with the `spiffe` package (.ci/run creates .venv and runs it with --include-ignored)"]
async fn python_jwt_clients_interoperate() {
    const AUDIENCE: &str = "spiffe://example.org/reports";
    let python = python().expect("no Python with the `spiffe` package (see the test above)");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let config = DevServerConfig::one_identity(
        "example.org".parse().unwrap(),
        "spiffe://example.org/agent/python".parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let address = EndpointAddress::Unix(socket.clone());
    let server = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .unwrap();

    // py-spiffe fetches a token and the bundles, and validates the token itself.
    let socket_arg = format!("unix://{}", socket.display());
    let stdout = run_script(&python, "py_jwt.py", &["fetch", &socket_arg, AUDIENCE]).await;
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "fetched spiffe://example.org/agent/python",
            "bundles example.org",
            "validated spiffe://example.org/agent/python",
            "server-validated spiffe://example.org/agent/python",
        ],
        "{stdout}"
    );

    // PyJWT verifies a token we issued, with the JWKS we publish.
    let mut client = spiffe_mtls::workload::WorkloadClient::connect(&address)
        .await
        .unwrap();
    let token = client
        .fetch_jwt_svids(&[AUDIENCE.to_owned()], None)
        .await
        .unwrap()[0]
        .token()
        .to_owned();
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let ours = dir.path().join("ours.jwks");
    let local = bundles.get(&"example.org".parse().unwrap()).unwrap();
    std::fs::write(&ours, local.to_jwks().to_string()).unwrap();
    let stdout = run_script(
        &python,
        "py_jwt.py",
        &["verify", ours.to_str().unwrap(), AUDIENCE, &token],
    )
    .await;
    assert_eq!(stdout, "verified spiffe://example.org/agent/python\n");
    server.shutdown().await;

    // `jwt validate` accepts PyJWT's ES256 and RS256 tokens with the JWKS PyJWT wrote, and
    // refuses them for another audience.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let subject = "spiffe://example.org/python";
    let stdout = run_script(
        &python,
        "py_jwt.py",
        &["sign", theirs.to_str().unwrap(), subject, AUDIENCE],
    )
    .await;
    let tokens: Vec<&str> = stdout.lines().collect();
    assert_eq!(tokens.len(), 2, "{stdout}");
    let bundle = format!("example.org={}", theirs.join("example.org.jwks").display());
    for token in tokens {
        for (audience, expected) in [(AUDIENCE, 0), ("spiffe://example.org/other", 1)] {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
                .args(["jwt", "validate", "--token", "-", "--audience", audience])
                .args(["--bundle", &bundle])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(token.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(expected),
                "{audience}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if expected == 0 {
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), subject);
            }
        }
    }
}
