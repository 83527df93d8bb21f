//! OAuth for agents against an in-process authorization server that does what the SPIFFE
//! client-authentication draft says (the real Keycloak is in `tests/interop/`): the agent
//! gets tokens with its JWT-SVID alone, cached per scope set and replaced before expiry;
//! token exchange narrows; the resource server validates tokens and requires scopes, each
//! rule broken beside its good twin.
#![cfg(all(unix, feature = "oauth", feature = "dev-server"))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::{Algorithm, JwtSigner, JwtSource, JwtSvidValidator};
use spiffe_mtls::oauth::{
    AccessTokenValidator, AuthorizationServer, AuthorizationServerHttp, ClientAuth,
    JWT_SPIFFE_ASSERTION_TYPE, OAuthError, OAuthLayer, TokenClient, VerifiedAccessToken,
};
use spiffe_mtls::workload::EndpointAddress;
use tower::ServiceExt as _;

use crate::common;

const AGENT: &str = "spiffe://oauth.example/agent/summarizer";

/// The authorization server's state: its signing key, what it grants, what it saw.
struct Authority {
    issuer: String,
    dev: DevServer,
    signer: Mutex<JwtSigner>,
    /// The scopes each SPIFFE ID may have.
    allowed: HashMap<String, Vec<String>>,
    lifetime: Mutex<u64>,
    requests: AtomicUsize,
    key_fetches: AtomicUsize,
}

fn new_signer() -> JwtSigner {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let kid: String = key.public_key_raw()[1..9]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    JwtSigner::new(
        spiffe_mtls::rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        Algorithm::ES256,
        kid,
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn oauth_error(
    status: u16,
    error: &str,
    description: &str,
) -> (axum::http::StatusCode, Json<Value>) {
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": error, "error_description": description})),
    )
}

async fn token_endpoint(
    State(authority): State<Arc<Authority>>,
    Form(form): Form<HashMap<String, String>>,
) -> (axum::http::StatusCode, Json<Value>) {
    authority.requests.fetch_add(1, Ordering::SeqCst);
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_SPIFFE_ASSERTION_TYPE) {
        return oauth_error(
            401,
            "invalid_client",
            "a JWT-SVID client assertion is required",
        );
    }
    let assertion = form.get("client_assertion").cloned().unwrap_or_default();
    let mut bundles = spiffe_mtls::jwt::JwtBundleSet::new();
    bundles.insert(authority.dev.jwt_bundle().unwrap());
    let svid =
        match JwtSvidValidator::new()
            .unwrap()
            .validate(&assertion, &authority.issuer, &bundles)
        {
            Ok(svid) => svid,
            Err(error) => return oauth_error(401, "invalid_client", &error.to_string()),
        };
    let client = svid.spiffe_id().to_string();
    let allowed = authority.allowed.get(&client).cloned().unwrap_or_default();
    let asked: Vec<String> = form
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let granted = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => asked.clone(),
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => {
            // Narrowing only: the scopes asked must all be in the subject token.
            let subject = form.get("subject_token").cloned().unwrap_or_default();
            let had = claims_of(&subject)["scope"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(extra) = asked
                .iter()
                .find(|s| !had.split(' ').any(|h| h == s.as_str()))
            {
                return oauth_error(
                    400,
                    "invalid_scope",
                    &format!("{extra} not in the subject token"),
                );
            }
            asked.clone()
        }
        _ => return oauth_error(400, "unsupported_grant_type", "?"),
    };
    if let Some(scope) = granted.iter().find(|s| !allowed.contains(s)) {
        return oauth_error(400, "invalid_scope", &format!("Invalid scopes: {scope}"));
    }
    let lifetime = *authority.lifetime.lock().unwrap();
    let token = authority
        .signer
        .lock()
        .unwrap()
        .sign_claims(&json!({
            "iss": authority.issuer, "sub": client, "client_id": client,
            "aud": "spiffe://oauth.example/agent/server",
            "scope": granted.join(" "), "exp": now() + lifetime, "iat": now(),
        }))
        .unwrap();
    (
        axum::http::StatusCode::OK,
        Json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": granted.join(" ")}),
        ),
    )
}

/// The claims of a token, unverified (the test server's own tokens).
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

struct World {
    _dir: tempfile::TempDir,
    authority: Arc<Authority>,
    server: AuthorizationServer,
    svids: Arc<JwtSource>,
    task: tokio::task::JoinHandle<()>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "trust_domain = \"oauth.example\"\n[[entry]]\nspiffe_id = \"{AGENT}\"\nselectors = [\"unix:uid:{}\"]\n",
        common::my_uid()
    );
    let dev = DevServer::start(
        DevServerConfig::from_toml(&config).unwrap(),
        EndpointAddress::Unix(dir.path().join("agent.sock")),
        DevServerOptions::default(),
    )
    .await
    .unwrap();
    let svids = Arc::new(JwtSource::connect(dev.address().clone()).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let issuer = format!("{base}/realms/agents");
    let authority = Arc::new(Authority {
        issuer: issuer.clone(),
        dev,
        signer: Mutex::new(new_signer()),
        allowed: HashMap::from([(
            AGENT.to_owned(),
            vec!["agent:execute".to_owned(), "data:pii".to_owned()],
        )]),
        lifetime: Mutex::new(300),
        requests: AtomicUsize::new(0),
        key_fetches: AtomicUsize::new(0),
    });
    let metadata = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/certs"),
    });
    let certs = Arc::clone(&authority);
    let app = Router::new()
        .route(
            "/realms/agents/.well-known/openid-configuration",
            get(move || {
                let metadata = metadata.clone();
                async move { Json(metadata) }
            }),
        )
        .route(
            "/realms/agents/certs",
            get(move || {
                certs.key_fetches.fetch_add(1, Ordering::SeqCst);
                let key = certs.signer.lock().unwrap().public_key().to_jwk();
                async move {
                    let mut key = key;
                    key["use"] = json!("sig");
                    Json(json!({"keys": [key, {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"}]}))
                }
            }),
        )
        .route("/realms/agents/token", post(token_endpoint))
        .with_state(Arc::clone(&authority));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = AuthorizationServerHttp::new([]).unwrap();
    let server = AuthorizationServer::discover(&http, &issuer).await.unwrap();
    World {
        _dir: dir,
        authority,
        server,
        svids,
        task,
    }
}

impl World {
    fn client(&self) -> TokenClient {
        TokenClient::new(
            AuthorizationServerHttp::new([]).unwrap(),
            self.server.clone(),
            ClientAuth::JwtSvid(self.svids.clone()),
        )
    }

    /// A validator accepting any audience (the tests of `aud` set their own).
    fn validator(&self) -> AccessTokenValidator {
        AccessTokenValidator::new(
            AuthorizationServerHttp::new([]).unwrap(),
            self.server.clone(),
        )
        .any_audience()
    }

    async fn stop(self) {
        self.task.abort();
        if let Ok(authority) = Arc::try_unwrap(self.authority) {
            authority.dev.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gets_scoped_tokens_with_its_jwt_svid_alone_cached_per_scope_set() {
    let w = world().await;
    assert!(w.server.token_endpoint().ends_with("/realms/agents/token"));
    let client = w.client();
    let token = client.token(&["agent:execute"]).await.unwrap();
    assert_eq!(token.scopes, ["agent:execute"]);
    assert_eq!(claims_of(&token.token)["sub"], AGENT);
    assert_eq!(w.authority.requests.load(Ordering::SeqCst), 1);
    // The same scope set, in another order or repeated: from the cache.
    let again = client
        .token(&["agent:execute", "agent:execute"])
        .await
        .unwrap();
    assert_eq!(again.token, token.token);
    assert_eq!(w.authority.requests.load(Ordering::SeqCst), 1);
    // Another scope set: another token.
    let both = client.token(&["data:pii", "agent:execute"]).await.unwrap();
    assert_eq!(both.scopes, ["agent:execute", "data:pii"]);
    assert_eq!(w.authority.requests.load(Ordering::SeqCst), 2);
    // A scope the client may not have: the server's refusal, in its words.
    let error = client.token(&["admin:all"]).await.unwrap_err();
    assert!(
        matches!(&error, OAuthError::Refused { status: 400, error, .. } if error == "invalid_scope"),
        "{error}"
    );
    assert!(
        error.to_string().contains("Invalid scopes: admin:all"),
        "{error}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifetime_of_ages_is_cut_to_a_day_without_a_panic() {
    let w = world().await;
    *w.authority.lifetime.lock().unwrap() = u64::MAX / 2;
    let token = w.client().token(&["agent:execute"]).await.unwrap();
    let left = token.expires_at.duration_since(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(24 * 3600), "{left:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_replaced_before_it_expires() {
    let w = world().await;
    *w.authority.lifetime.lock().unwrap() = 2;
    let client = w.client();
    let first = client.token(&["agent:execute"]).await.unwrap();
    assert_eq!(
        client.token(&["agent:execute"]).await.unwrap().token,
        first.token
    );
    // A 2 s token is replaced at half its lifetime (less than the 60 s margin).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = client.token(&["agent:execute"]).await.unwrap();
    assert_ne!(second.token, first.token);
    assert_eq!(w.authority.requests.load(Ordering::SeqCst), 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_narrows_and_cannot_widen() {
    let w = world().await;
    let client = w.client();
    let broad = client.token(&["agent:execute", "data:pii"]).await.unwrap();
    let narrow = client
        .exchange(&broad.token, &["agent:execute"], None)
        .await
        .unwrap();
    assert_eq!(narrow.scopes, ["agent:execute"]);
    assert_eq!(claims_of(&narrow.token)["scope"], "agent:execute");
    let error = client
        .exchange(&narrow.token, &["data:pii"], None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid_scope"), "{error}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_server_validates_tokens_rule_by_rule() {
    let w = world().await;
    let validator = w
        .validator()
        .audience("spiffe://oauth.example/agent/server");
    let good = w.client().token(&["agent:execute"]).await.unwrap().token;
    let verified = validator.validate(&good).await.unwrap();
    assert_eq!(verified.client_id(), Some(AGENT));
    assert!(verified.has_scope("agent:execute") && !verified.has_scope("data:pii"));

    let signer = w.authority.signer.lock().unwrap().kid().to_owned();
    let claims = claims_of(&good);
    let sign = |claims: &Value| {
        w.authority
            .signer
            .lock()
            .unwrap()
            .sign_claims(claims)
            .unwrap()
    };
    let with = |name: &str, value: Value| {
        let mut changed = claims.clone();
        changed[name] = value;
        sign(&changed)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", with("exp", json!(now() - 120)), "exp"),
        (
            "another issuer",
            with("iss", json!("http://127.0.0.1:1/realms/other")),
            "iss",
        ),
        (
            "another audience",
            with("aud", json!("spiffe://oauth.example/other")),
            "aud",
        ),
        ("not yet valid", with("nbf", json!(now() + 3600)), "nbf"),
        (
            "tampered",
            {
                let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
                let mut changed = claims.clone();
                changed["scope"] = json!("agent:execute data:pii");
                use base64::Engine as _;
                parts[1] =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(changed.to_string());
                parts.join(".")
            },
            "signature",
        ),
        (
            "alg none",
            {
                use base64::Engine as _;
                let b64 = |v: &Value| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                };
                format!(
                    "{}.{}.",
                    b64(&json!({"alg": "none", "kid": signer})),
                    b64(&claims)
                )
            },
            "alg",
        ),
        (
            "a key in the header",
            {
                let header = json!({"alg": "ES256", "kid": signer, "jwk": {"kty": "EC"}});
                w.authority
                    .signer
                    .lock()
                    .unwrap()
                    .sign_parts(&header.to_string(), &claims.to_string())
                    .unwrap()
            },
            "header",
        ),
        (
            "unknown key",
            new_signer().sign_claims(&claims).unwrap(),
            "kid",
        ),
        ("garbage", "a.b".to_owned(), "format"),
    ];
    for (name, token, rule) in cases {
        let error = validator.validate(&token).await.unwrap_err();
        assert_eq!(error.rule(), rule, "{name}: {error}");
    }
    let more: Vec<(&str, String, &str)> = vec![
        ("an ID token", with("typ", json!("ID")), "format"),
        (
            "an ID token without typ",
            with("nonce", json!("n-0S6_WzA2Mj")),
            "format",
        ),
        ("a refresh token", with("typ", json!("Refresh")), "format"),
        ("a lifetime of ages", with("exp", json!(u64::MAX)), "format"),
        (
            "another header type",
            {
                let header = json!({"alg": "ES256", "kid": signer, "typ": "dpop+jwt"});
                w.authority
                    .signer
                    .lock()
                    .unwrap()
                    .sign_parts(&header.to_string(), &claims.to_string())
                    .unwrap()
            },
            "header",
        ),
    ];
    for (name, token, rule) in more {
        let error = validator.validate(&token).await.unwrap_err();
        assert_eq!(error.rule(), rule, "{name}: {error}");
    }
    // With `any_audience`, `aud` is not checked (the good twin of "another audience");
    // with neither it nor `audience`, nothing is accepted.
    w.validator()
        .validate(&with("aud", json!("spiffe://oauth.example/other")))
        .await
        .unwrap();
    let unset =
        AccessTokenValidator::new(AuthorizationServerHttp::new([]).unwrap(), w.server.clone());
    assert_eq!(unset.validate(&good).await.unwrap_err().rule(), "aud");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_again() {
    let w = world().await;
    let validator = w.validator();
    let client = w.client();
    validator
        .validate(&client.token(&["agent:execute"]).await.unwrap().token)
        .await
        .unwrap();
    // The server rotates its key: the next token has a kid the validator has not seen.
    *w.authority.signer.lock().unwrap() = new_signer();
    client.clear();
    let rotated = client.token(&["agent:execute"]).await.unwrap().token;
    // A second after the last fetch, the keys are fetched again and the new one found.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    validator.validate(&rotated).await.unwrap();
    // A key the issuer withdrew stops working once the keys are older than their maximum
    // age: tokens signed with it (its kid is known) are refused after the next fetch.
    let aging = w.validator().keys_max_age(Duration::from_secs(1));
    aging.validate(&rotated).await.unwrap();
    let withdrawn = w
        .authority
        .signer
        .lock()
        .unwrap()
        .sign_claims(&claims_of(&rotated))
        .unwrap();
    *w.authority.signer.lock().unwrap() = new_signer();
    aging.validate(&withdrawn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(aging.validate(&withdrawn).await.unwrap_err().rule(), "kid");
    // A flood of made-up kids costs the issuer a fetch a second at most.
    let fetches = w.authority.key_fetches.load(Ordering::SeqCst);
    for _ in 0..20 {
        let made_up = new_signer().sign_claims(&claims_of(&rotated)).unwrap();
        assert_eq!(
            validator.validate(&made_up).await.unwrap_err().rule(),
            "kid"
        );
    }
    let more = w.authority.key_fetches.load(Ordering::SeqCst) - fetches;
    assert!(more <= 2, "{more} fetches for 20 made-up kids");
    w.stop().await;
}

async fn call(app: &Router, token: Option<&str>, extra: &[(&str, &str)]) -> (u16, String, String) {
    let mut request = axum::http::Request::get("/a2a");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
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
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (
        status,
        challenge,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_layer_requires_a_valid_token_with_the_scopes() {
    let w = world().await;
    let app = Router::new()
        .route(
            "/a2a",
            get(
                |axum::Extension(token): axum::Extension<VerifiedAccessToken>,
                 headers: axum::http::HeaderMap| async move {
                    let scope = headers
                        .get(spiffe_mtls::oauth::SCOPE_HEADER)
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    format!("{} {scope}", token.client_id().unwrap_or_default())
                },
            ),
        )
        .layer(OAuthLayer::new(Arc::new(w.validator())).require_scopes(["data:pii"]));
    let client = w.client();
    let narrow = client.token(&["agent:execute"]).await.unwrap().token;
    let broad = client
        .token(&["agent:execute", "data:pii"])
        .await
        .unwrap()
        .token;

    let (status, challenge, _) = call(&app, None, &[]).await;
    assert_eq!((status, challenge.as_str()), (401, "Bearer"));
    let (status, challenge, body) = call(&app, Some("not.a.token"), &[]).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(body.contains("invalid access token"), "{body}");
    let (status, challenge, body) = call(&app, Some(&narrow), &[]).await;
    assert_eq!(status, 403);
    assert!(
        challenge.contains("error=\"insufficient_scope\", scope=\"data:pii\""),
        "{challenge}"
    );
    assert_eq!(body, "forbidden: the token lacks the scope data:pii\n");
    // The good twin; a client's own scope header is replaced by the token's.
    let (status, _, body) = call(&app, Some(&broad), &[("x-oauth-scope", "admin:all")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("{AGENT} agent:execute data:pii"));

    // Optional: no token passes with no scopes (what runs behind decides); a bad one does not.
    let open = Router::new()
        .route(
            "/a2a",
            get(|headers: axum::http::HeaderMap| async move {
                format!("scopes {:?}", headers.get("x-oauth-scope"))
            }),
        )
        .layer(OAuthLayer::new(Arc::new(w.validator())).optional());
    let (status, _, body) = call(&open, None, &[("x-oauth-scope", "data:pii")]).await;
    assert_eq!((status, body.as_str()), (200, "scopes None"));
    let (status, _, _) = call(&open, Some("not.a.token"), &[]).await;
    assert_eq!(status, 401);
    // Keys that cannot be fetched: the client is told the rule, not the server's internals.
    let unreachable = AuthorizationServer::new(
        w.server.issuer(),
        w.server.token_endpoint(),
        "http://127.0.0.1:1/internal/realm-keys/certs",
    );
    let blind = Router::new()
        .route("/a2a", get(|| async { "in" }))
        .layer(OAuthLayer::new(Arc::new(
            AccessTokenValidator::new(AuthorizationServerHttp::new([]).unwrap(), unreachable)
                .any_audience(),
        )));
    let (status, challenge, body) = call(&blind, Some(&broad), &[]).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("access token rule: jwks"), "{challenge}");
    assert!(
        !body.contains("127.0.0.1") && !body.contains("internal"),
        "{body}"
    );
    // Optional with required scopes: no token is still refused.
    let strict = Router::new().route("/a2a", get(|| async { "in" })).layer(
        OAuthLayer::new(Arc::new(w.validator()))
            .optional()
            .require_scopes(["data:pii"]),
    );
    let (status, _, _) = call(&strict, None, &[]).await;
    assert_eq!(status, 401);
    w.stop().await;
}

#[tokio::test]
async fn an_authorization_server_over_plain_http_is_refused_unless_on_loopback() {
    let http = AuthorizationServerHttp::new([]).unwrap();
    let error = AuthorizationServer::discover(&http, "http://auth.example.org/realms/agents")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not https://"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_layer_and_the_reqwest_helper_attach_a_cached_token() {
    let w = world().await;
    let client = Arc::new(w.client());
    let echo = tower::service_fn(|request: axum::http::Request<()>| async move {
        let header = request
            .headers()
            .get("authorization")
            .map(|v| (v.to_str().unwrap().to_owned(), v.is_sensitive()));
        Ok::<_, OAuthError>(header)
    });
    let service = tower::ServiceBuilder::new()
        .layer(spiffe_mtls::oauth::OAuthBearerLayer::new(
            Arc::clone(&client),
            ["agent:execute"],
        ))
        .service(echo);
    let (header, sensitive) = service
        .clone()
        .oneshot(axum::http::Request::new(()))
        .await
        .unwrap()
        .unwrap();
    let token = header.strip_prefix("Bearer ").unwrap();
    assert_eq!(claims_of(token)["scope"], "agent:execute");
    assert!(sensitive, "the token is marked sensitive");
    // The reqwest helper: the same cached token.
    let request = spiffe_mtls::oauth::bearer(
        reqwest_client().get("http://127.0.0.1:1/"),
        &client,
        &["agent:execute"],
    )
    .await
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(request.headers()["authorization"], header.as_str());
    assert_eq!(w.authority.requests.load(Ordering::SeqCst), 1);
    // A token that cannot be had fails the request with the reason.
    let refused = tower::ServiceBuilder::new()
        .layer(spiffe_mtls::oauth::OAuthBearerLayer::new(
            client,
            ["admin:all"],
        ))
        .service(tower::service_fn(|_: axum::http::Request<()>| async {
            Ok::<_, OAuthError>(())
        }))
        .oneshot(axum::http::Request::new(()))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("invalid_scope"), "{refused}");
    w.stop().await;
}

/// A reqwest client (for building requests only).
fn reqwest_client() -> reqwest::Client {
    let provider = spiffe_mtls::crypto::default_provider().unwrap();
    let config = spiffe_mtls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(spiffe_mtls::rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_client_authentication_presents_the_x509_svid_and_names_the_client() {
    use spiffe_mtls::source::WorkloadApiSource;
    use spiffe_mtls::tls::PeerIdentity;
    use spiffe_mtls::{authorize, net, tls};

    let w = world().await;
    let x509 = Arc::new(
        WorkloadApiSource::connect(w.authority.dev.address().clone())
            .await
            .unwrap(),
    );
    // An authorization server over mutual TLS: the client is the handshake's SPIFFE ID, which
    // must be the client_id it names.
    let signer = Arc::new(new_signer());
    let issuer = "https://127.0.0.1/mtls".to_owned();
    let (token_signer, token_issuer) = (Arc::clone(&signer), issuer.clone());
    let app = Router::new().route(
        "/token",
        post(
            move |axum::Extension(peer): axum::Extension<PeerIdentity>,
                  Form(form): Form<HashMap<String, String>>| {
                let (signer, issuer) = (Arc::clone(&token_signer), token_issuer.clone());
                async move {
                    let client = peer.spiffe_id().to_string();
                    if form.get("client_id") != Some(&client) || form.contains_key("client_assertion") {
                        return oauth_error(401, "invalid_client", &format!("the handshake was {client}"));
                    }
                    let token = signer
                        .sign_claims(&json!({"iss": issuer, "sub": client, "scope": form["scope"], "exp": now() + 300}))
                        .unwrap();
                    (
                        axum::http::StatusCode::OK,
                        Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 300})),
                    )
                }
            },
        ),
    );
    let config = tls::server_config(Arc::clone(&x509), authorize::any())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!(
        "https://127.0.0.1:{}/token",
        listener.local_addr().unwrap().port()
    );
    let server_task = tokio::spawn(async move {
        let _ = net::HttpServer::new(listener, Arc::new(config))
            .serve(app)
            .await;
    });
    let http = AuthorizationServerHttp::with_tls(
        tls::client_config(Arc::clone(&x509), authorize::id(AGENT.parse().unwrap()))
            .build()
            .unwrap(),
    )
    .unwrap();
    let server = AuthorizationServer::new(issuer, token_url, "https://127.0.0.1/unused");
    let named = |client_id: &str| {
        TokenClient::new(
            http.clone(),
            server.clone(),
            ClientAuth::MutualTls {
                client_id: client_id.to_owned(),
            },
        )
    };
    let token = named(AGENT).token(&["agent:execute"]).await.unwrap();
    assert_eq!(claims_of(&token.token)["sub"], AGENT);
    // Naming another client than the SVID presented: refused by the server.
    let error = named("spiffe://oauth.example/someone-else")
        .token(&["agent:execute"])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid_client"), "{error}");
    server_task.abort();
    w.stop().await;
}
