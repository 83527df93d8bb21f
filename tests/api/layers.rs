//! The tower layers behind `serve_http`: `RoutePolicyLayer` allows and refuses per route from
//! a policy, with one audit event per decision; `IdentityHeaderLayer` strips a spoofed
//! identity header and sets the verified one, and sets none without a verified identity.
#![cfg(all(unix, feature = "dev-server", feature = "http"))]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::net::{self, IdentityHeaderLayer, MtlsConnector, RoutePolicyLayer};
use spiffe_mtls::source::{StaticSource, X509Context};
use spiffe_mtls::tls::AUDIT_TARGET;
use spiffe_mtls::{Policy, authorize, tls};
use tower::ServiceExt;

use crate::common;
use common::capture::{Capture, Fields};

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
const OPS: &str = "spiffe://example.org/ops";
const HOUR: Duration = Duration::from_secs(3600);

const POLICY: &str = r#"
[routes."/api"]
trust_domains = ["example.org"]

[routes."/api/admin"]
ids = ["spiffe://example.org/ops"]

[routes.echo]
ids = ["spiffe://example.org/agent/client"]
"#;

/// Keeps the fields of the audit events that name a route.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Fields>>>,
}

impl Recorder {
    /// A subscriber that feeds this recorder.
    fn subscriber(&self) -> Capture {
        let events = Arc::clone(&self.events);
        Capture::for_this_thread(move |target, fields| {
            if target == AUDIT_TARGET && fields.contains_key("route") {
                events.lock().unwrap().push(fields);
            }
        })
    }

    fn take(&self) -> Vec<Fields> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

struct Material {
    ca: DevCa,
}

impl Material {
    fn new() -> Self {
        Self {
            ca: DevCa::new("example.org".parse().unwrap(), HOUR).unwrap(),
        }
    }

    fn source(&self, id: &str) -> StaticSource {
        let svid = self
            .ca
            .issue(&SvidRequest::new(id.parse().unwrap(), HOUR))
            .unwrap();
        StaticSource::new(
            X509Context::new(vec![svid], [self.ca.bundle()].into_iter().collect()).unwrap(),
        )
    }

    /// Serves `app` to any client of example.org.
    async fn serve(&self, app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
        let config = tls::server_config(
            self.source(SERVER),
            authorize::member_of(["example.org".parse().unwrap()]),
        )
        .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            net::serve_http(listener, Arc::new(config), app)
                .await
                .unwrap();
        });
        (address, task)
    }

    fn client(&self, id: &str) -> Client<MtlsConnector, Empty<bytes::Bytes>> {
        let config = tls::client_config(self.source(id), authorize::id(SERVER.parse().unwrap()))
            .build()
            .unwrap();
        Client::builder(TokioExecutor::new()).build(MtlsConnector::new(config))
    }
}

async fn send(
    client: &Client<MtlsConnector, Empty<bytes::Bytes>>,
    request: http::request::Builder,
) -> (StatusCode, String) {
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get_req(address: &str, path: &str) -> http::request::Builder {
    Request::get(format!("https://{address}{path}"))
}

fn fields(pairs: &[(&str, &str)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn allowed(peer: &str, route: &str, rule: &str) -> Fields {
    fields(&[
        ("message", "request allowed on route"),
        ("side", "server"),
        ("peer", peer),
        ("trust_domain", "example.org"),
        ("decision", "accepted"),
        ("rule", rule),
        ("route", route),
    ])
}

fn denied(peer: &str, route: &str, rule: &str) -> Fields {
    fields(&[
        ("message", "request refused on route"),
        ("side", "server"),
        ("peer", peer),
        ("trust_domain", "example.org"),
        ("decision", "denied"),
        ("rule", rule),
        ("route", route),
        ("reason", "the rule does not allow this SPIFFE ID"),
    ])
}

// The default (current-thread) runtime runs the server's tasks on this test's thread, so the
// thread's default subscriber sees their events.
#[tokio::test]
async fn route_layer_allows_and_refuses_per_route_with_audit_events() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let material = Material::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let handler = move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { "ok" }
    };
    let policy = Policy::from_toml(POLICY).unwrap();
    let app = axum::Router::new()
        .route("/api/items", get(handler.clone()))
        .route("/api/admin/users", get(handler.clone()))
        .route("/other", get(handler.clone()))
        .route("/{*rest}", get(handler))
        .layer(RoutePolicyLayer::new(policy));
    let (address, server) = material.serve(app).await;
    let client = material.client(CLIENT);
    let ops = material.client(OPS);

    // `/api` lets in all of example.org.
    let answer = send(&client, get_req(&address, "/api/items")).await;
    assert_eq!(answer, (StatusCode::OK, "ok".to_owned()));
    assert_eq!(
        recorder.take(),
        [allowed(
            CLIENT,
            "/api",
            r#"route "/api" allows a member of example.org"#
        )]
    );

    // `/api/admin`, the longer prefix, only ops.
    let answer = send(&client, get_req(&address, "/api/admin/users")).await;
    assert_eq!(
        answer,
        (
            StatusCode::FORBIDDEN,
            format!("forbidden: route \"/api/admin\" does not allow {CLIENT}\n")
        )
    );
    assert_eq!(
        recorder.take(),
        [denied(
            CLIENT,
            "/api/admin",
            &format!(r#"route "/api/admin" allows the ID {OPS}"#)
        )]
    );
    let answer = send(&ops, get_req(&address, "/api/admin/users")).await;
    assert_eq!(answer, (StatusCode::OK, "ok".to_owned()));
    assert_eq!(
        recorder.take(),
        [allowed(
            OPS,
            "/api/admin",
            &format!(r#"route "/api/admin" allows the ID {OPS}"#)
        )]
    );

    // A path no route covers is refused, whoever asks.
    let answer = send(&ops, get_req(&address, "/other")).await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.1,
        format!("forbidden: route \"/other\" does not allow {OPS}\n")
    );
    assert_eq!(
        recorder.take(),
        [denied(
            OPS,
            "/other",
            r#"route "/other" is not in the policy"#
        )]
    );

    // `/apis` is not under `/api`.
    let answer = send(&client, get_req(&address, "/apis")).await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);
    let events = recorder.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["route"], "/apis");
    assert_eq!(events[0]["decision"], "denied");
    // Dot segments never pass as the prefix before them: a path with no canonical form is a
    // bad request, audited with the path as received.
    for path in ["/api/items/../admin/users", "/api/%2e%2e/api/admin/users"] {
        let answer = send(&client, get_req(&address, path)).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            answer.1,
            format!("bad request: path {path:?} refused: the path has a dot segment \"..\"\n")
        );
        let events = recorder.take();
        assert_eq!(events.len(), 1, "{path}: {events:?}");
        assert_eq!(events[0]["route"], format!("{path:?}"));
        assert_eq!(events[0]["rule"], "canonical path");
        assert_eq!(events[0]["decision"], "denied");
    }
    // An encoded unreserved character is decoded: `/%61pi/admin/users` is decided (and
    // served) as `/api/admin/users`.
    let answer = send(&client, get_req(&address, "/%61pi/admin/users")).await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);
    let events = recorder.take();
    assert_eq!(events[0]["route"], "/api/admin");

    // Only the allowed requests reached a handler.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.abort();
}

#[tokio::test]
async fn route_layer_with_a_route_function() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let material = Material::new();
    fn skill(request: &Request<Body>) -> String {
        let skill = request
            .headers()
            .get("x-skill")
            .and_then(|v| v.to_str().ok());
        skill.unwrap_or("-").to_owned()
    }
    let app = axum::Router::new()
        .route("/", get(|| async { "done" }))
        .layer(RoutePolicyLayer::new(Policy::from_toml(POLICY).unwrap()).route_by(skill));
    let (address, server) = material.serve(app).await;

    let request = || get_req(&address, "/").header("x-skill", "echo");
    let answer = send(&material.client(CLIENT), request()).await;
    assert_eq!(answer, (StatusCode::OK, "done".to_owned()));
    let answer = send(&material.client(OPS), request()).await;
    assert_eq!(
        answer,
        (
            StatusCode::FORBIDDEN,
            format!("forbidden: route \"echo\" does not allow {OPS}\n")
        )
    );
    let decisions: Vec<_> = recorder
        .take()
        .into_iter()
        .map(|e| (e["peer"].clone(), e["route"].clone(), e["decision"].clone()))
        .collect();
    assert_eq!(
        decisions,
        [
            (CLIENT.to_owned(), "echo".to_owned(), "accepted".to_owned()),
            (OPS.to_owned(), "echo".to_owned(), "denied".to_owned()),
        ]
    );
    server.abort();
}

#[tokio::test]
async fn route_layer_refuses_a_request_without_a_verified_identity() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = tower::service_fn(move |_: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(http::Response::new(String::from("ok"))) }
    });
    let layer = RoutePolicyLayer::new(Policy::from_toml(POLICY).unwrap());
    let service = tower::Layer::layer(&layer, inner);

    let request = Request::get("/api/items").body(()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        response.body(),
        "forbidden: route \"/api\" needs a verified SPIFFE ID\n"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        recorder.take(),
        [fields(&[
            ("message", "request refused on route"),
            ("side", "server"),
            ("peer", "-"),
            ("trust_domain", "-"),
            ("decision", "denied"),
            ("rule", "verified SPIFFE ID"),
            ("route", "/api"),
            ("reason", "the request carries no verified peer identity"),
        ])]
    );
}

/// Every value of the `x-spiffe-id` and `x-peer` headers the handler received.
async fn identity_headers(headers: HeaderMap) -> String {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "x-spiffe-id=[{}] x-peer=[{}]",
        values("x-spiffe-id"),
        values("x-peer")
    )
}

#[tokio::test]
async fn identity_header_layer_replaces_a_spoofed_header() {
    let material = Material::new();
    let app = axum::Router::new()
        .route("/default", get(identity_headers))
        .route(
            "/named",
            get(identity_headers).layer(IdentityHeaderLayer::new().header_name("X-Peer").unwrap()),
        )
        .route_layer(IdentityHeaderLayer::new());
    let (address, server) = material.serve(app).await;

    // HTTP/2 and HTTP/1.1 (where header names arrive in any case).
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let mut config = tls::client_config(
            material.source(CLIENT),
            authorize::id(SERVER.parse().unwrap()),
        )
        .build()
        .unwrap();
        config.alpn_protocols = vec![alpn.to_vec()];
        let client: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build(MtlsConnector::new(config));

        let spoofed = get_req(&address, "/default")
            .header("X-Spiffe-Id", OPS)
            .header("x-spiffe-id", "spiffe://example.org/admin");
        let answer = send(&client, spoofed).await;
        assert_eq!(
            answer,
            (StatusCode::OK, format!("x-spiffe-id=[{CLIENT}] x-peer=[]"))
        );

        let spoofed = get_req(&address, "/named")
            .header("x-peer", OPS)
            .header("X-PEER", OPS);
        let answer = send(&client, spoofed).await;
        // Both layers ran: the route's named header and the router's default one.
        assert_eq!(
            answer,
            (
                StatusCode::OK,
                format!("x-spiffe-id=[{CLIENT}] x-peer=[{CLIENT}]")
            )
        );
    }
    server.abort();
}

#[tokio::test]
async fn identity_header_layer_sets_nothing_without_a_verified_identity() {
    let inner = tower::service_fn(|request: Request<()>| async move {
        let values: Vec<_> = request
            .headers()
            .get_all("x-spiffe-id")
            .iter()
            .cloned()
            .collect();
        Ok::<_, Infallible>(values)
    });
    let service = tower::Layer::layer(&IdentityHeaderLayer::new(), inner);
    let request = Request::get("/")
        .header("x-spiffe-id", OPS)
        .header("X-SPIFFE-ID", CLIENT)
        .body(())
        .unwrap();
    let seen = service.oneshot(request).await.unwrap();
    assert!(seen.is_empty(), "{seen:?}");
}
