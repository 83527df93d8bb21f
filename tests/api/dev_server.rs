//! The dev server in-process: attestation, the header rule, streaming and rotation, faults,
//! and socket handling.
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "workload-api",
    feature = "grpc"
))]

use crate::common;

use common::my_uid;

use std::time::{Duration, Instant};

use spiffe_mtls::dev_server::{
    DevServer, DevServerConfig, DevServerError, DevServerOptions, Entry, Selector,
};
use spiffe_mtls::rustls::pki_types::UnixTime;
use spiffe_mtls::source::X509Context;
use spiffe_mtls::workload::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use spiffe_mtls::workload::proto::{X509BundlesRequest, X509svidRequest, X509svidResponse};
use spiffe_mtls::workload::{EndpointAddress, WorkloadClient, request};
use spiffe_mtls::{SvidVerifier, X509Bundle};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const SERVER_ID: &str = "spiffe://example.org/agent/server";

fn socket_in(dir: &tempfile::TempDir) -> EndpointAddress {
    EndpointAddress::Unix(dir.path().join("agent.sock"))
}

fn one_identity(ttl: Duration) -> DevServerConfig {
    DevServerConfig::one_identity(
        "example.org".parse().unwrap(),
        SERVER_ID.parse().unwrap(),
        ttl,
    )
    .unwrap()
}

async fn start(
    config: DevServerConfig,
    options: DevServerOptions,
) -> (tempfile::TempDir, DevServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = DevServer::start(config, socket_in(&dir), options)
        .await
        .unwrap();
    (dir, server)
}

/// A one-identity server with default options.
async fn start_one() -> (tempfile::TempDir, DevServer) {
    start(
        one_identity(Duration::from_secs(3600)),
        DevServerOptions::default(),
    )
    .await
}

async fn client(server: &DevServer) -> SpiffeWorkloadApiClient<Channel> {
    WorkloadClient::connect(server.address())
        .await
        .unwrap()
        .into_raw()
}

async fn open_stream(server: &DevServer) -> Result<Streaming<X509svidResponse>, tonic::Status> {
    Ok(client(server)
        .await
        .fetch_x509svid(request(X509svidRequest {}))
        .await?
        .into_inner())
}

async fn next(stream: &mut Streaming<X509svidResponse>) -> X509Context {
    let response = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an update within 5 s")
        .expect("no error")
        .expect("stream open");
    X509Context::try_from(response).expect("valid context")
}

/// The SVIDs of a context verify against the context's own bundles.
fn assert_self_consistent(context: &X509Context) {
    let verifier = SvidVerifier::new().unwrap();
    for svid in context.svids() {
        verifier
            .verify(svid.chain(), context.bundles(), UnixTime::now())
            .unwrap_or_else(|e| panic!("{} does not verify: {e}", svid.spiffe_id()));
    }
}

#[tokio::test]
async fn one_identity_for_the_servers_user() {
    let (_dir, server) = start_one().await;
    let mut stream = open_stream(&server).await.unwrap();
    let context = next(&mut stream).await;
    assert_eq!(context.default_svid().spiffe_id().to_string(), SERVER_ID);
    assert!(
        context
            .bundles()
            .get(&"example.org".parse().unwrap())
            .is_some()
    );
    assert_self_consistent(&context);
    server.shutdown().await;
}

#[tokio::test]
async fn the_header_is_required() {
    let (_dir, server) = start_one().await;
    let mut client = client(&server).await;
    let status = client
        .fetch_x509svid(tonic::Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut wrong = tonic::Request::new(X509BundlesRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "false".parse().unwrap());
    assert_eq!(
        client.fetch_x509_bundles(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    server.shutdown().await;
}

fn entries_config(entries: &str) -> DevServerConfig {
    DevServerConfig::from_toml(&format!("trust_domain = \"example.org\"\n{entries}")).unwrap()
}

#[tokio::test]
async fn attestation_by_uid_and_executable_path() {
    let exe = std::env::current_exe().unwrap();
    let uid = my_uid();
    let config = entries_config(&format!(
        r#"
[[entry]]
spiffe_id = "spiffe://example.org/by-uid"
selectors = ["unix:uid:{uid}"]
hint = "uid"
[[entry]]
spiffe_id = "spiffe://example.org/by-path"
selectors = ["unix:path:{}"]
hint = "path"
[[entry]]
spiffe_id = "spiffe://example.org/both"
selectors = ["unix:uid:{uid}", "unix:path:{}"]
[[entry]]
spiffe_id = "spiffe://example.org/other-uid"
selectors = ["unix:uid:{}"]
[[entry]]
spiffe_id = "spiffe://example.org/other-path"
selectors = ["unix:uid:{uid}", "unix:path:/usr/bin/not-this-test"]
"#,
        exe.display(),
        exe.display(),
        uid + 1,
    ));
    let (_dir, server) = start(config, DevServerOptions::default()).await;
    let mut stream = open_stream(&server).await.unwrap();
    let context = next(&mut stream).await;
    let ids: Vec<String> = context
        .svids()
        .iter()
        .map(|s| s.spiffe_id().to_string())
        .collect();
    // every matching entry, in file order; the first is the default
    assert_eq!(
        ids,
        [
            "spiffe://example.org/by-uid",
            "spiffe://example.org/by-path",
            "spiffe://example.org/both"
        ]
    );
    assert_eq!(
        context.svid_by_hint("path").unwrap().spiffe_id().path(),
        "/by-path"
    );
    assert_self_consistent(&context);
    server.shutdown().await;
}

#[tokio::test]
async fn unmatched_caller_is_denied() {
    let config = entries_config(&format!(
        "[[entry]]\nspiffe_id = \"spiffe://example.org/x\"\nselectors = [\"unix:uid:{}\"]\n",
        my_uid() + 1
    ));
    let (_dir, server) = start(config, DevServerOptions::default()).await;
    let status = open_stream(&server).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "no identity issued");
    let status = client(&server)
        .await
        .fetch_x509_bundles(request(X509BundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    server.shutdown().await;
}

#[tokio::test]
async fn losing_the_identity_ends_the_stream_with_permission_denied() {
    let (_dir, server) = start_one().await;
    let mut stream = open_stream(&server).await.unwrap();
    next(&mut stream).await;
    let nobody = Entry::new(
        "spiffe://example.org/x".parse().unwrap(),
        Selector::Uid(my_uid() + 1),
        Duration::from_secs(60),
    );
    server.replace_entries(vec![nobody]).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    server.shutdown().await;
}

#[tokio::test]
async fn rotation_pushes_arrive_within_100_ms() {
    let (_dir, server) = start_one().await;
    let mut stream = open_stream(&server).await.unwrap();
    let first = next(&mut stream).await;
    let mut worst = Duration::ZERO;
    let mut previous = first.default_svid().leaf().clone();
    for _ in 0..5 {
        let started = Instant::now();
        server.rotate_svids().await;
        let update = next(&mut stream).await;
        worst = worst.max(started.elapsed());
        assert_ne!(update.default_svid().leaf(), &previous, "a new SVID");
        previous = update.default_svid().leaf().clone();
        assert_self_consistent(&update);
    }
    assert!(
        worst < Duration::from_millis(100),
        "slowest push took {worst:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn svids_rotate_by_themselves_at_half_their_ttl() {
    let (_dir, server) = start(
        one_identity(Duration::from_secs(2)),
        DevServerOptions::default(),
    )
    .await;
    let mut stream = open_stream(&server).await.unwrap();
    let first = next(&mut stream).await;
    let started = Instant::now();
    let second = next(&mut stream).await;
    let waited = started.elapsed();
    assert_ne!(first.default_svid().leaf(), second.default_svid().leaf());
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ca_rotation_never_serves_an_unverifiable_svid() {
    let options = DevServerOptions::default().with_ca_propagation(Duration::from_millis(100));
    let (_dir, server) = start(one_identity(Duration::from_secs(3600)), options).await;
    let mut stream = open_stream(&server).await.unwrap();
    let first = next(&mut stream).await;
    assert_eq!(server.roots().len(), 1);
    server.rotate_ca().await;
    // first push: the new root joins the bundle, the SVID is still the old CA's
    let prepared = next(&mut stream).await;
    assert_eq!(prepared.default_svid().leaf(), first.default_svid().leaf());
    let td = "example.org".parse().unwrap();
    assert_eq!(prepared.bundles().get(&td).unwrap().roots().len(), 2);
    assert_self_consistent(&prepared);
    // then: an SVID signed by the new CA, with both roots still in the bundle
    let activated = next(&mut stream).await;
    assert_ne!(activated.default_svid().leaf(), first.default_svid().leaf());
    assert_eq!(activated.bundles().get(&td).unwrap().roots().len(), 2);
    assert_self_consistent(&activated);
    // the new SVID does not verify against the old root alone: it really is the new CA's
    let old_only: spiffe_mtls::BundleSet = [X509Bundle::new(
        td.clone(),
        [first
            .bundles()
            .get(&td)
            .unwrap()
            .roots()
            .next()
            .unwrap()
            .clone()],
    )
    .unwrap()]
    .into_iter()
    .collect();
    assert!(
        SvidVerifier::new()
            .unwrap()
            .verify(activated.default_svid().chain(), &old_only, UnixTime::now())
            .is_err()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn injected_failures_then_recovery() {
    let (_dir, server) = start_one().await;
    server.fail_next_calls(Code::Unavailable, 2);
    assert_eq!(
        open_stream(&server).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert_eq!(
        open_stream(&server).await.unwrap_err().code(),
        Code::Unavailable
    );
    let mut stream = open_stream(&server).await.unwrap();
    next(&mut stream).await;
    server.shutdown().await;
}

#[tokio::test]
async fn ending_the_streams() {
    let (_dir, server) = start_one().await;
    let mut stream = open_stream(&server).await.unwrap();
    next(&mut stream).await;
    server.end_streams();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    // new streams still work
    let mut again = open_stream(&server).await.unwrap();
    next(&mut again).await;
    server.shutdown().await;
}

/// As in SPIRE, a federated bundle goes to the callers whose entry federates with its trust
/// domain (`-federatesWith`)...
#[tokio::test]
async fn federated_bundles_are_sent_to_entries_that_federate() {
    let partner = spiffe_mtls::dev_server::DevCa::new(
        "partner.org".parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let options = DevServerOptions::default().with_federated(partner.bundle());
    let config =
        one_identity(Duration::from_secs(3600)).with_federation("partner.org".parse().unwrap());
    let (_dir, server) = start(config, options).await;
    let mut stream = open_stream(&server).await.unwrap();
    let context = next(&mut stream).await;
    let partner_td = "partner.org".parse().unwrap();
    assert_eq!(
        context.bundles().get(&partner_td).unwrap().roots().next(),
        Some(partner.root())
    );
    let bundles = client(&server)
        .await
        .fetch_x509_bundles(request(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let mut keys: Vec<_> = bundles.bundles.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["spiffe://example.org", "spiffe://partner.org"]);
    server.shutdown().await;
}

/// ...and only to them: a caller whose entry does not federate with `partner.org` gets its
/// own trust domain's bundle alone, in the SVID stream and in the bundles stream.
#[tokio::test]
async fn federated_bundles_are_withheld_from_entries_that_do_not_federate() {
    let partner = spiffe_mtls::dev_server::DevCa::new(
        "partner.org".parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let options = DevServerOptions::default().with_federated(partner.bundle());
    let (_dir, server) = start(one_identity(Duration::from_secs(3600)), options).await;
    let mut stream = open_stream(&server).await.unwrap();
    let context = next(&mut stream).await;
    assert!(
        context
            .bundles()
            .get(&"partner.org".parse().unwrap())
            .is_none()
    );
    let bundles = client(&server)
        .await
        .fetch_x509_bundles(request(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let keys: Vec<_> = bundles.bundles.keys().cloned().collect();
    assert_eq!(keys, ["spiffe://example.org"]);
    server.shutdown().await;
}

/// An entry cannot federate with its own trust domain (SPIRE refuses it too).
#[test]
fn an_entry_federating_with_its_own_trust_domain_is_refused() {
    let config =
        one_identity(Duration::from_secs(3600)).with_federation("example.org".parse().unwrap());
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("federates_with names its own trust domain example.org"),
        "{error}"
    );
}

#[tokio::test]
async fn stale_socket_is_replaced_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let address = socket_in(&dir);
    let EndpointAddress::Unix(path) = &address else {
        unreachable!()
    };
    // a socket file nobody listens on
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(path.exists());
    let server = DevServer::start(
        one_identity(Duration::from_secs(3600)),
        address.clone(),
        DevServerOptions::default(),
    )
    .await
    .expect("stale socket replaced");
    let second = DevServer::start(
        one_identity(Duration::from_secs(3600)),
        address.clone(),
        DevServerOptions::default(),
    )
    .await;
    assert!(
        matches!(second, Err(DevServerError::SocketInUse(_))),
        "{second:?}"
    );
    server.shutdown().await;
    assert!(!path.exists(), "socket removed at shutdown");
}

#[tokio::test]
async fn tcp_on_loopback() {
    let server = DevServer::start(
        one_identity(Duration::from_secs(3600)),
        "tcp://127.0.0.1:0".parse().unwrap(),
        DevServerOptions::default(),
    )
    .await
    .unwrap();
    assert!(matches!(server.address(), EndpointAddress::Tcp(a) if a.port() != 0));
    let mut stream = open_stream(&server).await.unwrap();
    assert_eq!(
        next(&mut stream)
            .await
            .default_svid()
            .spiffe_id()
            .to_string(),
        SERVER_ID
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_typed_client_fetches_watches_and_reads_bundles() {
    let (_dir, server) = start_one().await;
    let mut client = WorkloadClient::connect(server.address()).await.unwrap();
    let context = client.fetch_x509_context().await.unwrap();
    assert_eq!(context.default_svid().spiffe_id().to_string(), SERVER_ID);
    assert_self_consistent(&context);

    let bundles = client.fetch_x509_bundles().await.unwrap();
    let names: Vec<String> = bundles
        .iter()
        .map(|b| b.trust_domain().to_string())
        .collect();
    assert_eq!(names, ["example.org"]);

    let mut contexts = client.watch_x509_contexts().await.unwrap();
    let first = contexts.next().await.unwrap().unwrap();
    server.rotate_svids().await;
    let rotated = tokio::time::timeout(Duration::from_secs(5), contexts.next())
        .await
        .expect("a rotation within 5 s")
        .unwrap()
        .unwrap();
    assert_ne!(rotated.default_svid().leaf(), first.default_svid().leaf());
    server.shutdown().await;
}

#[tokio::test]
async fn the_typed_client_refuses_an_update_past_its_limits() {
    let (_dir, server) = start_one().await;
    let limits = spiffe_mtls::source::UpdateLimits::default().with_max_message_bytes(64);
    let mut client = WorkloadClient::connect(server.address())
        .await
        .unwrap()
        .with_limits(limits);
    let error = client.fetch_x509_context().await.unwrap_err();
    assert!(error.to_string().contains("bytes in the update"), "{error}");
    // Within the default limits the same update is fine.
    let mut client = WorkloadClient::connect(server.address()).await.unwrap();
    client.fetch_x509_context().await.unwrap();
    server.shutdown().await;
}
