//! Discovery from a card URL: the example agent signs every card it serves with the SVID it
//! presents; `AgentClient::discover` believes a card only when its signature binds it to the
//! server it came from. Each refusal beside its good twin.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use spiffe_mtls::a2a::{
    AGENT_CARD_PATH, AgentClient, AgentClientError, CardDiscovery, CardSignatureError,
    MtlsAgentCard, SpiffeProfile, sign_card, verify_card,
};
use spiffe_mtls::source::X509Source;
use spiffe_mtls::{SpiffeId, authorize, net, tls};

use super::{IMPOSTOR, SERVER, World};

fn id(text: &str) -> SpiffeId {
    text.parse().unwrap()
}

fn as_client() -> CardDiscovery {
    CardDiscovery::new().svid_hint("client")
}

/// The card the agent serves for `version` (`None`: both dialects), as JSON.
async fn served_card(world: &World, version: Option<&str>) -> Value {
    let http = net::reqwest_client(world.config("client", SERVER)).unwrap();
    let mut request = http.get(format!("{}{AGENT_CARD_PATH}", world.server.base_url));
    if let Some(version) = version {
        request = request.header("A2A-Version", version);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The leaf certificate (DER) of a signed card's first signature.
fn signing_leaf(card: &Value) -> Vec<u8> {
    let protected = card["signatures"][0]["protected"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap();
    STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap()
}

fn leaf(world: &World, hint: &str) -> Vec<u8> {
    let context = world.source.x509_context().unwrap();
    context.svid_by_hint(hint).unwrap().leaf().to_vec()
}

/// A server presenting the SVID with `hint` that serves `card` at the card path; its base
/// URL.
fn card_server(world: &World, hint: &str, card: Value) -> (String, tokio::task::JoinHandle<()>) {
    serve(
        world,
        hint,
        axum::Router::new().route(
            AGENT_CARD_PATH,
            axum::routing::get(move || {
                let card = card.clone();
                async move { axum::Json(card) }
            }),
        ),
    )
}

/// A server presenting the SVID with `hint` that serves `app`; its base URL.
fn serve(world: &World, hint: &str, app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let config = tls::server_config(Arc::clone(&world.source), authorize::any())
        .svid_hint(hint)
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let task = tokio::spawn(async move {
        let _ = net::HttpServer::new(listener, Arc::new(config))
            .serve(app)
            .await;
    });
    (base, task)
}

fn refusal(result: Result<AgentClient, AgentClientError>) -> AgentClientError {
    match result {
        Ok(agent) => panic!("discovered {agent:?}"),
        Err(error) => error,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_discovers_the_agent_from_its_card_url_alone_and_calls_it() {
    let world = World::start().await;
    for url in [
        world.server.base_url.clone(),
        format!("{}{AGENT_CARD_PATH}", world.server.base_url),
    ] {
        let agent = AgentClient::discover_with(&url, Arc::clone(&world.source), as_client())
            .await
            .unwrap();
        assert_eq!(agent.server_id(), Some(&id(SERVER)));
        let profile = agent.profile().unwrap();
        assert_eq!(profile.spiffe_id(), &id(SERVER));
        assert_eq!(profile.trust_domain().as_str(), "example.org");
        assert_eq!(
            agent.send_text("found you", Some("echo")).await.unwrap(),
            "found you"
        );
    }
    // The same, expecting the agent by its ID.
    let agent = AgentClient::discover_with(
        &world.server.base_url,
        Arc::clone(&world.source),
        as_client().expect_id(id(SERVER)),
    )
    .await
    .unwrap();
    assert_eq!(agent.server_id(), Some(&id(SERVER)));
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_is_signed_by_the_svid_in_use_and_the_signature_follows_rotation() {
    let world = World::start().await;
    let bundles = world.source.x509_context().unwrap().bundles().clone();
    let first = leaf(&world, "server");
    for version in [None, Some("1.0"), Some("0.3")] {
        let card = served_card(&world, version).await;
        assert_eq!(signing_leaf(&card), first, "{version:?}");
        let signer = verify_card(&card, &bundles, &id(SERVER), SystemTime::now()).unwrap();
        assert_eq!(signer, id(SERVER));
        let profile = SpiffeProfile::from_card(&card).unwrap().unwrap();
        assert_eq!(profile.spiffe_id(), &id(SERVER), "{version:?}");
    }
    // v0.3 carries the profile in its own capabilities and its signature in `signatures`.
    let v03 = served_card(&world, Some("0.3")).await;
    assert_eq!(v03["protocolVersion"], "0.3.0");

    world.dev.rotate_svids().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while leaf(&world, "server") == first {
        assert!(
            Instant::now() < deadline,
            "the server's SVID did not rotate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rotated = leaf(&world, "server");
    for version in [None, Some("1.0"), Some("0.3")] {
        let card = served_card(&world, version).await;
        assert_eq!(signing_leaf(&card), rotated, "{version:?}");
        verify_card(&card, &bundles, &id(SERVER), SystemTime::now()).unwrap();
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_card_served_by_another_workload_of_the_trust_domain_is_refused() {
    let world = World::start().await;
    // The agent's own card, validly signed by its SVID, copied by another workload of
    // example.org that serves it as its own.
    let genuine = served_card(&world, Some("1.0")).await;
    let (impostor, task) = card_server(&world, "impostor", genuine.clone());
    let error = refusal(
        AgentClient::discover_with(&impostor, Arc::clone(&world.source), as_client()).await,
    );
    match &error {
        AgentClientError::Signature { error, .. } => match error.as_ref() {
            CardSignatureError::WrongSigner {
                signer, expected, ..
            } => {
                assert_eq!(**signer, id(SERVER));
                assert_eq!(**expected, id(IMPOSTOR));
            }
            other => panic!("{other}"),
        },
        other => panic!("{other}"),
    }
    assert!(
        error.to_string().contains(&format!("expected {IMPOSTOR}")),
        "{error}"
    );
    // Expecting the agent by its ID refuses the impostor in the handshake already.
    let error = refusal(
        AgentClient::discover_with(
            &impostor,
            Arc::clone(&world.source),
            as_client().expect_id(id(SERVER)),
        )
        .await,
    );
    assert!(matches!(error, AgentClientError::Fetch { .. }), "{error}");
    // The good twin: the same document from the agent itself.
    let (genuine_server, genuine_task) = card_server(&world, "server", genuine);
    AgentClient::discover_with(&genuine_server, Arc::clone(&world.source), as_client())
        .await
        .unwrap();
    task.abort();
    genuine_task.abort();
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_whose_profile_names_another_id_than_its_signer_is_refused() {
    let world = World::start().await;
    let context = world.source.x509_context().unwrap();
    let impostor_svid = context.svid_by_hint("impostor").unwrap();
    let card = |declared: &str| {
        let card = MtlsAgentCard::new("look-alike", "https://127.0.0.1:1/a2a")
            .server_id(id(declared))
            .v1_0_json();
        sign_card(&card, impostor_svid).unwrap()
    };
    // Signed by the impostor (which serves it), declaring the real agent: refused.
    let (lying, lying_task) = card_server(&world, "impostor", card(SERVER));
    let error =
        refusal(AgentClient::discover_with(&lying, Arc::clone(&world.source), as_client()).await);
    assert!(matches!(error, AgentClientError::Profile { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("declares {SERVER} but is signed by {IMPOSTOR}")),
        "{error}"
    );
    // The good twin: the impostor's card declaring itself is a valid card of another agent.
    let (honest, honest_task) = card_server(&world, "impostor", card(IMPOSTOR));
    let agent = AgentClient::discover_with(&honest, Arc::clone(&world.source), as_client())
        .await
        .unwrap();
    assert_eq!(agent.server_id(), Some(&id(IMPOSTOR)));
    // A card declaring no profile is refused too.
    let bare = sign_card(
        &MtlsAgentCard::new("bare", "https://127.0.0.1:1/a2a").v1_0_json(),
        impostor_svid,
    )
    .unwrap();
    let (bare, bare_task) = card_server(&world, "impostor", bare);
    let error =
        refusal(AgentClient::discover_with(&bare, Arc::clone(&world.source), as_client()).await);
    assert!(
        error.to_string().contains("declares no SPIFFE profile"),
        "{error}"
    );
    for task in [lying_task, honest_task, bare_task] {
        task.abort();
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_or_altered_card_is_refused_by_discovery() {
    let world = World::start().await;
    let genuine = served_card(&world, Some("1.0")).await;
    // Altered after signing: the endpoint moved elsewhere.
    let mut altered = genuine.clone();
    altered["supportedInterfaces"][0]["url"] = Value::from("https://127.0.0.1:9/a2a");
    let mut unsigned = genuine.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let (altered, altered_task) = card_server(&world, "server", altered);
    let (unsigned, unsigned_task) = card_server(&world, "server", unsigned);
    for (url, rule) in [
        (&altered, "does not verify over the card"),
        (&unsigned, "not signed"),
    ] {
        let error =
            refusal(AgentClient::discover_with(url, Arc::clone(&world.source), as_client()).await);
        assert!(
            matches!(error, AgentClientError::Signature { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(rule), "{rule}: {error}");
    }
    // `connect` (no discovery) reads the unsigned card: the config's authorizer decided.
    AgentClient::connect(world.config("client", SERVER), &unsigned)
        .await
        .unwrap();
    altered_task.abort();
    unsigned_task.abort();
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_the_real_agent_is_not_followed() {
    let world = World::start().await;
    // Another workload answers the card URL with a redirect to the real agent's card.
    let genuine = format!("{}{AGENT_CARD_PATH}", world.server.base_url);
    let (redirecting, task) = serve(
        &world,
        "impostor",
        axum::Router::new().route(
            AGENT_CARD_PATH,
            axum::routing::get(move || {
                let to = genuine.clone();
                async move { axum::response::Redirect::temporary(&to) }
            }),
        ),
    );
    let error = refusal(
        AgentClient::discover_with(&redirecting, Arc::clone(&world.source), as_client()).await,
    );
    assert!(matches!(error, AgentClientError::Fetch { .. }), "{error}");
    assert!(error.to_string().contains("HTTP 307"), "{error}");
    // The good twin: the real agent's own URL.
    AgentClient::discover_with(
        &world.server.base_url,
        Arc::clone(&world.source),
        as_client(),
    )
    .await
    .unwrap();
    task.abort();
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_with_a_number_outside_the_canonical_range_is_refused_without_a_panic() {
    let world = World::start().await;
    let context = world.source.x509_context().unwrap();
    let impostor_svid = context.svid_by_hint("impostor").unwrap();
    let card = MtlsAgentCard::new("numbers", "https://127.0.0.1:1/a2a")
        .server_id(id(IMPOSTOR))
        .v1_0_json();
    let signed = sign_card(&card, impostor_svid).unwrap();
    let mut hostile = signed.clone();
    hostile["x"] = serde_json::from_str("-9223372036854775808").unwrap();
    let (hostile, hostile_task) = card_server(&world, "impostor", hostile);
    let error =
        refusal(AgentClient::discover_with(&hostile, Arc::clone(&world.source), as_client()).await);
    assert!(error.to_string().contains("no canonical form"), "{error}");
    // The good twin: the card as signed.
    let (fine, fine_task) = card_server(&world, "impostor", signed);
    AgentClient::discover_with(&fine, Arc::clone(&world.source), as_client())
        .await
        .unwrap();
    hostile_task.abort();
    fine_task.abort();
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_takes_mutual_tls_from_the_signed_profile_not_the_unsigned_requirements() {
    let world = World::start().await;
    // A relay strips the security requirements (empty scope lists: outside the signature).
    let mut stripped = served_card(&world, Some("1.0")).await;
    stripped
        .as_object_mut()
        .unwrap()
        .remove("securityRequirements");
    for skill in stripped["skills"].as_array_mut().unwrap() {
        skill
            .as_object_mut()
            .unwrap()
            .remove("securityRequirements");
    }
    let (relay, task) = card_server(&world, "server", stripped);
    let agent = AgentClient::discover_with(&relay, Arc::clone(&world.source), as_client())
        .await
        .unwrap();
    // Calls are over mutual TLS to exactly the signed ID all the same.
    assert_eq!(agent.server_id(), Some(&id(SERVER)));
    assert_eq!(
        agent.send_text("still mTLS", Some("echo")).await.unwrap(),
        "still mTLS"
    );
    task.abort();
    world.stop().await;
}

#[test]
fn a_profile_member_a_signature_would_not_cover_is_refused() {
    let card = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a")
        .server_id(id(SERVER))
        .bundle_endpoint("https://example.org/bundle")
        .v1_0_json();
    assert!(SpiffeProfile::from_card(&card).unwrap().is_some());
    for empty in [Value::from(""), Value::Null, Value::from(3)] {
        let mut changed = card.clone();
        changed["capabilities"]["extensions"][0]["params"]["bundleEndpointUrl"] = empty.clone();
        assert!(SpiffeProfile::from_card(&changed).is_err(), "{empty}");
    }
    let mut twice = card.clone();
    let profile = twice["capabilities"]["extensions"][0].clone();
    twice["capabilities"]["extensions"]
        .as_array_mut()
        .unwrap()
        .push(profile);
    assert!(SpiffeProfile::from_card(&twice).is_err());
}
