//! The library's identity-health monitor: its peers and decisions from real handshakes, its
//! alerts by thresholds, and its `axum::Router`.
#![cfg(all(unix, feature = "dev-server", feature = "dashboard"))]

use std::sync::Arc;

use http_body_util::BodyExt;
use spiffe_mtls::health::{HealthMonitor, Thresholds};
use spiffe_mtls::source::X509Source;
use spiffe_mtls::{authorize, tls};
use tower::ServiceExt;

use crate::audit::{ca, handshake, source, svid};

/// A handshake of `client` (a path in `domain`) with a server of `domain` allowing only
/// `.../client`; whether it completed.
fn handshake_as(ca: &spiffe_mtls::dev_server::DevCa, domain: &str, client: &str) -> bool {
    let id = |path: &str| format!("spiffe://{domain}/{path}");
    let server = tls::server_config(
        source("server", svid(ca, &id("server")), &[ca.bundle()]),
        authorize::id(id("client").parse().unwrap()),
    )
    .build()
    .unwrap();
    let client = tls::client_config(
        source("client", svid(ca, &id(client)), &[ca.bundle()]),
        authorize::id(id("server").parse().unwrap()),
    )
    .build()
    .unwrap();
    handshake(&Arc::new(server), &Arc::new(client))
}

fn peer<'a>(status: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|peer| peer["spiffe_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {status}"))
}

async fn get(router: &axum::Router, path: &str) -> (u16, http::HeaderMap, String) {
    let request = http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn peers_decisions_alerts_and_the_router_follow_real_handshakes() {
    let domain = "dashboard.example";
    let ca = ca(domain);
    let mut thresholds = Thresholds::default();
    thresholds.peer_denials_per_minute = 1;
    let monitor = HealthMonitor::new("agent server").with_thresholds(thresholds);
    let own: Arc<dyn X509Source> = Arc::new(source(
        "server",
        svid(&ca, &format!("spiffe://{domain}/server")),
        &[ca.bundle()],
    ));
    monitor.watch(own, "static");

    assert!(handshake_as(&ca, domain, "client"));
    for _ in 0..2 {
        assert!(!handshake_as(&ca, domain, "rogue"));
    }
    let client = format!("spiffe://{domain}/client");
    let opened = monitor.connection_opened(&client.parse().unwrap());

    let status = monitor.status();
    let rogue = peer(&status, &format!("spiffe://{domain}/rogue"));
    assert_eq!(
        (rogue["denied"].as_u64(), rogue["accepted"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(rogue["denials_last_minute"], 2);
    assert_eq!(peer(&status, &client)["open"], 1);
    assert_eq!(status["mode"], "agent server");
    assert_eq!(status["workload_api"]["state"], "not streamed");
    let alerts = status["alerts"].as_array().unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a["rule"] == "peer_denials"
                && a["subject"] == format!("spiffe://{domain}/rogue")),
        "{alerts:?}"
    );
    assert!(
        !alerts
            .iter()
            .any(|a| a["rule"] == "peer_denials" && a["subject"] == client),
        "the good twin raises nothing"
    );
    // Newest first (among this test's: the process's other tests decide meanwhile).
    let ours: Vec<&serde_json::Value> = status["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["peer"].as_str().is_some_and(|p| p.contains(domain)))
        .collect();
    assert_eq!(ours[0]["decision"], "denied", "newest first: {ours:?}");
    assert_eq!(ours.last().unwrap()["decision"], "accepted", "{ours:?}");
    drop(opened);
    assert_eq!(peer(&monitor.status(), &client)["open"], 0);

    let router = monitor.router();
    let (code, headers, page) = get(&router, "/").await;
    assert_eq!(code, 200);
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("connect-src 'self'")
    );
    assert!(page.contains("fetch('_status'"), "the page polls /_status");
    let (code, _, body) = get(&router, "/_status").await;
    assert_eq!(code, 200);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served["mode"], "agent server");
    let (_, _, metrics) = get(&router, "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "spiffe_peer_decisions_total{{peer=\"spiffe://{domain}/rogue\",decision=\"denied\"}} 2"
        )),
        "{metrics}"
    );
    assert_eq!(get(&router, "/healthz").await.0, 200);
    assert_eq!(get(&router, "/nothing").await.0, 404);
}

#[tokio::test]
async fn an_http_server_counts_its_open_connections_per_peer() {
    let domain = "open.dashboard.example";
    let ca = ca(domain);
    let id = |path: &str| format!("spiffe://{domain}/{path}");
    let server_config = tls::server_config(
        source("server", svid(&ca, &id("server")), &[ca.bundle()]),
        authorize::id(id("client").parse().unwrap()),
    )
    .alpn_protocols([b"http/1.1".to_vec()])
    .build()
    .unwrap();
    let client_config = Arc::new(
        tls::client_config(
            source("client", svid(&ca, &id("client")), &[ca.bundle()]),
            authorize::id(id("server").parse().unwrap()),
        )
        .build()
        .unwrap(),
    );
    let monitor = HealthMonitor::new("http server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = spiffe_mtls::net::HttpServer::new(listener, Arc::new(server_config))
        .health_monitor(monitor.clone());
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let task = tokio::spawn(server.serve(app));

    let open = |monitor: &HealthMonitor| {
        monitor.status()["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["spiffe_id"] == id("client"))
            .map_or(0, |p| p["open"].as_u64().unwrap())
    };
    let name = spiffe_mtls::rustls::pki_types::ServerName::try_from("server").unwrap();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let stream = spiffe_mtls::net::connect(Arc::clone(&client_config), name.clone(), tcp)
            .await
            .unwrap();
        streams.push(stream);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while open(&monitor) != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two open connections"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(streams);
    while open(&monitor) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "none open after they closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    task.abort();
}

#[test]
fn a_replayed_chain_is_not_counted_against_the_workload_it_names() {
    use crate::audit::{Replay, TLS13, replaying_client};
    let domain = "replay.dashboard.example";
    let ca = ca(domain);
    let id = |path: &str| format!("spiffe://{domain}/{path}");
    let monitor = HealthMonitor::new("server");
    let server = tls::server_config(
        source("server", svid(&ca, &id("server")), &[ca.bundle()]),
        authorize::id(id("victim").parse().unwrap()),
    )
    .build()
    .unwrap();
    let replay = Replay::new(&svid(&ca, &id("victim")), &svid(&ca, &id("attacker")));
    for _ in 0..3 {
        assert!(!handshake(
            &Arc::new(server.clone()),
            &replaying_client(replay.clone(), TLS13)
        ));
    }
    let status = monitor.status();
    let rows = status["peers"].as_array().unwrap();
    assert!(
        !rows.iter().any(|p| p["spiffe_id"] == id("victim")),
        "the victim never connected: {rows:?}"
    );
    let decision = status["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["peer"] == id("victim"))
        .expect("the decision names the chain presented");
    assert_eq!(decision["rule"], "handshake signature");
    assert_eq!(decision["decision"], "denied");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_a_decision_too() {
    let domain = "anonymous.dashboard.example";
    let ca = ca(domain);
    let id = |path: &str| format!("spiffe://{domain}/{path}");
    let monitor = HealthMonitor::new("server");
    let server_config = Arc::new(
        tls::server_config(
            source("server", svid(&ca, &id("server")), &[ca.bundle()]),
            authorize::any(),
        )
        .build()
        .unwrap(),
    );
    let client_config = Arc::new(
        tls::tls_client_config(
            source("client", svid(&ca, &id("client")), &[ca.bundle()]),
            authorize::id(id("server").parse().unwrap()),
        )
        .build()
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        spiffe_mtls::net::accept(server_config, tcp).await
    });
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = spiffe_mtls::rustls::pki_types::ServerName::try_from("server").unwrap();
    let connector = spiffe_mtls::tokio_rustls::TlsConnector::from(client_config);
    let mut stream = connector.connect(name, tcp).await.unwrap();
    // TLS 1.3: the client finishes first; the server's refusal arrives on the next read.
    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut [0u8; 1]).await;
    assert!(
        accepting.await.unwrap().is_err(),
        "no certificate, no connection"
    );
    let status = monitor.status();
    assert!(
        status["decisions"].as_array().unwrap().iter().any(|d| {
            d["decision"] == "denied"
                && d["peer"] == "-"
                && d["reason"] == "the client presented no certificate"
        }),
        "{}",
        status["decisions"]
    );
}
