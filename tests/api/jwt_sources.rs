//! The JWT sources: the Workload API source follows key rotation, caches tokens per audience
//! set until half their lifetime and fails closed when they expire; the file source reloads
//! `<trust-domain>.jwks` files and keeps the last good set; the static source wakes its
//! subscribers.
#![cfg(all(unix, feature = "dev-server", feature = "jwt"))]

use crate::common;

use std::time::Duration;

use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::{
    JwtBundle, JwtBundleFiles, JwtBundleSet, JwtBundleSource, JwtSource, JwtSourceError,
    JwtSvidValidator, StaticJwtBundles,
};
use spiffe_mtls::workload::EndpointAddress;

const AUDIENCE: &str = "spiffe://example.org/reports";

async fn dev_server(ttl: &str) -> (tempfile::TempDir, EndpointAddress, DevServer) {
    let uid = common::my_uid();
    let config = DevServerConfig::from_toml(&format!(
        "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"spiffe://example.org/agent\"\nselectors = [\"unix:uid:{uid}\"]\nttl = \"{ttl}\"\n"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
    let options = DevServerOptions::default().with_ca_propagation(Duration::from_millis(200));
    let server = DevServer::start(config, address.clone(), options)
        .await
        .unwrap();
    (dir, address, server)
}

fn audience() -> Vec<String> {
    vec![AUDIENCE.to_owned()]
}

#[tokio::test]
async fn the_workload_source_follows_rotation_and_caches_tokens() {
    let (_dir, address, server) = dev_server("1h").await;
    let source = JwtSource::connect(address).await.unwrap();
    let bundles = source.jwt_bundles().unwrap();
    let td = "example.org".parse().unwrap();
    assert_eq!(bundles.get(&td).unwrap().keys().count(), 1);

    let first = source.fetch_svid(&audience()).await.unwrap();
    let again = source.fetch_svid(&audience()).await.unwrap();
    assert_eq!(
        first.token(),
        again.token(),
        "cached within half its lifetime"
    );
    let other = source
        .fetch_svid(&["spiffe://example.org/billing".to_owned()])
        .await
        .unwrap();
    assert_ne!(
        first.token(),
        other.token(),
        "another audience set, another token"
    );
    JwtSvidValidator::new()
        .unwrap()
        .validate(first.token(), AUDIENCE, &bundles)
        .unwrap();

    let mut updates = source.updates();
    server.rotate_ca().await;
    tokio::time::timeout(Duration::from_secs(5), updates.changed())
        .await
        .expect("the rotation wakes subscribers")
        .unwrap();
    assert_eq!(
        source
            .jwt_bundles()
            .unwrap()
            .get(&td)
            .unwrap()
            .keys()
            .count(),
        2
    );
    source.shutdown();
    assert_eq!(source.jwt_bundles().unwrap_err(), JwtSourceError::Closed);
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_is_refreshed_at_half_life_and_never_handed_out_expired() {
    // Entries of 4 s get JWT-SVIDs of 4 s (exp and iat are whole seconds: the token is
    // valid 3 to 4 s after it is fetched, and due for a refresh 2 s after its iat).
    let (_dir, address, server) = dev_server("4s").await;
    let source = JwtSource::connect(address).await.unwrap();
    let first = source.fetch_svid(&audience()).await.unwrap();
    // Past half its lifetime the source has fetched a fresh one by itself: with the Workload
    // API gone, the next call gets that one.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    server.shutdown().await;
    let fresh = source.fetch_svid(&audience()).await.unwrap();
    assert!(
        fresh.expires_at() > first.expires_at(),
        "refreshed in the background"
    );
    // It serves until it expires, then never.
    let wait = fresh
        .expires_at()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait.saturating_sub(Duration::from_millis(600))).await;
    let cached = source.fetch_svid(&audience()).await.unwrap();
    assert_eq!(cached.token(), fresh.token());
    tokio::time::sleep(Duration::from_millis(900)).await;
    match source.fetch_svid(&audience()).await {
        Err(JwtSourceError::Expired { spiffe_id, .. }) => {
            assert_eq!(spiffe_id.to_string(), "spiffe://example.org/agent");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[test]
fn the_file_source_reloads_and_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = |kid: &str| {
        format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}]}}"#
        )
    };
    let file = dir.path().join("example.org.jwks");
    std::fs::write(&file, jwks("k1")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let source = JwtBundleFiles::open_with_interval(dir.path(), Duration::from_secs(3600)).unwrap();
    let td = "example.org".parse().unwrap();
    let kid = |source: &JwtBundleFiles| {
        source
            .jwt_bundles()
            .unwrap()
            .get(&td)
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .kid()
            .to_owned()
    };
    assert_eq!(kid(&source), "k1");
    assert!(!source.reload().unwrap(), "nothing changed");

    std::fs::write(&file, jwks("k2")).unwrap();
    assert!(source.reload().unwrap());
    assert_eq!(kid(&source), "k2");

    // Half written: refused, the last good set stays.
    std::fs::write(&file, "{\"keys\":[{\"kty\":").unwrap();
    assert!(source.reload().is_err());
    assert_eq!(kid(&source), "k2");

    // A file that names no trust domain is refused at open.
    std::fs::write(&file, jwks("k3")).unwrap();
    std::fs::write(dir.path().join("Not A TD.jwks"), jwks("k4")).unwrap();
    let error = JwtBundleFiles::open(dir.path()).unwrap_err();
    assert!(error.to_string().contains("Not A TD.jwks"), "{error}");
}

#[tokio::test]
async fn the_static_source_wakes_subscribers_on_a_change() {
    let source = StaticJwtBundles::new(JwtBundleSet::new());
    let mut updates = source.updates();
    let bundle = JwtBundle::new("example.org".parse().unwrap(), []).unwrap();
    source.set([bundle].into_iter().collect());
    tokio::time::timeout(Duration::from_secs(1), updates.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(source.jwt_bundles().unwrap().len(), 1);
}
