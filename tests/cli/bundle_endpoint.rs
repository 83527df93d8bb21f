//! `spiffe-mtls bundle-endpoint` and `dev-server --bundle-endpoint`: the trust domain's bundle
//! served as a SPIFFE bundle document, read by the crate's federation client under both
//! endpoint profiles, following a CA rotation; and the usage errors.
#![cfg(all(feature = "cli", feature = "dev-server", feature = "federation"))]

use crate::proxy_world::*;

use std::process::Command;
use std::time::{Duration, Instant};

use spiffe_mtls::X509Bundle;
use spiffe_mtls::federation::{BundleDocument, BundleEndpointClient, EndpointProfile, FetchError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spiffe_client(
    url: &str,
    trust_domain: &str,
    endpoint_id: &str,
    bundle: X509Bundle,
) -> BundleEndpointClient {
    BundleEndpointClient::new(
        url,
        trust_domain.parse().unwrap(),
        EndpointProfile::HttpsSpiffe {
            endpoint_id: endpoint_id.parse().unwrap(),
            bundle,
        },
    )
}

fn read_bundle(trust_domain: &str, path: &std::path::Path) -> X509Bundle {
    X509Bundle::parse(trust_domain.parse().unwrap(), &std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_dev_servers_bundle_endpoint_follows_a_ca_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let bundle_file = dir.path().join("bundle.pem");
    let socket = format!("unix://{}", dir.path().join("agent.sock").display());
    let dev = Proc::start(
        BIN,
        &[
            "dev-server",
            "--socket",
            &socket,
            "--trust-domain",
            "fed.example",
            "--id",
            "spiffe://fed.example/workload",
            "--bundle-endpoint",
            "127.0.0.1:0",
            "--bundle-refresh-hint",
            "1s",
            "--write-bundle",
            bundle_file.to_str().unwrap(),
        ],
        "bundle endpoint for trust domain fed.example listening on ",
    );
    let url = dev.listen.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let endpoint_id = "spiffe://fed.example/spiffe-mtls/bundle-endpoint";
    assert!(
        dev.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("endpoint SPIFFE ID {endpoint_id}"))),
        "{:?}",
        dev.lines
    );
    runtime().block_on(async {
        let mut client = spiffe_client(
            &url,
            "fed.example",
            endpoint_id,
            read_bundle("fed.example", &bundle_file),
        );
        let first = client.fetch().await.unwrap();
        assert_eq!(first.x509.roots().len(), 1);
        assert!(
            first
                .jwt
                .as_ref()
                .is_some_and(|jwt| jwt.keys().count() == 1)
        );
        assert_eq!(first.refresh_hint, Some(Duration::from_secs(1)));
        // Another endpoint ID than the one it presents: refused in the handshake.
        let error = spiffe_client(
            &url,
            "fed.example",
            "spiffe://fed.example/workload",
            read_bundle("fed.example", &bundle_file),
        )
        .fetch()
        .await
        .unwrap_err();
        assert!(matches!(error, FetchError::Fetch { .. }), "{error}");

        // A CA rotation: the new root (and JWT key) is published first...
        dev.signal("USR2");
        let deadline = Instant::now() + Duration::from_secs(10);
        let rotated: BundleDocument = loop {
            let document = client.fetch().await.unwrap();
            if document.x509.roots().len() == 2 {
                break document;
            }
            assert!(Instant::now() < deadline, "no second root");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(rotated.sequence > first.sequence);
        assert_eq!(rotated.jwt.as_ref().unwrap().keys().count(), 2);
        // ...then the endpoint presents an SVID of the new CA, which the client learned.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        client.fetch().await.unwrap();
    });
}

#[test]
fn spiffe_mtls_bundle_endpoint_serves_a_workloads_trust_domain_under_both_profiles() {
    let world = World::new();
    let program = world.path("proxy-server");
    let program = program.to_str().unwrap();
    let endpoint = Proc::start(
        program,
        &[
            "bundle-endpoint",
            "--listen",
            "127.0.0.1:0",
            "--socket",
            &world.socket,
        ],
        "listening on ",
    );
    assert!(
        endpoint.lines.lock().unwrap()[0]
            .contains(&format!("(https_spiffe, endpoint SPIFFE ID {SERVER_ID})")),
        "{:?}",
        endpoint.lines
    );
    // The workload's files, for the bootstrap bundle and for --files.
    let files = world.path("server-files");
    let fetched = Command::new(program)
        .args(["fetch", "--socket", &world.socket, "--write"])
        .arg(&files)
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{fetched:?}");
    let bootstrap = read_bundle("example.org", &files.join("bundle.0.pem"));
    runtime().block_on(async {
        let document = spiffe_client(
            &endpoint.listen,
            "example.org",
            SERVER_ID,
            bootstrap.clone(),
        )
        .fetch()
        .await
        .unwrap();
        assert_eq!(
            document.x509.roots().cloned().collect::<Vec<_>>(),
            bootstrap.roots().cloned().collect::<Vec<_>>()
        );
        assert!(document.jwt.is_some(), "the Workload API's JWT keys");
    });

    // https_web from files, with a web certificate for 127.0.0.1.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (world.path("web.pem"), world.path("web.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let web = Proc::start(
        BIN,
        &[
            "bundle-endpoint",
            "--listen",
            "127.0.0.1:0",
            "--files",
            files.to_str().unwrap(),
            "--web-cert",
            cert_file.to_str().unwrap(),
            "--web-key",
            key_file.to_str().unwrap(),
        ],
        "listening on ",
    );
    assert!(
        web.lines.lock().unwrap()[0].ends_with("(https_web)"),
        "{:?}",
        web.lines
    );
    runtime().block_on(async {
        let mut client = BundleEndpointClient::new(
            web.listen.clone(),
            "example.org".parse().unwrap(),
            EndpointProfile::HttpsWeb {
                roots: vec![cert.der().clone()],
            },
        );
        let document = client.fetch().await.unwrap();
        assert_eq!(document.x509.roots().len(), bootstrap.roots().len());
        assert!(document.jwt.is_none(), "fetch --write writes no JWT bundle");
    });
}

#[test]
fn bundle_endpoint_usage_errors_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_remove("SPIFFE_ENDPOINT_SOCKET")
            .output()
            .unwrap()
    };
    let missing = run(&["bundle-endpoint", "--listen", "127.0.0.1:0"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("give --socket ADDR or --files DIR"));
    let no_key = run(&[
        "bundle-endpoint",
        "--listen",
        "127.0.0.1:0",
        "--files",
        "/nonexistent",
        "--web-cert",
        "x.pem",
    ]);
    assert_eq!(no_key.status.code(), Some(2));
    let bad_files = run(&[
        "bundle-endpoint",
        "--listen",
        "127.0.0.1:0",
        "--files",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(bad_files.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad_files.stderr).contains("cannot use the files in"),
        "{bad_files:?}"
    );
}

/// A dev server for `trust_domain` serving its bundle endpoint (refresh hint 1 s), started
/// in `dir`: the process, its endpoint URL and the root digest it prints.
fn endpoint_dev_server(
    dir: &std::path::Path,
    trust_domain: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    let socket = format!(
        "unix://{}",
        dir.join(format!("{trust_domain}.sock")).display()
    );
    let id = format!("spiffe://{trust_domain}/workload");
    let mut args = vec![
        "dev-server",
        "--socket",
        &socket,
        "--trust-domain",
        trust_domain,
        "--id",
        &id,
        "--bundle-endpoint",
        "127.0.0.1:0",
        "--bundle-refresh-hint",
        "1s",
    ];
    args.extend_from_slice(extra);
    let ready = format!("bundle endpoint for trust domain {trust_domain} listening on ");
    let dev = Proc::start(BIN, &args, &ready);
    let line = dev.lines.lock().unwrap()[0].clone();
    let root = line
        .rsplit("root sha256 ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    assert_eq!(root.len(), 64, "{line}");
    let url = dev.listen.clone();
    (dev, url, root)
}

/// The first stdout line of `proc` that contains `text` (bounded wait).
fn line_with(proc: &Proc, text: &str) -> String {
    let mut found = None;
    wait_until(text, || {
        found = proc
            .lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(text))
            .cloned();
        found.is_some()
    });
    found.unwrap_or_default()
}

#[test]
fn two_dev_servers_federate_through_a_bundle_endpoint_without_copying_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, url, root) = endpoint_dev_server(dir.path(), "a.example", &[]);
    let federate = format!("a.example={url},{root}");
    let (b, _, _) =
        endpoint_dev_server(dir.path(), "b.example", &["--federate-endpoint", &federate]);
    line_with(&b, "federated bundle of a.example: 1 roots");
    // B's workloads get a.example's bundle.
    let files = dir.path().join("b-files");
    let socket = format!("unix://{}", dir.path().join("b.example.sock").display());
    let fetched = Command::new(BIN)
        .args(["fetch", "--socket", &socket, "--write"])
        .arg(&files)
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{fetched:?}");
    let federated = std::fs::read_dir(&files)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("a.example.pem"))
        .expect("a federated bundle file for a.example");
    assert!(read_bundle("a.example", &federated.path()).roots().len() == 1);
    // A rotates its CA: B follows by the refresh hint.
    a.signal("USR2");
    line_with(&b, "federated bundle of a.example: 2 roots");

    // A pin of no root of A: refused, said on stderr, no bundle taken.
    let wrong = format!("a.example={url},{}", "0".repeat(64));
    let (c, _, _) = endpoint_dev_server(dir.path(), "c.example", &["--federate-endpoint", &wrong]);
    wait_until("the refusal on stderr", || {
        c.stderr
            .lock()
            .unwrap()
            .contains("no root with the pinned SHA-256")
    });
    assert!(
        !c.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("federated bundle of"))
    );
    // A bad value is a usage error: not https, a digest one digit too long.
    let federate_with = |value: &str| {
        Command::new(BIN)
            .args([
                "dev-server",
                "--trust-domain",
                "d.example",
                "--id",
                "spiffe://d.example/w",
                "--federate-endpoint",
                value,
            ])
            .output()
            .unwrap()
    };
    let bad = federate_with("a.example=http://x,00");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let bad = federate_with(&format!("a.example={url},{root}0"));
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("64 digits"),
        "{bad:?}"
    );
}
