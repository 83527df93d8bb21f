//! Bearer JWT-SVIDs over HTTP: `JwtAuthLayer` answers 401 with a challenge for a missing or
//! invalid token and hands a valid one's identity to handlers and to `RoutePolicyLayer`, with
//! an audit event per decision; `or_mtls` lets a mutual TLS caller in without a token; the
//! client side (`JwtBearerLayer` on hyper-util, `reqwest_bearer`) attaches fresh tokens.
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "http",
    feature = "jwt",
    feature = "reqwest"
))]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::routing::get;
use http_body_util::BodyExt;
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::{JwtSource, JwtSvidValidator};
use spiffe_mtls::net::{self, JwtAuthLayer, JwtBearerLayer, PeerIdentity, RoutePolicyLayer};
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Policy, authorize, tls};
use tower::ServiceExt;

const AUDIENCE: &str = "spiffe://example.org/reports";
const AGENT: &str = "spiffe://example.org/agent";

async fn dev_server() -> (tempfile::TempDir, EndpointAddress, DevServer) {
    let config = DevServerConfig::one_identity(
        "example.org".parse().unwrap(),
        AGENT.parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
    let server = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .unwrap();
    (dir, address, server)
}

/// `/whoami` answers the caller's ID; `/admin` is for another ID only (the route policy).
fn app(source: Arc<JwtSource>) -> axum::Router {
    let policy = Policy::from_toml(
        r#"
[routes."/whoami"]
trust_domains = ["example.org"]
[routes."/admin"]
ids = ["spiffe://example.org/admin"]
"#,
    )
    .unwrap();
    let whoami = get(|Extension(peer): Extension<PeerIdentity>| async move {
        let via = if peer.jwt_svid().is_some() {
            "jwt"
        } else {
            "mtls"
        };
        format!("{peer} {via}")
    });
    axum::Router::new()
        .route("/whoami", whoami.clone())
        .route("/admin", whoami)
        .layer(RoutePolicyLayer::new(policy))
        .layer(JwtAuthLayer::new(source, AUDIENCE).unwrap())
}

async fn call(
    app: &axum::Router,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut request = http::Request::get(path);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = app
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn the_server_layer_refuses_without_a_valid_token_and_hands_over_the_identity() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let _guard = tracing::subscriber::set_default(common::capture::Capture::for_this_thread(
        move |target, fields| {
            if target == "spiffe_mtls::audit" {
                sink.lock().unwrap().push(fields);
            }
        },
    ));
    let (_dir, address, server) = dev_server().await;
    let source = Arc::new(JwtSource::connect(address).await.unwrap());
    let app = app(Arc::clone(&source));

    let (status, challenge, _) = call(&app, "/whoami", None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"spiffe\""));
    let (status, challenge, _) = call(&app, "/whoami", Some("Basic dXNlcjpwdw==")).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("invalid_request"));

    let other = source
        .fetch_svid(&["spiffe://example.org/billing".to_owned()])
        .await
        .unwrap();
    let (status, challenge, body) =
        call(&app, "/whoami", Some(&format!("Bearer {}", other.token()))).await;
    assert_eq!(status, 401, "{body}");
    let challenge = challenge.unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("JWT-SVID rule: aud"), "{challenge}");

    let good = source.fetch_svid(&[AUDIENCE.to_owned()]).await.unwrap();
    let bearer = format!("Bearer {}", good.token());
    let (status, _, body) = call(&app, "/whoami", Some(&bearer)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "spiffe://example.org/agent jwt")
    );
    // The route policy sees the token's identity like an mTLS one.
    let (status, _, body) = call(&app, "/admin", Some(&bearer)).await;
    assert_eq!(status, 403, "{body}");

    let events = events.lock().unwrap().clone();
    let decisions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["decision"].as_str(), e["peer"].as_str()))
        .collect();
    assert_eq!(
        decisions,
        [
            ("denied", "-"),
            ("denied", "-"),
            ("denied", "-"),
            ("accepted", AGENT),
            ("accepted", AGENT),
            ("accepted", AGENT),
            ("denied", AGENT),
        ],
        "{events:?}"
    );
    assert!(events[2]["rule"].contains(": aud"), "{:?}", events[2]);

    // A valid token of an ID the layer's authorizer refuses: 403.
    let narrow = axum::Router::new()
        .route("/whoami", get(|| async { "hi" }))
        .layer(
            JwtAuthLayer::new(Arc::clone(&source), AUDIENCE)
                .unwrap()
                .authorizer(authorize::id(
                    "spiffe://example.org/someone".parse().unwrap(),
                )),
        );
    let (status, _, body) = call(&narrow, "/whoami", Some(&bearer)).await;
    assert_eq!(status, 403, "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_attach_tokens_and_mtls_callers_pass_with_or_mtls() {
    let (_dir, address, server) = dev_server().await;
    let jwt = Arc::new(JwtSource::connect(address.clone()).await.unwrap());
    let x509 = WorkloadApiSource::builder()
        .address(address.clone())
        .build()
        .await
        .unwrap();

    // A server that takes either credential: a client SVID (optional at the handshake) or a
    // bearer token, the token's ID subject to the same authorizer.
    let server_config =
        tls::server_config(x509, authorize::member_of(["example.org".parse().unwrap()]))
            .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
            .client_certificate_optional()
            .build()
            .unwrap();
    let whoami = get(|Extension(peer): Extension<PeerIdentity>| async move {
        let via = if peer.jwt_svid().is_some() {
            "jwt"
        } else {
            "mtls"
        };
        format!("{peer} {via}")
    });
    let app = axum::Router::new().route("/whoami", whoami).layer(
        JwtAuthLayer::new(Arc::clone(&jwt), AUDIENCE)
            .unwrap()
            .or_mtls()
            .authorizer(authorize::member_of(["example.org".parse().unwrap()])),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = tokio::spawn(
        net::HttpServer::new(listener, Arc::new(server_config))
            .allow_anonymous_clients()
            .serve(app.clone()),
    );

    let client_source = WorkloadApiSource::builder()
        .address(address.clone())
        .build()
        .await
        .unwrap();
    let client_config = tls::client_config(client_source, authorize::id(AGENT.parse().unwrap()))
        .build()
        .unwrap();
    let client = net::reqwest_client(client_config).unwrap();
    let url = format!("https://127.0.0.1:{port}/whoami");
    // No token over mTLS: or_mtls lets the handshake's identity through.
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "spiffe://example.org/agent mtls");
    // With reqwest_bearer, the token's identity.
    let audience = [AUDIENCE.to_owned()];
    let request = net::reqwest_bearer(client.get(&url), &jwt, &audience)
        .await
        .unwrap();
    let body = request.send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "spiffe://example.org/agent jwt");

    // A client with no certificate at all (TLS-only: it checks the server's SVID): a token
    // lets it in, nothing else does.
    let anonymous_source = WorkloadApiSource::builder()
        .address(address.clone())
        .build()
        .await
        .unwrap();
    let anonymous_config =
        tls::tls_client_config(anonymous_source, authorize::id(AGENT.parse().unwrap()))
            .build()
            .unwrap();
    let anonymous = net::reqwest_client(anonymous_config).unwrap();
    let refused = anonymous.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let request = net::reqwest_bearer(anonymous.get(&url), &jwt, &audience)
        .await
        .unwrap();
    let body = request.send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "spiffe://example.org/agent jwt");
    serving.abort();

    // hyper-util over plain HTTP with JwtBearerLayer, against the layer without or_mtls.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    let strict = axum::Router::new()
        .route(
            "/whoami",
            get(|Extension(peer): Extension<PeerIdentity>| async move { peer.to_string() }),
        )
        .layer(JwtAuthLayer::new(Arc::clone(&jwt), AUDIENCE).unwrap());
    let plain_server = tokio::spawn(async move { axum::serve(plain, strict).await });
    let hyper_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<String>();
    let client = tower::ServiceBuilder::new()
        .layer(JwtBearerLayer::new(Arc::clone(&jwt), [AUDIENCE]))
        .service(hyper_client);
    let request = http::Request::get(format!("http://127.0.0.1:{plain_port}/whoami"))
        .body(String::new())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], AGENT.as_bytes());
    plain_server.abort();

    // The token the layer sent is one the validator accepts, for that audience only.
    let token = jwt.fetch_svid(&audience).await.unwrap();
    let bundles = spiffe_mtls::jwt::JwtBundleSource::jwt_bundles(&*jwt).unwrap();
    JwtSvidValidator::new()
        .unwrap()
        .validate(token.token(), AUDIENCE, &bundles)
        .unwrap();
    server.shutdown().await;
}
