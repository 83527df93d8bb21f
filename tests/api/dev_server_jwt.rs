//! The dev server's JWT half: FetchJWTSVID signs for the caller's identities and requested
//! audiences, FetchJWTBundles streams the keys (pushed when they rotate), ValidateJWTSVID
//! agrees with this crate's validator; the JWT key rotates with overlap like the CA.
#![cfg(all(unix, feature = "dev-server", feature = "jwt"))]

use crate::common;

use std::time::Duration;

use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::{JwtBundle, JwtSvidValidator};
use spiffe_mtls::workload::proto::{JwtBundlesRequest, ValidateJwtsvidRequest};
use spiffe_mtls::workload::{EndpointAddress, WorkloadClient, request};
use tonic::Code;

const AUDIENCE: &str = "spiffe://example.org/reports";

async fn start(options: DevServerOptions) -> (tempfile::TempDir, DevServer) {
    let uid = common::my_uid();
    let config = DevServerConfig::from_toml(&format!(
        r#"trust_domain = "example.org"
[[entry]]
spiffe_id = "spiffe://example.org/agent/a"
selectors = ["unix:uid:{uid}"]
hint = "a"
federates_with = ["partner.org"]
[[entry]]
spiffe_id = "spiffe://example.org/agent/b"
selectors = ["unix:uid:{uid}"]
"#
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = DevServer::start(
        config,
        EndpointAddress::Unix(dir.path().join("agent.sock")),
        options,
    )
    .await
    .unwrap();
    (dir, server)
}

fn audience() -> Vec<String> {
    vec![AUDIENCE.to_owned()]
}

#[tokio::test]
async fn tokens_for_each_identity_validate_against_the_served_bundles() {
    let (_dir, server) = start(DevServerOptions::default()).await;
    let mut client = WorkloadClient::connect(server.address()).await.unwrap();
    let svids = client.fetch_jwt_svids(&audience(), None).await.unwrap();
    let ids: Vec<String> = svids.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(
        ids,
        [
            "spiffe://example.org/agent/a",
            "spiffe://example.org/agent/b"
        ]
    );
    assert_eq!(svids[0].hint(), Some("a"));
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    assert_eq!(bundles.len(), 1);
    let validator = JwtSvidValidator::new().unwrap();
    for svid in &svids {
        let validated = validator
            .validate(svid.token(), AUDIENCE, &bundles)
            .unwrap();
        assert_eq!(validated.spiffe_id(), svid.spiffe_id());
        // At most the dev server's JWT-SVID lifetime of 5 minutes.
        let left = validated
            .expiry()
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(left <= Duration::from_secs(300), "{left:?}");
        // For its audience only.
        assert!(
            validator
                .validate(svid.token(), "spiffe://example.org/other", &bundles)
                .is_err()
        );
    }
    // One identity by its ID.
    let b = "spiffe://example.org/agent/b".parse().unwrap();
    let only = client.fetch_jwt_svids(&audience(), Some(&b)).await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].spiffe_id(), &b);
    server.shutdown().await;
}

#[tokio::test]
async fn fetch_refuses_no_audience_and_unknown_ids() {
    let (_dir, server) = start(DevServerOptions::default()).await;
    let mut client = WorkloadClient::connect(server.address()).await.unwrap();
    let status = |e: spiffe_mtls::workload::WorkloadError| match e {
        spiffe_mtls::workload::WorkloadError::Status(status) => status.code(),
        other => panic!("{other}"),
    };
    let error = client.fetch_jwt_svids(&[], None).await.unwrap_err();
    assert_eq!(status(error), Code::InvalidArgument);
    let stranger = "spiffe://example.org/not-mine".parse().unwrap();
    let error = client
        .fetch_jwt_svids(&audience(), Some(&stranger))
        .await
        .unwrap_err();
    assert_eq!(status(error), Code::PermissionDenied);
    server.shutdown().await;
}

#[tokio::test]
async fn validate_jwtsvid_answers_the_id_and_claims_or_invalid_argument() {
    let (_dir, server) = start(DevServerOptions::default()).await;
    let mut client = WorkloadClient::connect(server.address()).await.unwrap();
    let token = client.fetch_jwt_svids(&audience(), None).await.unwrap()[0]
        .token()
        .to_owned();
    let mut raw = client.into_raw();
    let answer = raw
        .validate_jwtsvid(request(ValidateJwtsvidRequest {
            audience: AUDIENCE.into(),
            svid: token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.spiffe_id, "spiffe://example.org/agent/a");
    let claims = answer.claims.unwrap().fields;
    assert!(claims.contains_key("exp") && claims.contains_key("aud"));
    for (audience, svid) in [
        ("spiffe://example.org/other", token.clone()),
        (AUDIENCE, format!("{token}x")),
        ("", token.clone()),
        (AUDIENCE, String::new()),
    ] {
        let status = raw
            .validate_jwtsvid(request(ValidateJwtsvidRequest {
                audience: audience.into(),
                svid,
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{audience}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn federated_jwt_bundles_are_served_and_trusted() {
    let partner = JwtBundle::parse(
        "partner.org".parse().unwrap(),
        br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"p1","use":"jwt-svid",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#,
    )
    .unwrap();
    let (_dir, server) =
        start(DevServerOptions::default().with_federated_jwt(partner.clone())).await;
    let mut client = WorkloadClient::connect(server.address()).await.unwrap();
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    assert_eq!(bundles.len(), 2);
    assert_eq!(bundles.get(&"partner.org".parse().unwrap()), Some(&partner));
    server.shutdown().await;
}

#[tokio::test]
async fn the_jwt_key_rotates_with_overlap() {
    let options = DevServerOptions::default().with_ca_propagation(Duration::from_millis(300));
    let (_dir, server) = start(options).await;
    let mut client = WorkloadClient::connect(server.address()).await.unwrap();
    let old_token = client.fetch_jwt_svids(&audience(), None).await.unwrap()[0]
        .token()
        .to_owned();
    let mut stream = client
        .clone()
        .into_raw()
        .fetch_jwt_bundles(request(JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let keys = |response: spiffe_mtls::workload::proto::JwtBundlesResponse| {
        let jwks = &response.bundles["spiffe://example.org"];
        JwtBundle::parse("example.org".parse().unwrap(), jwks)
            .unwrap()
            .keys()
            .count()
    };
    assert_eq!(keys(stream.message().await.unwrap().unwrap()), 1);
    server.rotate_ca().await;
    // The new key is pushed at once, beside the old one.
    let pushed = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a push within 5 s")
        .unwrap()
        .unwrap();
    assert_eq!(keys(pushed), 2);
    // After the propagation delay the new key signs; tokens of both keys validate.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let new_token = client.fetch_jwt_svids(&audience(), None).await.unwrap()[0]
        .token()
        .to_owned();
    let kid = |token: &str| {
        use base64::Engine;
        let header = token.split('.').next().unwrap();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&json).unwrap()["kid"].clone()
    };
    assert_ne!(kid(&old_token), kid(&new_token));
    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let validator = JwtSvidValidator::new().unwrap();
    validator.validate(&old_token, AUDIENCE, &bundles).unwrap();
    validator.validate(&new_token, AUDIENCE, &bundles).unwrap();
    server.shutdown().await;
}
