//! The Workload API source against the dev server: first update, rotation, and faults (the
//! stream ends, the server restarts, a PermissionDenied period, the server goes away), and
//! why a start fails.
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "workload-api",
    feature = "grpc"
))]

use std::time::{Duration, Instant};

use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions, Entry, Selector};
use spiffe_mtls::source::{SourceError, WorkloadApiSource, X509Context, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use tonic::Code;

const ID: &str = "spiffe://example.org/agent/client";

fn one_identity(ttl: Duration) -> DevServerConfig {
    DevServerConfig::one_identity("example.org".parse().unwrap(), ID.parse().unwrap(), ttl).unwrap()
}

async fn start_at(address: &EndpointAddress, ttl: Duration) -> DevServer {
    DevServer::start(
        one_identity(ttl),
        address.clone(),
        DevServerOptions::default(),
    )
    .await
    .unwrap()
}

fn socket(dir: &tempfile::TempDir) -> EndpointAddress {
    EndpointAddress::Unix(dir.path().join("agent.sock"))
}

async fn source_for(address: &EndpointAddress) -> WorkloadApiSource {
    WorkloadApiSource::builder()
        .address(address.clone())
        .start_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

fn leaf(context: &X509Context) -> Vec<u8> {
    context.default_svid().leaf().to_vec()
}

/// Waits (bounded) until the source's context satisfies `done`.
async fn wait_until(
    source: &WorkloadApiSource,
    limit: Duration,
    done: impl Fn(&Result<std::sync::Arc<X509Context>, SourceError>) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut updates = source.updates();
    loop {
        if done(&source.x509_context()) {
            return started.elapsed();
        }
        let left = limit.checked_sub(started.elapsed()).unwrap_or_else(|| {
            panic!(
                "condition not met within {limit:?}: {:?}",
                source.x509_context()
            )
        });
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), updates.changed()).await;
    }
}

#[tokio::test]
async fn fetches_the_context_from_the_dev_server() {
    let dir = tempfile::tempdir().unwrap();
    let address = socket(&dir);
    let server = start_at(&address, Duration::from_secs(3600)).await;
    let source = source_for(&address).await;
    let context = source.x509_context().unwrap();
    assert_eq!(context.default_svid().spiffe_id().to_string(), ID);
    assert_eq!(
        context
            .bundles()
            .get(&"example.org".parse().unwrap())
            .unwrap()
            .roots()
            .cloned()
            .collect::<Vec<_>>(),
        server.roots()
    );
    assert_eq!(context.default_svid().leaf(), server.svids()[0].leaf());
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotation_reaches_the_source_within_100_ms() {
    let dir = tempfile::tempdir().unwrap();
    let address = socket(&dir);
    let server = start_at(&address, Duration::from_secs(3600)).await;
    let source = source_for(&address).await;
    for _ in 0..3 {
        let before = leaf(&source.x509_context().unwrap());
        server.rotate_svids().await;
        let pushed = Instant::now();
        wait_until(&source, Duration::from_secs(2), |c| {
            c.as_ref().is_ok_and(|c| leaf(c) != before)
        })
        .await;
        let took = pushed.elapsed();
        assert!(
            took < Duration::from_millis(100),
            "rotation reached the source after {took:?}"
        );
        assert_eq!(
            leaf(&source.x509_context().unwrap()),
            server.svids()[0].leaf().to_vec()
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn survives_the_server_ending_its_streams() {
    let dir = tempfile::tempdir().unwrap();
    let address = socket(&dir);
    let server = start_at(&address, Duration::from_secs(3600)).await;
    let source = source_for(&address).await;
    let first = leaf(&source.x509_context().unwrap());
    server.end_streams();
    // The source reconnects; a rotation afterwards still reaches it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        leaf(&source.x509_context().unwrap()),
        first,
        "the last context stays meanwhile"
    );
    server.rotate_svids().await;
    let new = server.svids()[0].leaf().to_vec();
    wait_until(&source, Duration::from_secs(5), |c| {
        c.as_ref().is_ok_and(|c| leaf(c) == new)
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let address = socket(&dir);
    let server = start_at(&address, Duration::from_secs(3600)).await;
    let source = source_for(&address).await;
    let old_roots = server.roots();
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        source.x509_context().is_ok(),
        "the last SVID is kept while the server is away"
    );
    let restarted = start_at(&address, Duration::from_secs(3600)).await;
    let new = restarted.svids()[0].leaf().to_vec();
    assert_ne!(
        restarted.roots(),
        old_roots,
        "the restarted server has a new CA"
    );
    let took = wait_until(&source, Duration::from_secs(5), |c| {
        c.as_ref().is_ok_and(|c| leaf(c) == new)
    })
    .await;
    let context = source.x509_context().unwrap();
    let bundle = context
        .bundles()
        .get(&"example.org".parse().unwrap())
        .unwrap();
    assert_eq!(
        bundle.roots().cloned().collect::<Vec<_>>(),
        restarted.roots()
    );
    // Reconnection backoff is capped at 1 s: the restart is picked up quickly.
    assert!(
        took < Duration::from_secs(3),
        "restart picked up after {took:?}"
    );
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_permission_denied_period_withdraws_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let address = socket(&dir);
    let server = start_at(&address, Duration::from_secs(3600)).await;
    let source = source_for(&address).await;
    // The workload's registration goes away: the stream ends with PermissionDenied.
    let nobody = Entry::new(
        ID.parse().unwrap(),
        Selector::Uid(u32::MAX - 1),
        Duration::from_secs(3600),
    );
    server.replace_entries(vec![nobody]).await.unwrap();
    wait_until(&source, Duration::from_secs(5), |c| {
        matches!(c, Err(SourceError::Withdrawn(_)))
    })
    .await;
    let message = source.x509_context().unwrap_err().to_string();
    assert!(message.contains("withdrew"), "{message}");
    // The registration comes back, after two more refused calls.
    server.fail_next_calls(Code::PermissionDenied, 2);
    server
        .replace_entries(one_identity(Duration::from_secs(3600)).entries)
        .await
        .unwrap();
    wait_until(&source, Duration::from_secs(10), Result::is_ok).await;
    assert_eq!(
        leaf(&source.x509_context().unwrap()),
        server.svids()[0].leaf().to_vec()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn with_the_server_gone_the_last_svid_is_used_until_it_expires_then_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let address = socket(&dir);
    let server = start_at(&address, Duration::from_secs(4)).await;
    let source = source_for(&address).await;
    server.shutdown().await;
    let context = source.x509_context().unwrap();
    let expires = context.default_svid().expires_at();
    let last = leaf(&context);
    // Until notAfter the last SVID is served.
    while std::time::SystemTime::now() + Duration::from_millis(300) < expires {
        assert_eq!(leaf(&source.x509_context().unwrap()), last);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // After it, never.
    let wait = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        + Duration::from_millis(1100);
    tokio::time::sleep(wait).await;
    match source.x509_context() {
        Err(SourceError::Expired { spiffe_id, .. }) => assert_eq!(spiffe_id.to_string(), ID),
        other => panic!("expected an expiry error, got {other:?}"),
    }
    let message = source.x509_context().unwrap_err().to_string();
    assert!(
        message.contains("expired") && message.contains(ID),
        "{message}"
    );
}

#[tokio::test]
async fn start_failures_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let quick = |address: EndpointAddress| {
        WorkloadApiSource::builder()
            .address(address)
            .start_timeout(Duration::from_millis(500))
            .build()
    };

    let missing = dir.path().join("nothing.sock");
    let error = quick(EndpointAddress::Unix(missing.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, SourceError::NoSocket(ref p) if *p == missing),
        "{error}"
    );
    assert!(
        error.to_string().contains("no Workload API socket"),
        "{error}"
    );

    // A socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let error = quick(EndpointAddress::Unix(stale)).await.unwrap_err();
    assert!(matches!(error, SourceError::Unreachable { .. }), "{error}");

    // A server with no entry for this process.
    let address = socket(&dir);
    let config = DevServerConfig::from_toml(
        r#"
        trust_domain = "example.org"
        [[entry]]
        spiffe_id = "spiffe://example.org/someone/else"
        selectors = ["unix:uid:4294967294"]
        "#,
    )
    .unwrap();
    let server = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .unwrap();
    let error = quick(address.clone()).await.unwrap_err();
    assert!(matches!(error, SourceError::NoIdentity { .. }), "{error}");
    // Names this process as an entry would select it, and what to do.
    let uid = spiffe_mtls::dev_server::effective_uid().unwrap();
    let exe = std::env::current_exe().unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "the Workload API at {address} has no identity for this process (uid {uid}, path \
             {}): register one whose selectors match it (the Workload API said: no identity \
             issued)",
            exe.display()
        )
    );
    server.shutdown().await;
}
