//! Trust-domain binding of bundle files: a federated partner cannot mint identities of
//! another trust domain (least of all ours) through the files a `FileSource` reads, and a
//! trust domain that left the federation is no longer trusted after the next `fetch --write`.
#![cfg(all(
    unix,
    feature = "cli",
    feature = "dev-server",
    feature = "workload-api"
))]

use std::path::Path;
use std::time::Duration;

use spiffe_mtls::dev_server::{DevCa, DevServer, DevServerConfig, DevServerOptions, SvidRequest};
use spiffe_mtls::pem;
use spiffe_mtls::rustls::pki_types::UnixTime;
use spiffe_mtls::source::{FilePaths, FileSource, X509Source, federated_bundle_file_name};
use spiffe_mtls::verify::SvidVerifier;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{TrustDomain, X509Svid};

const HOUR: Duration = Duration::from_secs(3600);

fn td(name: &str) -> TrustDomain {
    name.parse().unwrap()
}

fn issue(ca: &DevCa, id: &str) -> X509Svid {
    ca.issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
        .unwrap()
}

/// Our workload's files: an SVID of example.org and example.org's bundle.
fn our_files(dir: &Path, ours: &DevCa) {
    let svid = issue(ours, "spiffe://example.org/app");
    std::fs::write(
        dir.join("svid.0.pem"),
        pem::encode_certificates(svid.chain()),
    )
    .unwrap();
    std::fs::write(
        dir.join("svid.0.key"),
        pem::encode("PRIVATE KEY", svid.private_key().secret_der()),
    )
    .unwrap();
    write_roots(&dir.join("bundle.0.pem"), &[ours]);
}

fn write_roots(path: &Path, cas: &[&DevCa]) {
    let text: String = cas
        .iter()
        .map(|ca| pem::encode_certificates([ca.root()]))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// Whether `source`'s current bundles verify `svid`.
fn trusts(source: &FileSource, svid: &X509Svid) -> bool {
    let context = source.x509_context().unwrap();
    SvidVerifier::new()
        .unwrap()
        .verify(svid.chain(), context.bundles(), UnixTime::now())
        .is_ok()
}

fn open_error(paths: FilePaths) -> String {
    FileSource::open(paths).unwrap_err().to_string()
}

/// The attack of the review: a partner CA whose root claims `spiffe://example.org`, in
/// spire-agent's index-named federated file, and an SVID it signs for our admin.
#[test]
fn a_partner_root_claiming_our_trust_domain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = DevCa::new(td("example.org"), HOUR).unwrap();
    let forger = DevCa::new(td("example.org"), HOUR).unwrap();
    let forged = issue(&forger, "spiffe://example.org/admin");
    our_files(dir.path(), &ours);
    let source = FileSource::open_with_interval(
        FilePaths::fetch_layout(dir.path()),
        Duration::from_secs(3600),
    )
    .unwrap();
    assert!(!trusts(&source, &forged));
    assert!(trusts(&source, &issue(&ours, "spiffe://example.org/admin")));

    let planted = dir.path().join("federated_bundle.0.0.pem");
    write_roots(&planted, &[&forger]);
    let error = source.reload().unwrap_err().to_string();
    assert!(error.contains("federated_bundle.0.0.pem"), "{error}");
    assert!(
        error.contains("names the local trust domain example.org"),
        "{error}"
    );
    assert!(!trusts(&source, &forged), "the last good bundles stay");
    let error = open_error(FilePaths::fetch_layout(dir.path()));
    assert!(error.contains("federated_bundle.0.0.pem"), "{error}");
}

/// The same root in a file bound by name to the partner's trust domain.
#[test]
fn a_root_naming_another_trust_domain_than_its_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = DevCa::new(td("example.org"), HOUR).unwrap();
    our_files(dir.path(), &ours);
    let forger = DevCa::new(td("example.org"), HOUR).unwrap();
    let name = federated_bundle_file_name(0, &td("partner.org"));
    write_roots(&dir.path().join(&name), &[&forger]);
    let error = open_error(FilePaths::fetch_layout(dir.path()));
    assert!(error.contains(&name), "{error}");
    assert!(
        error.contains("names trust domain example.org")
            && error.contains("holds the bundle of partner.org"),
        "{error}"
    );

    // The good twin: the partner's own root in that file.
    let partner = DevCa::new(td("partner.org"), HOUR).unwrap();
    write_roots(&dir.path().join(&name), &[&partner]);
    let source = FileSource::open(FilePaths::fetch_layout(dir.path())).unwrap();
    assert!(trusts(
        &source,
        &issue(&partner, "spiffe://partner.org/agent")
    ));
    assert!(!trusts(
        &source,
        &issue(&partner, "spiffe://example.org/admin")
    ));
}

#[test]
fn a_federated_file_cannot_be_bound_to_the_local_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let ours = DevCa::new(td("example.org"), HOUR).unwrap();
    our_files(dir.path(), &ours);
    let name = federated_bundle_file_name(0, &td("example.org"));
    write_roots(&dir.path().join(&name), &[&ours]);
    let error = open_error(FilePaths::fetch_layout(dir.path()));
    assert!(error.contains(&name), "{error}");
    assert!(
        error.contains("cannot hold the local trust domain"),
        "{error}"
    );

    let local = dir.path().join("local.pem");
    write_roots(&local, &[&ours]);
    let paths = FilePaths::new(
        dir.path().join("svid.0.pem"),
        dir.path().join("svid.0.key"),
        dir.path().join("bundle.0.pem"),
    );
    let error = open_error(paths.with_federated(&local, Some(td("example.org"))));
    assert!(
        error.contains("local.pem") && error.contains("cannot hold the local trust domain"),
        "{error}"
    );
}

/// spiffe-helper's bundle file: a root naming another trust domain is refused, so a partner
/// root cannot ride in the local file.
#[test]
fn the_local_bundle_file_holds_only_local_roots() {
    let dir = tempfile::tempdir().unwrap();
    let ours = DevCa::new(td("example.org"), HOUR).unwrap();
    let partner = DevCa::new(td("partner.org"), HOUR).unwrap();
    our_files(dir.path(), &ours);
    write_roots(&dir.path().join("bundle.0.pem"), &[&ours, &partner]);
    let error = open_error(FilePaths::fetch_layout(dir.path()));
    assert!(error.contains("bundle.0.pem"), "{error}");
    assert!(
        error.contains("names trust domain partner.org")
            && error.contains("holds the bundle of example.org"),
        "{error}"
    );
}

#[test]
fn an_index_named_federated_file_holds_one_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let ours = DevCa::new(td("example.org"), HOUR).unwrap();
    our_files(dir.path(), &ours);
    let partner = DevCa::new(td("partner.org"), HOUR).unwrap();
    let other = DevCa::new(td("other.org"), HOUR).unwrap();
    let file = dir.path().join("federated_bundle.0.0.pem");
    write_roots(&file, &[&partner, &other]);
    let error = open_error(FilePaths::fetch_layout(dir.path()));
    assert!(error.contains("federated_bundle.0.0.pem"), "{error}");
    assert!(error.contains("holds the bundle of partner.org"), "{error}");

    // The good twin: spire-agent's layout, one partner per file, bound by the roots' URI SANs.
    write_roots(&file, &[&partner]);
    write_roots(&dir.path().join("federated_bundle.0.1.pem"), &[&other]);
    let source = FileSource::open(FilePaths::fetch_layout(dir.path())).unwrap();
    assert!(trusts(
        &source,
        &issue(&partner, "spiffe://partner.org/agent")
    ));
    assert!(trusts(&source, &issue(&other, "spiffe://other.org/agent")));
    assert!(!trusts(
        &source,
        &issue(&other, "spiffe://partner.org/agent")
    ));
}

#[test]
fn two_files_cannot_hold_one_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let ours = DevCa::new(td("example.org"), HOUR).unwrap();
    our_files(dir.path(), &ours);
    let partner = DevCa::new(td("partner.org"), HOUR).unwrap();
    let impostor = DevCa::new(td("partner.org"), HOUR).unwrap();
    write_roots(&dir.path().join("federated_bundle.0.0.pem"), &[&impostor]);
    write_roots(
        &dir.path()
            .join(federated_bundle_file_name(0, &td("partner.org"))),
        &[&partner],
    );
    let error = open_error(FilePaths::fetch_layout(dir.path()));
    assert!(error.contains("which"), "{error}");
    assert!(error.contains("already holds"), "{error}");
}

#[test]
fn a_stray_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ours = DevCa::new(td("example.org"), HOUR).unwrap();
    our_files(dir.path(), &ours);
    let partner = DevCa::new(td("partner.org"), HOUR).unwrap();
    write_roots(
        &dir.path().join("federated_bundle.0.partner.org.pem"),
        &[&partner],
    );
    let error = open_error(FilePaths::fetch_layout(dir.path()));
    assert!(
        error.contains("federated_bundle.0.partner.org.pem")
            && error.contains("not a federated bundle file name"),
        "{error}"
    );
}

async fn fetch_write(socket: &Path, out: &Path) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .arg("fetch")
        .arg("--socket")
        .arg(socket)
        .arg("--write")
        .arg(out)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

async fn start(socket: &Path, options: DevServerOptions) -> DevServer {
    DevServer::start(
        DevServerConfig::one_identity(
            td("example.org"),
            "spiffe://example.org/app".parse().unwrap(),
            HOUR,
        )
        .unwrap()
        .with_federation(td("partner.org")),
        EndpointAddress::Unix(socket.to_path_buf()),
        options,
    )
    .await
    .unwrap()
}

/// A trust domain that left the federation: the next `fetch --write` removes its file (and
/// an index-named file an older writer left), and the file source stops trusting it.
#[tokio::test]
async fn a_defederated_trust_domain_is_untrusted_after_the_next_fetch_write() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let out = dir.path().join("out");
    let partner = DevCa::new(td("partner.org"), HOUR).unwrap();
    let partner_svid = issue(&partner, "spiffe://partner.org/agent");

    let federated = start(
        &socket,
        DevServerOptions::default().with_federated(partner.bundle()),
    )
    .await;
    let printed = fetch_write(&socket, &out).await;
    let partner_file = out.join(federated_bundle_file_name(0, &td("partner.org")));
    assert!(partner_file.exists(), "{printed}");
    let source =
        FileSource::open_with_interval(FilePaths::fetch_layout(&out), Duration::from_secs(3600))
            .unwrap();
    assert!(trusts(&source, &partner_svid));
    federated.shutdown().await;

    // An index-named file left by an older writer, of a trust domain long gone.
    let gone = DevCa::new(td("gone.org"), HOUR).unwrap();
    write_roots(&out.join("federated_bundle.0.7.pem"), &[&gone]);

    let alone = start(&socket, DevServerOptions::default()).await;
    let printed = fetch_write(&socket, &out).await;
    assert!(!partner_file.exists(), "{printed}");
    assert!(!out.join("federated_bundle.0.7.pem").exists(), "{printed}");
    assert!(printed.contains("removed"), "{printed}");
    assert!(source.reload().unwrap());
    assert!(!trusts(&source, &partner_svid));
    assert!(!trusts(&source, &issue(&gone, "spiffe://gone.org/agent")));
    assert_eq!(source.x509_context().unwrap().bundles().len(), 1);
    // Only whole files: no temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    alone.shutdown().await;
}
