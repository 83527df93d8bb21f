//! SPIFFE federation over bundle endpoints: the endpoint serves the dev server's bundle (its
//! roots and JWT keys) as a SPIFFE bundle document under both endpoint profiles; the client
//! authenticates the endpoint by its profile, follows rotations by the refresh hint, and
//! refuses what it must (each beside its good twin).
#![cfg(all(unix, feature = "federation", feature = "dev-server"))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spiffe_mtls::dev_server::{DevCa, DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::federation::{
    BundleDocument, BundleEndpoint, BundleEndpointClient, DocumentError, EndpointProfile,
    FederatedBundle, MAX_DOCUMENT_BYTES,
};
use spiffe_mtls::jwt::JwtSource;
use spiffe_mtls::rustls::ServerConfig;
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{X509Bundle, net, tls};

use crate::common;

const ENDPOINT_ID: &str = "spiffe://fed.example/bundle-endpoint";

struct World {
    _dir: tempfile::TempDir,
    dev: DevServer,
    source: Arc<WorkloadApiSource>,
}

async fn world() -> World {
    world_with(DevServerOptions::default()).await
}

async fn world_with(options: DevServerOptions) -> World {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "trust_domain = \"fed.example\"\n[[entry]]\nspiffe_id = \"{ENDPOINT_ID}\"\nselectors = [\"unix:uid:{}\"]\n",
        common::my_uid()
    );
    let dev = DevServer::start(
        DevServerConfig::from_toml(&config).unwrap(),
        EndpointAddress::Unix(dir.path().join("agent.sock")),
        options,
    )
    .await
    .unwrap();
    let source = Arc::new(
        WorkloadApiSource::connect(dev.address().clone())
            .await
            .unwrap(),
    );
    World {
        _dir: dir,
        dev,
        source,
    }
}

impl World {
    /// The endpoint (roots and JWT keys, refresh hint `hint`) served with `config`; its URL.
    async fn serve(
        &self,
        config: ServerConfig,
        hint: Duration,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let jwt = JwtSource::connect(self.dev.address().clone())
            .await
            .unwrap();
        let endpoint = BundleEndpoint::new(Arc::clone(&self.source))
            .jwt_bundles(jwt)
            .refresh_hint(hint);
        serve_app(config, endpoint.router()).await
    }

    /// The endpoint with the SVID (`https_spiffe`).
    async fn serve_spiffe(&self, hint: Duration) -> (String, tokio::task::JoinHandle<()>) {
        let config = tls::tls_server_config(Arc::clone(&self.source))
            .build()
            .unwrap();
        self.serve(config, hint).await
    }

    fn bundle(&self) -> X509Bundle {
        X509Bundle::new("fed.example".parse().unwrap(), self.dev.roots()).unwrap()
    }

    fn spiffe_client(
        &self,
        url: &str,
        endpoint_id: &str,
        bundle: X509Bundle,
    ) -> BundleEndpointClient {
        BundleEndpointClient::new(
            url,
            "fed.example".parse().unwrap(),
            EndpointProfile::HttpsSpiffe {
                endpoint_id: endpoint_id.parse().unwrap(),
                bundle,
            },
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_roots_and_jwt_keys_and_the_client_reads_them_over_https_spiffe() {
    let w = world().await;
    let (url, task) = w.serve_spiffe(Duration::from_secs(120)).await;
    let document = w
        .spiffe_client(&url, ENDPOINT_ID, w.bundle())
        .fetch()
        .await
        .unwrap();
    let roots: Vec<_> = document.x509.roots().cloned().collect();
    assert_eq!(roots, w.dev.roots());
    let jwt = document.jwt.as_ref().expect("JWT keys");
    assert!(jwt.keys().count() >= 1);
    assert_eq!(document.refresh_hint, Some(Duration::from_secs(120)));
    let sequence = document.sequence.unwrap();
    assert!(
        sequence > 1_700_000_000,
        "{sequence}: the Unix time at first serve"
    );

    // The document's form: each root a JWK with its key parameters and `x5c`.
    let json = document.to_json();
    let x509_key = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["use"] == "x509-svid")
        .unwrap();
    assert_eq!(x509_key["kty"], "EC");
    assert!(x509_key["x"].is_string() && x509_key["y"].is_string() && x509_key["crv"].is_string());
    assert_eq!(x509_key["x5c"].as_array().unwrap().len(), 1);
    assert!(x509_key.get("kid").is_none());
    // Read back, the same document.
    let again =
        BundleDocument::parse("fed.example".parse().unwrap(), json.to_string().as_bytes()).unwrap();
    assert_eq!(again.to_json(), json);
    task.abort();
    w.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_not_authenticated_by_its_profile_is_refused() {
    let w = world().await;
    let (url, task) = w.serve_spiffe(Duration::from_secs(60)).await;
    // Another endpoint ID than the one it presents.
    let error = w
        .spiffe_client(&url, "spiffe://fed.example/someone-else", w.bundle())
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "the bundle endpoint is {ENDPOINT_ID}, expected spiffe://fed.example/someone-else"
        )),
        "{error}"
    );
    // A bootstrap bundle of another CA.
    let other = DevCa::new("fed.example".parse().unwrap(), Duration::from_secs(600))
        .unwrap()
        .bundle();
    let error = w
        .spiffe_client(&url, ENDPOINT_ID, other)
        .fetch()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("the bundle endpoint's SVID"), "{error}");
    // https_web with roots that do not include the SVID's CA (and no DNS name to match).
    let mut web = BundleEndpointClient::new(
        url.clone(),
        "fed.example".parse().unwrap(),
        EndpointProfile::HttpsWeb {
            roots: w.dev.roots(),
        },
    );
    assert!(web.fetch().await.is_err());
    // The good twin.
    w.spiffe_client(&url, ENDPOINT_ID, w.bundle())
        .fetch()
        .await
        .unwrap();
    task.abort();
    w.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_web_serves_with_a_web_certificate_verified_against_its_roots() {
    let w = world().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::NoCa;
    let cert = params.self_signed(&key).unwrap();
    let provider = spiffe_mtls::crypto::default_provider().unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            spiffe_mtls::rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let (url, task) = w.serve(config, Duration::from_secs(60)).await;
    let client = |roots| {
        BundleEndpointClient::new(
            url.clone(),
            "fed.example".parse().unwrap(),
            EndpointProfile::HttpsWeb { roots },
        )
    };
    let document = client(vec![cert.der().clone()]).fetch().await.unwrap();
    assert_eq!(
        document.x509.roots().cloned().collect::<Vec<_>>(),
        w.dev.roots()
    );
    // Roots the certificate does not chain to.
    let error = client(w.dev.roots()).fetch().await.unwrap_err().to_string();
    assert!(
        error.contains("cannot fetch the bundle of fed.example"),
        "{error}"
    );
    task.abort();
    w.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_follows_a_ca_rotation_by_the_refresh_hint() {
    // The new root is published 3 s before SVIDs signed by it are used: longer than the
    // refresh hint, so the client knows it before the endpoint presents such an SVID.
    let w =
        world_with(DevServerOptions::default().with_ca_propagation(Duration::from_secs(3))).await;
    let (url, task) = w.serve_spiffe(Duration::from_secs(1)).await;
    let watched = FederatedBundle::watch(w.spiffe_client(&url, ENDPOINT_ID, w.bundle()));
    let mut changes = watched.changes();
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap();
    let first = watched.current().unwrap();
    assert_eq!(first.x509.roots().len(), 1);
    w.dev.rotate_ca().await;
    let started = Instant::now();
    let rotated = tokio::time::timeout(
        Duration::from_secs(10),
        changes.wait_for(|d| d.as_ref().is_some_and(|d| d.x509.roots().len() == 2)),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the new root within the refresh hint: {:?}",
            watched.last_error()
        )
    })
    .unwrap()
    .clone()
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(rotated.sequence.unwrap() > first.sequence.unwrap());
    // Past the propagation, the endpoint presents an SVID of the new CA: still fetched.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(watched.last_error().is_none(), "{:?}", watched.last_error());
    task.abort();
    w.dev.shutdown().await;
}

/// A plain server answering `documents` in turn (the last one again and again), over the
/// SVID, so the client's profile passes and only the documents differ.
async fn serve_documents(
    w: &World,
    documents: Vec<Value>,
) -> (String, tokio::task::JoinHandle<()>) {
    let config = tls::tls_server_config(Arc::clone(&w.source))
        .build()
        .unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let document = documents[index.min(documents.len() - 1)].clone();
            async move { axum::Json(document) }
        }),
    );
    serve_app(config, app).await
}

/// `app` served over TLS with `config` on loopback, clients anonymous: its URL.
async fn serve_app(
    config: ServerConfig,
    app: axum::Router,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/",
        listener.local_addr().unwrap().port()
    );
    let task = tokio::spawn(async move {
        let _ = net::HttpServer::new(listener, Arc::new(config))
            .allow_anonymous_clients()
            .serve(app)
            .await;
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_or_empty_document_is_refused_and_the_bundle_in_use_stays() {
    let w = world().await;
    let document = |sequence: Option<u64>, roots: bool| {
        let mut json = BundleDocument {
            x509: w.bundle(),
            jwt: None,
            sequence,
            refresh_hint: Some(Duration::from_secs(1)),
        }
        .to_json();
        if !roots {
            json["keys"] = json!([]);
        }
        json
    };
    // In turn: sequence 10; 9 (older); none (after one with a sequence); 11 with no root;
    // 10 again with another root (a forked copy).
    let mut forked = document(Some(10), true);
    forked["keys"] = BundleDocument {
        x509: DevCa::new("fed.example".parse().unwrap(), Duration::from_secs(600))
            .unwrap()
            .bundle(),
        jwt: None,
        sequence: None,
        refresh_hint: None,
    }
    .to_json()["keys"]
        .clone();
    let documents = vec![
        document(Some(10), true),
        document(Some(9), true),
        document(None, true),
        document(Some(11), false),
        forked,
    ];
    let (url, task) = serve_documents(&w, documents).await;
    let mut client = w.spiffe_client(&url, ENDPOINT_ID, w.bundle());
    assert_eq!(client.fetch().await.unwrap().sequence, Some(10));
    for expected in [
        "spiffe_sequence is Some(9), after 10",
        "spiffe_sequence is None, after 10",
        "no X.509 root",
    ] {
        let error = client.fetch().await.unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
    }
    // The watch keeps the bundle in use, and says why.
    let (url, task2) = serve_documents(
        &w,
        vec![
            document(Some(10), true),
            document(Some(9), false),
            document(None, true),
        ],
    )
    .await;
    let watched = FederatedBundle::watch(w.spiffe_client(&url, ENDPOINT_ID, w.bundle()));
    let mut changes = watched.changes();
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let current = watched.current().unwrap();
    assert_eq!(current.sequence, Some(10));
    assert_eq!(current.x509.roots().len(), 1);
    assert!(watched.last_error().is_some());
    task.abort();
    task2.abort();
    w.dev.shutdown().await;
}

#[test]
fn hostile_documents_are_refused_with_the_reason() {
    let td = || "fed.example".parse().unwrap();
    let parse = |text: &str| BundleDocument::parse(td(), text.as_bytes());
    assert!(matches!(
        parse(r#"{"keys": [], "spiffe_sequence": -1}"#),
        Err(DocumentError::Number("spiffe_sequence"))
    ));
    assert!(matches!(
        parse(r#"{"keys": [], "spiffe_refresh_hint": "60"}"#),
        Err(DocumentError::Number("spiffe_refresh_hint"))
    ));
    assert!(matches!(
        parse(r#"{"keys": [], "spiffe_refresh_hint": 1.5}"#),
        Err(DocumentError::Number(_))
    ));
    assert!(parse(r#"{"spiffe_sequence": 1}"#).is_err(), "no keys");
    assert!(parse(r#"{"keys": [{"use": "x509-svid", "x5c": []}]}"#).is_err());
    assert!(
        parse(r#"{"keys": [{"use": "jwt-svid", "kty": "EC"}]}"#).is_err(),
        "a JWT key without kid"
    );
    let huge = format!(
        r#"{{"keys": [], "pad": "{}"}}"#,
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    assert!(matches!(parse(&huge), Err(DocumentError::TooLarge)));
    // The good twin.
    let fine = parse(r#"{"keys": [], "spiffe_sequence": 1, "spiffe_refresh_hint": 60}"#).unwrap();
    assert_eq!(fine.sequence, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_bootstrap_takes_the_document_only_from_an_endpoint_of_the_pinned_root() {
    let genuine = world().await;
    let impostor = world().await;
    let pin = spiffe_mtls::crypto::sha256(genuine.dev.roots()[0].as_ref()).unwrap();
    let pinned = |url: &str| {
        BundleEndpointClient::new(
            url,
            "fed.example".parse().unwrap(),
            EndpointProfile::HttpsSpiffePinned {
                endpoint_id: ENDPOINT_ID.parse().unwrap(),
                root_sha256: pin,
            },
        )
    };
    // Another CA's endpoint (same trust domain name, same endpoint ID) serving a copy of the
    // genuine document, pinned root included: its SVID does not chain to that root.
    let copy = BundleDocument {
        x509: genuine.bundle(),
        jwt: None,
        sequence: Some(1),
        refresh_hint: None,
    }
    .to_json();
    let (copy_url, copy_task) = serve_documents(&impostor, vec![copy]).await;
    let error = pinned(&copy_url).fetch().await.unwrap_err().to_string();
    assert!(error.contains("against the pinned root"), "{error}");
    // Its own document does not hold the pinned root at all.
    let (own_url, own_task) = impostor.serve_spiffe(Duration::from_secs(60)).await;
    let error = pinned(&own_url).fetch().await.unwrap_err().to_string();
    assert!(error.contains("no root with the pinned SHA-256"), "{error}");
    // The good twin: the genuine endpoint, then its roots authenticate it.
    let (url, task) = genuine.serve_spiffe(Duration::from_secs(60)).await;
    let mut client = pinned(&url);
    let document = client.fetch().await.unwrap();
    assert_eq!(document.x509.roots().len(), 1);
    client.fetch().await.unwrap();
    for task in [copy_task, own_task, task] {
        task.abort();
    }
    genuine.dev.shutdown().await;
    impostor.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_bundle_of_the_local_trust_domain_is_refused() {
    let w = world().await;
    let other = DevCa::new("fed.example".parse().unwrap(), Duration::from_secs(600))
        .unwrap()
        .bundle();
    w.dev.set_federated(other, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    use spiffe_mtls::source::X509Source;
    let context = w.source.x509_context().unwrap();
    let local = context
        .bundles()
        .get(&"fed.example".parse().unwrap())
        .unwrap();
    assert_eq!(local.roots().cloned().collect::<Vec<_>>(), w.dev.roots());
    w.dev.shutdown().await;
}
