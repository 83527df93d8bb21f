//! The file and static sources: the layouts they read, atomic reloads, and expiry.
#![cfg(all(
    unix,
    feature = "cli",
    feature = "dev-server",
    feature = "workload-api"
))]

use std::path::Path;
use std::time::{Duration, SystemTime};

use spiffe_mtls::dev_server::{DevCa, DevServer, DevServerConfig, DevServerOptions, SvidRequest};
use spiffe_mtls::pem;
use spiffe_mtls::source::{
    FilePaths, FileSource, SourceError, StaticSource, X509Context, X509Source,
};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{TrustDomain, X509Svid};

const HOUR: Duration = Duration::from_secs(3600);

fn td(name: &str) -> TrustDomain {
    name.parse().unwrap()
}

fn ca(name: &str) -> DevCa {
    DevCa::new(td(name), HOUR).unwrap()
}

fn issue(ca: &DevCa, id: &str) -> X509Svid {
    ca.issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
        .unwrap()
}

/// An SVID of `spiffe://example.org/old` that expired a minute ago.
fn expired_svid(ca: &DevCa) -> X509Svid {
    let now = SystemTime::now();
    ca.issue(
        &SvidRequest::new("spiffe://example.org/old".parse().unwrap(), HOUR).valid_between(
            now - Duration::from_secs(600),
            now - Duration::from_secs(60),
        ),
    )
    .unwrap()
}

/// Writes an SVID and its key in the `fetch --write` layout.
fn write_svid(dir: &Path, svid: &X509Svid) {
    std::fs::write(
        dir.join("svid.0.pem"),
        pem::encode_certificates(svid.chain()),
    )
    .unwrap();
    write_key(dir, svid);
}

fn write_key(dir: &Path, svid: &X509Svid) {
    std::fs::write(
        dir.join("svid.0.key"),
        pem::encode("PRIVATE KEY", svid.private_key().secret_der()),
    )
    .unwrap();
}

fn write_bundle(path: &Path, roots: &[&DevCa]) {
    let text: String = roots
        .iter()
        .map(|ca| pem::encode_certificates([ca.root()]))
        .collect();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn reads_what_fetch_write_produces() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let partner = ca("partner.org");
    let server = DevServer::start(
        DevServerConfig::one_identity(
            td("example.org"),
            "spiffe://example.org/app".parse().unwrap(),
            HOUR,
        )
        .unwrap()
        .with_federation(td("partner.org")),
        EndpointAddress::Unix(socket.clone()),
        DevServerOptions::default().with_federated(partner.bundle()),
    )
    .await
    .unwrap();
    let out = dir.path().join("out");
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .arg("fetch")
        .arg("--socket")
        .arg(&socket)
        .arg("--write")
        .arg(&out)
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{status:?}");

    let source = FileSource::open(FilePaths::fetch_layout(&out)).unwrap();
    let context = source.x509_context().unwrap();
    assert_eq!(context.default_svid().leaf(), server.svids()[0].leaf());
    let own: Vec<_> = context
        .bundles()
        .get(&td("example.org"))
        .unwrap()
        .roots()
        .cloned()
        .collect();
    assert_eq!(own, server.roots());
    let federated = context
        .bundles()
        .get(&td("partner.org"))
        .expect("federated bundle");
    assert!(federated.contains(partner.root()));
    assert_eq!(context.bundles().len(), 2);
    server.shutdown().await;
}

#[test]
fn reloads_whole_updates_only() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("example.org");
    let first = issue(&authority, "spiffe://example.org/app");
    write_svid(dir.path(), &first);
    write_bundle(&dir.path().join("bundle.0.pem"), &[&authority]);
    // A long interval: this test drives reloads itself.
    let source = FileSource::open_with_interval(
        FilePaths::fetch_layout(dir.path()),
        Duration::from_secs(3600),
    )
    .unwrap();
    assert!(!source.reload().unwrap(), "nothing changed");
    let leaf = || source.x509_context().unwrap().default_svid().leaf().clone();
    assert_eq!(&leaf(), first.leaf());

    // Half an update: the new certificate next to the old key.
    let second = issue(&authority, "spiffe://example.org/app");
    std::fs::write(
        dir.path().join("svid.0.pem"),
        pem::encode_certificates(second.chain()),
    )
    .unwrap();
    let error = source.reload().unwrap_err();
    assert!(
        error.to_string().contains("does not match the private key"),
        "{error}"
    );
    assert_eq!(&leaf(), first.leaf(), "the last good context stays");

    // A truncated certificate file.
    std::fs::write(
        dir.path().join("svid.0.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB",
    )
    .unwrap();
    assert!(source.reload().is_err());
    assert_eq!(&leaf(), first.leaf());

    // The whole update.
    write_svid(dir.path(), &second);
    assert!(source.reload().unwrap());
    assert_eq!(&leaf(), second.leaf());
}

#[tokio::test]
async fn the_watcher_picks_up_changes_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("example.org");
    write_svid(dir.path(), &issue(&authority, "spiffe://example.org/app"));
    write_bundle(&dir.path().join("bundle.0.pem"), &[&authority]);
    let source = FileSource::open_with_interval(
        FilePaths::fetch_layout(dir.path()),
        Duration::from_millis(50),
    )
    .unwrap();
    let mut updates = source.updates();
    let next = issue(&authority, "spiffe://example.org/app");
    // Written the way spiffe-helper and `fetch --write` do: one file after the other.
    write_svid(dir.path(), &next);
    tokio::time::timeout(Duration::from_secs(5), updates.changed())
        .await
        .expect("an update within 5 s")
        .unwrap();
    // The watcher may have caught the certificate before the key; it settles on the pair.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while source.x509_context().unwrap().default_svid().leaf() != next.leaf() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new SVID was not taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn spiffe_helper_layout() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("example.org");
    let svid = issue(&authority, "spiffe://example.org/app");
    std::fs::write(
        dir.path().join("svid.pem"),
        pem::encode_certificates(svid.chain()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("svid_key.pem"),
        pem::encode("PRIVATE KEY", svid.private_key().secret_der()),
    )
    .unwrap();
    write_bundle(&dir.path().join("svid_bundle.pem"), &[&authority]);
    let source = FileSource::open(FilePaths::spiffe_helper(dir.path())).unwrap();
    let context = source.x509_context().unwrap();
    assert!(
        context
            .bundles()
            .get(&td("example.org"))
            .unwrap()
            .contains(authority.root())
    );
    assert_eq!(context.bundles().len(), 1);
}

#[test]
fn federated_files_need_a_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("example.org");
    write_svid(dir.path(), &issue(&authority, "spiffe://example.org/app"));
    write_bundle(&dir.path().join("bundle.0.pem"), &[&authority]);
    // A root without a SPIFFE URI SAN: the common harness of the verifier tests makes such
    // roots; here a plain rcgen self-signed CA.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let key = rcgen::KeyPair::generate().unwrap();
    let plain = params.self_signed(&key).unwrap();
    let plain_path = dir.path().join("partner.pem");
    std::fs::write(&plain_path, plain.pem()).unwrap();

    let error =
        FileSource::open(FilePaths::fetch_layout(dir.path()).with_federated(&plain_path, None))
            .unwrap_err();
    assert!(
        error.to_string().contains("names no trust domain"),
        "{error}"
    );
    let source = FileSource::open(
        FilePaths::fetch_layout(dir.path()).with_federated(&plain_path, Some(td("partner.org"))),
    )
    .unwrap();
    assert!(
        source
            .x509_context()
            .unwrap()
            .bundles()
            .get(&td("partner.org"))
            .is_some()
    );
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = FileSource::open(FilePaths::fetch_layout(dir.path())).unwrap_err();
    match &error {
        SourceError::File { path, .. } => assert!(path.ends_with("svid.0.pem"), "{error}"),
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[test]
fn an_expired_default_svid_is_never_handed_out() {
    let authority = ca("example.org");
    let expired = expired_svid(&authority);
    let fresh = issue(&authority, "spiffe://example.org/fresh");
    let bundles = [authority.bundle()].into_iter().collect();

    let source = StaticSource::new(X509Context::new(vec![expired.clone()], bundles).unwrap());
    match source.x509_context() {
        Err(SourceError::Expired { spiffe_id, .. }) => {
            assert_eq!(spiffe_id.to_string(), "spiffe://example.org/old");
        }
        other => panic!("expected expiry, got {other:?}"),
    }
    // Another SVID does not silently stand in for an expired default one.
    let bundles = [authority.bundle()].into_iter().collect();
    source.replace(X509Context::new(vec![expired.clone(), fresh.clone()], bundles).unwrap());
    assert!(matches!(
        source.x509_context(),
        Err(SourceError::Expired { .. })
    ));
    // An expired non-default SVID is left out.
    let bundles = [authority.bundle()].into_iter().collect();
    source.replace(X509Context::new(vec![fresh.clone(), expired], bundles).unwrap());
    let context = source.x509_context().unwrap();
    assert_eq!(context.svids(), std::slice::from_ref(&fresh));
}

#[test]
fn an_expired_svid_file_fails_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("example.org");
    let expired = expired_svid(&authority);
    write_svid(dir.path(), &expired);
    write_bundle(&dir.path().join("bundle.0.pem"), &[&authority]);
    let error = FileSource::open(FilePaths::fetch_layout(dir.path())).unwrap_err();
    assert!(matches!(error, SourceError::Expired { .. }), "{error}");
}

#[tokio::test]
async fn static_replacements_notify() {
    let authority = ca("example.org");
    let context = |id: &str| {
        X509Context::new(
            vec![issue(&authority, id)],
            [authority.bundle()].into_iter().collect(),
        )
        .unwrap()
    };
    let source = StaticSource::new(context("spiffe://example.org/a"));
    let mut updates = source.updates();
    source.replace(context("spiffe://example.org/b"));
    assert_eq!(updates.changed().await.unwrap(), 1);
    assert_eq!(
        source
            .x509_context()
            .unwrap()
            .default_svid()
            .spiffe_id()
            .to_string(),
        "spiffe://example.org/b"
    );
}
