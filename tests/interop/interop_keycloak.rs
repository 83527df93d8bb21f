//! A real Keycloak (26.5.6, its SPIFFE identity provider and federated client authenticator)
//! against this crate: agents get OAuth tokens with their JWT-SVID alone, Keycloak reading
//! the trust domain's keys from our bundle endpoint; per-skill scopes enforced by the agent;
//! bad JWT-SVIDs refused by Keycloak; a JWT key rotation; token exchange narrowing.
//!
//! `interop/keycloak.sh install` (cached) then `interop/keycloak.sh start DIR` start Keycloak
//! on loopback and write `DIR/keycloak.env`; these tests read its variables (`.ci/run` exports
//! them and runs `cargo test --test interop interop_keycloak:: -- --ignored`).
#![cfg(all(
    unix,
    feature = "oauth",
    feature = "federation",
    feature = "dev-server",
    feature = "a2a"
))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use spiffe_mtls::a2a::{self, AgentClient, AgentClientError};
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::JwtSource;
use spiffe_mtls::oauth::{
    AccessTokenValidator, AssertionFuture, AuthorizationServer, AuthorizationServerHttp,
    ClientAuth, JwtSvidAssertions, JwtSvidsOf, OAuthError, TokenClient,
};
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Policy, SpiffeId, authorize, net, tls};

use crate::agents;
use crate::keycloak::Keycloak;

/// Why these tests are ignored by a plain `cargo test` (the attributes repeat it: `ignore`
/// takes a literal).
const IGNORE: &str = "needs Keycloak: interop/keycloak.sh install, then interop/keycloak.sh start DIR and its keycloak.env exported; .ci/run does both and runs these with --ignored";

const TRUST_DOMAIN: &str = "agents.example";
const SERVER: &str = "spiffe://agents.example/agent/server";
const SUMMARIZER: &str = "spiffe://agents.example/agent/summarizer";
const READER: &str = "spiffe://agents.example/agent/reader";

fn keycloak() -> Keycloak {
    Keycloak::from_env().unwrap_or_else(|| panic!("no KEYCLOAK_* variables: {IGNORE}"))
}

/// A fixed assertion (a token made to break a rule).
#[derive(Debug)]
struct Fixed(String);

impl JwtSvidAssertions for Fixed {
    fn jwt_svid<'a>(&'a self, _: &'a str) -> AssertionFuture<'a> {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// A dev server for `trust_domain` with entries `(id, hint, ttl)`, all for this process.
async fn dev_server(
    dir: &std::path::Path,
    trust_domain: &str,
    entries: &[(&str, &str, &str)],
) -> DevServer {
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid()
    };
    let mut config = format!("trust_domain = \"{trust_domain}\"\n");
    for (id, hint, ttl) in entries {
        config.push_str(&format!(
            "[[entry]]\nspiffe_id = \"{id}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"{hint}\"\nttl = \"{ttl}\"\ndns_names = [\"localhost\"]\n"
        ));
    }
    DevServer::start(
        DevServerConfig::from_toml(&config).unwrap(),
        EndpointAddress::Unix(dir.join(format!("{trust_domain}.sock"))),
        DevServerOptions::default(),
    )
    .await
    .unwrap()
}

/// Everything a test needs: the dev server, its sources, our bundle endpoint (https_web with
/// the certificate Keycloak trusts), and a realm.
struct World {
    _dir: tempfile::TempDir,
    dev: DevServer,
    x509: Arc<WorkloadApiSource>,
    jwt: Arc<JwtSource>,
    issuer: String,
    endpoint: tokio::task::JoinHandle<()>,
}

impl World {
    async fn start(svid_ttl: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dev = dev_server(
            dir.path(),
            TRUST_DOMAIN,
            &[
                (SERVER, "server", svid_ttl),
                (SUMMARIZER, "summarizer", svid_ttl),
                (READER, "reader", svid_ttl),
            ],
        )
        .await;
        let x509 = Arc::new(
            WorkloadApiSource::connect(dev.address().clone())
                .await
                .unwrap(),
        );
        let jwt = Arc::new(JwtSource::connect(dev.address().clone()).await.unwrap());
        let keycloak = keycloak();
        let (bundle_url, endpoint) = keycloak
            .serve_bundle_endpoint(x509.clone(), jwt.clone())
            .await
            .unwrap();
        let issuer = keycloak
            .realm(
                TRUST_DOMAIN,
                &bundle_url,
                SERVER,
                &[
                    ("summarizer", SUMMARIZER, &["agent:execute", "data:pii"]),
                    ("reader", READER, &["agent:execute"]),
                ],
            )
            .await
            .unwrap();
        Self {
            _dir: dir,
            dev,
            x509,
            jwt,
            issuer,
            endpoint,
        }
    }

    async fn server(&self) -> (AuthorizationServerHttp, AuthorizationServer) {
        let http = AuthorizationServerHttp::new([]).unwrap();
        let server = AuthorizationServer::discover(&http, &self.issuer)
            .await
            .unwrap();
        (http, server)
    }

    async fn tokens(&self, id: &str) -> TokenClient {
        let (http, server) = self.server().await;
        let assertions = JwtSvidsOf::new(Arc::clone(&self.jwt), id.parse().unwrap());
        TokenClient::new(http, server, ClientAuth::JwtSvid(Arc::new(assertions)))
    }

    async fn fixed(&self, token: String) -> TokenClient {
        let (http, server) = self.server().await;
        TokenClient::new(http, server, ClientAuth::JwtSvid(Arc::new(Fixed(token))))
    }

    /// The agent server ([`agents::start_oauth_agent_server`]) with Keycloak's tokens
    /// validated for its own audience.
    async fn agent_server(&self) -> agents::AgentServer {
        let (http, server) = self.server().await;
        let token_url = server.token_endpoint().to_owned();
        let validator = AccessTokenValidator::new(http, server).audience(SERVER);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let policy = Policy::from_toml(&format!(
            "[connect]\ntrust_domains = [\"{TRUST_DOMAIN}\"]\n[routes.echo]\ntrust_domains = [\"{TRUST_DOMAIN}\"]\n[routes.secret]\ntrust_domains = [\"{TRUST_DOMAIN}\"]\n"
        ))
        .unwrap();
        agents::start_oauth_agent_server(
            self.x509.clone(),
            "server",
            listener,
            "127.0.0.1",
            policy,
            &token_url,
            validator,
        )
        .unwrap()
    }

    /// An A2A client as `hint` over mutual TLS, sending `token` as its bearer.
    async fn agent_client(&self, base: &str, hint: &str, token: &str) -> AgentClient {
        let config = tls::client_config(
            Arc::clone(&self.x509),
            authorize::id(SERVER.parse().unwrap()),
        )
        .svid_hint(hint)
        .build()
        .unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let http = net::reqwest_builder(config)
            .default_headers(headers)
            .build()
            .unwrap();
        AgentClient::with_client(http, base).await.unwrap()
    }

    async fn stop(self) {
        self.endpoint.abort();
        self.dev.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Keycloak: interop/keycloak.sh install, then interop/keycloak.sh start DIR and its keycloak.env exported; .ci/run does both and runs these with --ignored"]
async fn an_agent_gets_a_token_with_its_jwt_svid_alone_and_each_skill_needs_its_scopes() {
    let w = World::start("10m").await;
    let server = w.agent_server().await;
    let base = server.base_url.clone();
    let summarizer = w.tokens(SUMMARIZER).await;
    let started = Instant::now();
    let execute = summarizer.token(&["agent:execute"]).await.unwrap();
    println!(
        "token with the JWT-SVID alone in {:?}: scopes {:?}",
        started.elapsed(),
        execute.scopes
    );
    assert_eq!(execute.scopes, ["agent:execute"]);

    // The allowed skill.
    let agent = w.agent_client(&base, "summarizer", &execute.token).await;
    assert_eq!(
        agent.send_text("hello", Some("echo")).await.unwrap(),
        "hello"
    );
    // The data:pii skill, refused without that scope, naming it.
    match agent.send_text("who?", Some("secret")).await {
        Err(AgentClientError::Refused { message, .. }) => {
            assert_eq!(message, r#"skill "secret" needs the scope data:pii"#);
        }
        other => panic!("{other:?}"),
    }
    // With it, allowed.
    let both = summarizer
        .token(&["agent:execute", "data:pii"])
        .await
        .unwrap();
    let agent = w.agent_client(&base, "summarizer", &both.token).await;
    assert_eq!(
        agent.send_text("who?", Some("secret")).await.unwrap(),
        agents::SECRET
    );
    // The reader may not even ask for data:pii: Keycloak refuses the scope.
    let reader = w.tokens(READER).await;
    let error = reader
        .token(&["agent:execute", "data:pii"])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid_scope"), "{error}");
    // The card declares the scheme with Keycloak's token URL and the per-skill scopes.
    let card = agent.card();
    assert!(matches!(
        card.security_schemes.as_ref().unwrap()["oauth2"],
        a2a::protocol::SecurityScheme::OAuth2(_)
    ));
    server.stop();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Keycloak: interop/keycloak.sh install, then interop/keycloak.sh start DIR and its keycloak.env exported; .ci/run does both and runs these with --ignored"]
async fn keycloak_refuses_a_jwt_svid_of_another_trust_domain_expired_or_for_another_audience() {
    // SVIDs of 4 s: a JWT-SVID expires soon enough to be used expired.
    let w = World::start("4s").await;
    let issuer = w.issuer.clone();
    let summarizer: SpiffeId = SUMMARIZER.parse().unwrap();
    let refused = |result: Result<_, OAuthError>| match result {
        Err(OAuthError::Refused {
            status,
            error,
            description,
        }) => {
            assert_eq!(error, "invalid_client", "{description:?}");
            format!("HTTP {status} {error}: {}", description.unwrap_or_default())
        }
        other => panic!("not refused: {other:?}"),
    };
    // The good twin: a fresh JWT-SVID of the summarizer for the issuer.
    let fresh = w
        .jwt
        .fetch_svid_of(std::slice::from_ref(&issuer), Some(&summarizer))
        .await
        .unwrap();
    w.fixed(fresh.token().to_owned())
        .await
        .token(&["agent:execute"])
        .await
        .unwrap();

    // Another trust domain (another dev server, same path), for the right audience.
    let other_dir = tempfile::tempdir().unwrap();
    let other = dev_server(
        other_dir.path(),
        "other.example",
        &[("spiffe://other.example/agent/summarizer", "x", "10m")],
    )
    .await;
    let other_jwt = JwtSource::connect(other.address().clone()).await.unwrap();
    let foreign = other_jwt
        .fetch_svid(std::slice::from_ref(&issuer))
        .await
        .unwrap()
        .token()
        .to_owned();
    let said = refused(w.fixed(foreign).await.token(&["agent:execute"]).await);
    println!("another trust domain: {said}");
    // Another audience.
    let elsewhere = w
        .jwt
        .fetch_svid_of(&["https://elsewhere.example".to_owned()], Some(&summarizer))
        .await
        .unwrap()
        .token()
        .to_owned();
    let said = refused(w.fixed(elsewhere).await.token(&["agent:execute"]).await);
    println!("another audience: {said}");
    // Expired: the fresh one above, once past its expiry.
    let wait = fresh
        .expires_at()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1500)).await;
    let said = refused(
        w.fixed(fresh.token().to_owned())
            .await
            .token(&["agent:execute"])
            .await,
    );
    println!("expired: {said}");
    other.shutdown().await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Keycloak: interop/keycloak.sh install, then interop/keycloak.sh start DIR and its keycloak.env exported; .ci/run does both and runs these with --ignored"]
async fn after_the_jwt_key_rotates_the_next_token_request_succeeds() {
    let w = World::start("10m").await;
    let issuer = w.issuer.clone();
    let summarizer: SpiffeId = SUMMARIZER.parse().unwrap();
    let kid = |token: &str| {
        use base64::Engine as _;
        let header = token.split('.').next().unwrap_or_default();
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap_or_default().to_owned()
    };
    let before = w
        .jwt
        .fetch_svid_of(std::slice::from_ref(&issuer), Some(&summarizer))
        .await
        .unwrap();
    w.fixed(before.token().to_owned())
        .await
        .token(&["agent:execute"])
        .await
        .unwrap();
    // A CA rotation brings a new JWT key: published in the bundle at once, signing after the
    // propagation delay (1 s).
    w.dev.rotate_ca().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let rotated = loop {
        // A new source: a fresh token, not the cached one.
        let fresh_source = JwtSource::connect(w.dev.address().clone()).await.unwrap();
        let token = fresh_source
            .fetch_svid_of(std::slice::from_ref(&issuer), Some(&summarizer))
            .await
            .unwrap()
            .token()
            .to_owned();
        if kid(&token) != kid(before.token()) {
            break token;
        }
        assert!(Instant::now() < deadline, "no token signed by the new key");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Keycloak has the old keys cached: it fetches our bundle endpoint again for the new kid
    // (it spaces such fetches out, so allow it some tries).
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(40) {
        match w
            .fixed(rotated.clone())
            .await
            .token(&["agent:execute"])
            .await
        {
            Ok(token) => {
                println!(
                    "a token with the rotated JWT key after {:?} ({} refused before)",
                    started.elapsed(),
                    last.as_ref()
                        .map_or("none".to_owned(), |e: &OAuthError| e.to_string())
                );
                assert_eq!(token.scopes, ["agent:execute"]);
                w.stop().await;
                return;
            }
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no token with the rotated key within 40 s: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Keycloak: interop/keycloak.sh install, then interop/keycloak.sh start DIR and its keycloak.env exported; .ci/run does both and runs these with --ignored"]
async fn token_exchange_narrows_a_token_and_cannot_widen_it() {
    let w = World::start("10m").await;
    let summarizer = w.tokens(SUMMARIZER).await;
    let broad = summarizer
        .token(&["agent:execute", "data:pii"])
        .await
        .unwrap();
    let narrow = summarizer
        .exchange(&broad.token, &["agent:execute"], None)
        .await
        .unwrap();
    assert_eq!(narrow.scopes, ["agent:execute"]);
    // Keycloak signed it (the exchanged token's audience is the exchanging client's, not the
    // resource server's custom one: a next hop names itself with `audience`).
    let (http, server) = w.server().await;
    let verified = AccessTokenValidator::new(http, server)
        .any_audience()
        .validate(&narrow.token)
        .await
        .unwrap();
    println!(
        "exchanged token: aud {:?}, scope {:?}",
        verified.claims().get("aud"),
        verified.scopes()
    );
    assert!(verified.has_scope("agent:execute") && !verified.has_scope("data:pii"));
    // Widening is refused (the realm's downscope-only policy).
    let error = summarizer
        .exchange(&narrow.token, &["data:pii"], None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid_scope"), "{error}");
    println!("widening refused: {error}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Keycloak: interop/keycloak.sh install, then interop/keycloak.sh start DIR and its keycloak.env exported; .ci/run does both and runs these with --ignored"]
async fn agents_demo_oauth_shows_the_three_levels_side_by_side() {
    let mut lines = Vec::new();
    let summary = crate::oauth_demo::run_oauth(&mut |line| lines.push(line))
        .await
        .unwrap();
    let text = lines.join("\n");
    assert!(summary.ok(), "{summary:?}\n{text}");
    for expected in [
        "level 1, mutual TLS: ",
        "level 2, JWT-SVID bearer: ",
        "level 3, OAuth: a token for [\"agent:execute\"] with the JWT-SVID as client assertion; skill echo answered \"hello\"",
        "level 3, OAuth: skill secret refused: skill \"secret\" needs the scope data:pii",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
    assert!(!text.contains("FAILED"), "{text}");
}
