//! Rotation under load: a client handshakes continuously with a server while the dev server
//! rotates the SVIDs every 200 ms and the CA every second. No handshake may fail, and each
//! presents the server SVID its source held while the handshake ran (so every handshake after
//! a push presents the new certificate).
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "workload-api",
    feature = "net"
))]

use crate::common;

use common::my_uid;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::net::{accept, connect};
use spiffe_mtls::rustls::pki_types::ServerName;
use spiffe_mtls::source::{WorkloadApiSource, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{authorize, tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = "spiffe://example.org/load/server";
const CLIENT: &str = "spiffe://example.org/load/client";
const RUN: Duration = Duration::from_secs(5);
const MAX_HANDSHAKES: usize = 50_000;

fn config() -> DevServerConfig {
    let uid = my_uid();
    DevServerConfig::from_toml(&format!(
        r#"
        trust_domain = "example.org"
        svid_ttl = "1h"
        [[entry]]
        spiffe_id = "{SERVER}"
        selectors = ["unix:uid:{uid}"]
        hint = "server"
        [[entry]]
        spiffe_id = "{CLIENT}"
        selectors = ["unix:uid:{uid}"]
        hint = "client"
        "#
    ))
    .unwrap()
}

async fn source(address: &EndpointAddress) -> Arc<WorkloadApiSource> {
    Arc::new(WorkloadApiSource::connect(address.clone()).await.unwrap())
}

fn server_leaf(source: &WorkloadApiSource) -> Vec<u8> {
    source
        .x509_context()
        .unwrap()
        .svid_by_hint("server")
        .unwrap()
        .leaf()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failed_handshake_while_svids_and_ca_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
    let dev = DevServer::start(
        config(),
        address.clone(),
        DevServerOptions::default().with_ca_propagation(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let server_source = source(&address).await;
    let client_source = source(&address).await;

    // Every server SVID the server's source held, with the time it took over.
    let held = Arc::new(Mutex::new(vec![(
        Instant::now(),
        server_leaf(&server_source),
    )]));
    let recorder = {
        let (source, held) = (Arc::clone(&server_source), Arc::clone(&held));
        tokio::spawn(async move {
            let mut updates = source.updates();
            while updates.changed().await.is_ok() {
                let leaf = server_leaf(&source);
                let mut held = held.lock().unwrap();
                if held.last().is_none_or(|(_, last)| *last != leaf) {
                    held.push((Instant::now(), leaf));
                }
            }
        })
    };

    let server_config = Arc::new(
        tls::server_config(
            Arc::clone(&server_source),
            authorize::id(CLIENT.parse().unwrap()),
        )
        .svid_hint("server")
        .build()
        .unwrap(),
    );
    let client_config = Arc::new(
        tls::client_config(
            Arc::clone(&client_source),
            authorize::id(SERVER.parse().unwrap()),
        )
        .svid_hint("client")
        .build()
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_address = listener.local_addr().unwrap();
    let server_failures = Arc::new(Mutex::new(Vec::new()));
    let server = {
        let failures = Arc::clone(&server_failures);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (config, failures) = (Arc::clone(&server_config), Arc::clone(&failures));
                tokio::spawn(async move {
                    match accept(config, tcp).await {
                        Ok(mut stream) => {
                            let mut byte = [0u8; 1];
                            if stream.read_exact(&mut byte).await.is_ok() {
                                let _ = stream.write_all(&byte).await;
                            }
                        }
                        Err(error) => failures.lock().unwrap().push(error.to_string()),
                    }
                });
            }
        })
    };

    let rotations = tokio::spawn(async move {
        let started = Instant::now();
        let mut tick = 0u32;
        while started.elapsed() < RUN {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tick += 1;
            if tick.is_multiple_of(5) {
                dev.rotate_ca().await;
            } else {
                dev.rotate_svids().await;
            }
        }
        dev
    });

    let mut handshakes = Vec::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    while started.elapsed() < RUN + Duration::from_millis(300) && handshakes.len() < MAX_HANDSHAKES
    {
        let begin = Instant::now();
        let tcp = tokio::net::TcpStream::connect(server_address)
            .await
            .unwrap();
        let name = ServerName::IpAddress(server_address.ip().into());
        match connect(Arc::clone(&client_config), name, tcp).await {
            Ok(mut stream) => {
                let presented = stream.peer().chain()[0].to_vec();
                // A round trip: the server accepted us too.
                stream.write_all(b"x").await.unwrap();
                let mut echo = [0u8; 1];
                if let Err(error) = stream.read_exact(&mut echo).await {
                    failures.push(format!("round trip: {error}"));
                }
                handshakes.push((begin, Instant::now(), presented));
            }
            Err(error) => failures.push(error.to_string()),
        }
    }
    let dev = rotations.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort();
    recorder.abort();

    assert!(failures.is_empty(), "client side failures: {failures:?}");
    let server_failures = server_failures.lock().unwrap().clone();
    assert!(
        server_failures.is_empty(),
        "server side failures: {server_failures:?}"
    );

    let held = held.lock().unwrap().clone();
    // 20 rotation ticks in 5 s, each a new server SVID (CA rotations re-issue after 100 ms).
    assert!(held.len() >= 15, "only {} server SVIDs seen", held.len());
    for (begin, end, presented) in &handshakes {
        // The SVIDs the source held at some point while this handshake ran. The recorder
        // notes a change when it gets to run, a little after the source took it.
        let current_at_begin = held.iter().rposition(|(at, _)| at <= begin).unwrap_or(0);
        let noted_by = *end + Duration::from_millis(100);
        let candidates = held[current_at_begin..]
            .iter()
            .take_while(|(at, _)| *at <= noted_by)
            .map(|(_, leaf)| leaf);
        assert!(
            candidates.into_iter().any(|leaf| leaf == presented),
            "a handshake presented an SVID its server's source no longer held"
        );
    }
    let distinct: std::collections::HashSet<_> = handshakes.iter().map(|(_, _, p)| p).collect();
    assert!(
        distinct.len() >= 15,
        "handshakes saw only {} server SVIDs",
        distinct.len()
    );
    assert!(
        handshakes.len() >= 100,
        "only {} handshakes",
        handshakes.len()
    );
    dev.shutdown().await;
}
