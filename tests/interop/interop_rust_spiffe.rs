//! A client we did not write: the `spiffe` crate's `X509Source` fetches from the dev server and
//! follows its rotations.
#![cfg(all(unix, feature = "dev-server", feature = "workload-api"))]

use std::time::Duration;

use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::workload::EndpointAddress;

/// The dev server on `socket`, issuing `id` to this process.
async fn start(socket: &std::path::Path, id: &str) -> DevServer {
    let config = DevServerConfig::one_identity(
        "example.org".parse().unwrap(),
        id.parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    DevServer::start(
        config,
        EndpointAddress::Unix(socket.to_path_buf()),
        DevServerOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn spiffe_crate_x509_source_fetches_and_follows_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let server = start(&socket, "spiffe://example.org/agent/rust").await;

    let source = tokio::time::timeout(
        Duration::from_secs(10),
        spiffe::X509Source::builder()
            .endpoint(format!("unix://{}", socket.display()))
            .build(),
    )
    .await
    .expect("first update within 10 s")
    .expect("source");
    let svid = source.svid().unwrap();
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://example.org/agent/rust"
    );
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let bundle = source
        .bundle_set()
        .unwrap()
        .get(&td)
        .expect("bundle of example.org");
    let roots: Vec<Vec<u8>> = bundle
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let served: Vec<Vec<u8>> = server.roots().iter().map(|c| c.to_vec()).collect();
    assert_eq!(roots, served);

    // a rotation reaches the source
    let before = svid.leaf().as_bytes().to_vec();
    let mut updates = source.updated();
    server.rotate_svids().await;
    tokio::time::timeout(Duration::from_secs(5), updates.changed())
        .await
        .expect("update within 5 s")
        .expect("source alive");
    let after = source.svid().unwrap().leaf().as_bytes().to_vec();
    assert_ne!(before, after);
    assert_eq!(after, server.svids()[0].leaf().to_vec());

    source.shutdown().await;
    server.shutdown().await;
}

/// Users of the `spiffe` crate keep their `X509Source` and get this crate's checks and configs
/// on top: `WorkloadApiSource::from_spiffe` follows its rotations.
#[tokio::test]
async fn a_spiffe_crate_source_feeds_this_crates_source() {
    use spiffe_mtls::source::{UpdateLimits, WorkloadApiSource, X509Source};

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let server = start(&socket, "spiffe://example.org/agent/adapted").await;
    let theirs = spiffe::X509Source::builder()
        .endpoint(format!("unix://{}", socket.display()))
        .build()
        .await
        .unwrap();
    let ours =
        WorkloadApiSource::from_spiffe(theirs, UpdateLimits::default(), Duration::from_secs(5))
            .await
            .unwrap();
    assert!(ours.address().is_none());
    let leaf = || ours.x509_context().unwrap().default_svid().leaf().to_vec();
    assert_eq!(leaf(), server.svids()[0].leaf().to_vec());

    let mut updates = ours.updates();
    server.rotate_svids().await;
    tokio::time::timeout(Duration::from_secs(5), updates.changed())
        .await
        .expect("update within 5 s")
        .unwrap();
    assert_eq!(leaf(), server.svids()[0].leaf().to_vec());

    // a context this crate's limits refuse: nothing within the timeout
    let theirs = spiffe::X509Source::builder()
        .endpoint(format!("unix://{}", socket.display()))
        .build()
        .await
        .unwrap();
    let error = WorkloadApiSource::from_spiffe(
        theirs,
        UpdateLimits::default().with_max_bundles(0),
        Duration::from_millis(200),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("bundles in the update"),
        "{error}"
    );
    ours.shutdown().await;
    server.shutdown().await;
}
