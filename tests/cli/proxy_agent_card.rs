//! An A2A agent behind the sidecar: `proxy server --http` terminates mutual TLS with the
//! workload's SPIFFE ID, the agent behind it (plain HTTP on loopback) signs its card with an
//! SVID of the same ID. The proxy does not alter bodies, so the card keeps its signature,
//! and a client discovers the agent through the proxy and calls it.
#![cfg(all(feature = "a2a", feature = "cli", feature = "dev-server"))]

use crate::agents;
use crate::proxy_world::*;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use spiffe_mtls::a2a::a2a_server::{DefaultRequestHandler, InMemoryTaskStore};
use spiffe_mtls::a2a::{
    self, AGENT_CARD_PATH, AgentClient, CardDiscovery, CardSigner, MtlsAgentCard,
};
use spiffe_mtls::source::{FilePaths, FileSource, X509Source};
use spiffe_mtls::{authorize, net, tls};

/// `fetch --write` run as `program` (a link of the binary with its own SPIFFE ID): the
/// directory of its SVID files.
fn svid_files(world: &World, program: &str) -> PathBuf {
    let dir = world.path(&format!("{program}-svid"));
    let fetched = Command::new(world.path(program))
        .args(["fetch", "--socket", &world.socket, "--write"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{fetched:?}");
    dir
}

fn source(dir: &std::path::Path) -> FileSource {
    FileSource::open(FilePaths::fetch_layout(dir)).unwrap()
}

#[test]
fn a_card_signed_behind_proxy_server_http_keeps_its_signature_and_the_agent_is_discovered() {
    let world = World::new();
    // The agent shares the sidecar's identity (a workload and its sidecar are attested alike).
    let agent_source = source(&svid_files(&world, "proxy-server"));
    let client_source = Arc::new(source(&svid_files(&world, "proxy-client")));
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    backend.set_nonblocking(true).unwrap();
    let backend_address = backend.local_addr().unwrap().to_string();
    let proxy = world.server(&backend_address, &["--http", "--allow-id", CLIENT_ID]);
    let proxy_url = format!("https://{}", proxy.listen);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let card = MtlsAgentCard::new("agent behind a sidecar", format!("{proxy_url}/a2a"))
            .server_id(SERVER_ID.parse().unwrap())
            .skill("echo", "Echo", "Replies with the text it was sent")
            .signed_by(CardSigner::new(agent_source));
        let handler = DefaultRequestHandler::new(agents::SkillsExecutor, InMemoryTaskStore::new());
        let app = a2a::agent_router(Arc::new(handler), card);
        let listener = tokio::net::TcpListener::from_std(backend).unwrap();
        let backend_task = tokio::spawn(async move { axum::serve(listener, app).await });

        let config = tls::client_config(
            Arc::clone(&client_source),
            authorize::id(SERVER_ID.parse().unwrap()),
        )
        .build()
        .unwrap();
        let through_proxy = net::reqwest_client(config).unwrap();
        let bundles = client_source.x509_context().unwrap().bundles().clone();
        for version in [None, Some("1.0"), Some("0.3")] {
            let mut request = through_proxy.get(format!("{proxy_url}{AGENT_CARD_PATH}"));
            if let Some(version) = version {
                request = request.header("A2A-Version", version);
            }
            let proxied = request.send().await.unwrap();
            assert_eq!(proxied.status(), 200, "{version:?}");
            let proxied = proxied.text().await.unwrap();
            let header = version.map(|v| format!("A2A-Version: {v}"));
            let address = backend_address.clone();
            let (code, original) = tokio::task::spawn_blocking(move || {
                let headers: Vec<&str> = header.iter().map(String::as_str).collect();
                http_get(&address, AGENT_CARD_PATH, &headers)
            })
            .await
            .unwrap();
            assert_eq!(code, 200);
            assert_eq!(proxied, original, "the proxy changed the {version:?} card");
            let card: serde_json::Value = serde_json::from_str(&proxied).unwrap();
            let signer = a2a::verify_card(
                &card,
                &bundles,
                &SERVER_ID.parse().unwrap(),
                SystemTime::now(),
            )
            .unwrap();
            assert_eq!(signer.to_string(), SERVER_ID);
        }

        // Discovery through the proxy: the mTLS peer (the sidecar) is the card's signer.
        let agent = AgentClient::discover_with(
            &proxy_url,
            Arc::clone(&client_source),
            CardDiscovery::new(),
        )
        .await
        .unwrap();
        assert_eq!(agent.server_id().unwrap().to_string(), SERVER_ID);
        assert_eq!(
            agent
                .send_text("through the sidecar", Some("echo"))
                .await
                .unwrap(),
            "through the sidecar"
        );
        backend_task.abort();
    });
}
