//! JWT-SVID security rules, each attack performed next to its good twin:
//! - a signed token with a NumericDate (`exp`, `nbf`, `iat`) no `SystemTime` can hold is refused
//!   as invalid, never a panic: in the validator (properties over the whole integer and float
//!   range), behind `JwtAuthLayer` (which keeps serving) and in `jwt validate` (exit 1);
//! - `Debug` of every value holding a token or a private key shows neither, and still shows
//!   the SPIFFE ID, audience and expiry;
//! - a partner de-federated on the dev server: its `.jwks` is removed and named by the next
//!   `jwt bundles --write`, and its tokens are refused by `JwtBundleFiles` from then on.
#![cfg(all(unix, feature = "jwt"))]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use serde_json::Value;
use spiffe_mtls::jwt::{
    Algorithm, JwtBundle, JwtBundleSet, JwtError, JwtSigner, JwtSvidValidator, MAX_NUMERIC_DATE,
};
use spiffe_mtls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const AUDIENCE: &str = "spiffe://example.org/reports";
const SUBJECT: &str = "spiffe://example.org/agent/client";
/// The validation time of the pinned tests: 2026-05-28.
const NOW: u64 = 1_780_000_000;

/// An ES256 signer with key ID `kid`, and its PKCS#8 private key.
fn signer(kid: &str) -> (JwtSigner, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = key.serialize_der();
    let signer = JwtSigner::new(
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
        Algorithm::ES256,
        kid,
    )
    .unwrap();
    (signer, der)
}

fn bundles(trust_domain: &str, signer: &JwtSigner) -> JwtBundleSet {
    [JwtBundle::new(trust_domain.parse().unwrap(), [signer.public_key().clone()]).unwrap()]
        .into_iter()
        .collect()
}

/// A token of SUBJECT for AUDIENCE whose time claims are these JSON number literals, written
/// byte for byte (so integers past `u64` stay integers in the payload).
fn token_with_times(
    signer: &JwtSigner,
    exp: Option<&str>,
    nbf: Option<&str>,
    iat: Option<&str>,
) -> String {
    let mut payload = format!(r#"{{"sub":"{SUBJECT}","aud":"{AUDIENCE}""#);
    for (name, literal) in [("exp", exp), ("nbf", nbf), ("iat", iat)] {
        if let Some(literal) = literal {
            payload.push_str(&format!(r#","{name}":{literal}"#));
        }
    }
    payload.push('}');
    let header = format!(r#"{{"alg":"ES256","kid":"{}","typ":"JWT"}}"#, signer.kid());
    signer.sign_parts(&header, &payload).unwrap()
}

fn validate_at(token: &str, bundles: &JwtBundleSet, now: u64) -> Result<(), JwtError> {
    JwtSvidValidator::new()
        .unwrap()
        .validate_at(
            token,
            AUDIENCE,
            bundles,
            UNIX_EPOCH + Duration::from_secs(now),
        )
        .map(drop)
}

/// Literals no `SystemTime` (or no NumericDate up to 9999) holds: each must be refused.
const HUGE: [&str; 9] = [
    "18446744073709551615",                    // u64::MAX
    "9223372036854775807",                     // i64::MAX
    "9223372036854775808",                     // i64::MAX + 1
    "340282366920938463463374607431768211455", // u128::MAX, parsed as a float
    "253402300800",                            // 10000-01-01T00:00:00Z
    "253402300799.5",
    "1e300",
    "1.7976931348623157e308",
    "1e19",
];

#[test]
fn a_huge_exp_is_refused_as_a_claim_error_not_a_panic() {
    let (signer, _) = signer("k1");
    let bundles = bundles("example.org", &signer);
    for literal in HUGE {
        let token = token_with_times(&signer, Some(literal), None, Some("1780000000"));
        let error = validate_at(&token, &bundles, NOW).unwrap_err();
        assert!(
            matches!(error, JwtError::Claim { name: "exp", .. }),
            "{literal}: {error:?}"
        );
        assert_eq!(error.rule(), "claim");
        assert!(
            error
                .to_string()
                .contains("the latest NumericDate accepted"),
            "{literal}: {error}"
        );
        // And with the real clock (what JwtAuthLayer and `jwt validate` use).
        let now = JwtSvidValidator::new()
            .unwrap()
            .validate(&token, AUDIENCE, &bundles)
            .unwrap_err();
        assert_eq!(now.rule(), "claim", "{literal}: {now}");
    }
    // The good twins: the latest accepted second, and five minutes from now.
    let latest = token_with_times(&signer, Some(&MAX_NUMERIC_DATE.to_string()), None, None);
    let svid = JwtSvidValidator::new()
        .unwrap()
        .validate_at(
            &latest,
            AUDIENCE,
            &bundles,
            UNIX_EPOCH + Duration::from_secs(NOW),
        )
        .unwrap();
    assert_eq!(
        svid.expiry(),
        UNIX_EPOCH + Duration::from_secs(MAX_NUMERIC_DATE)
    );
    let soon = token_with_times(&signer, Some(&(NOW + 300).to_string()), None, None);
    validate_at(&soon, &bundles, NOW).unwrap();
}

#[test]
fn a_huge_nbf_or_iat_is_refused_as_a_claim_error_not_a_panic() {
    let (signer, _) = signer("k1");
    let bundles = bundles("example.org", &signer);
    let exp = (NOW + 300).to_string();
    for literal in HUGE {
        let nbf = token_with_times(&signer, Some(&exp), Some(literal), None);
        let error = validate_at(&nbf, &bundles, NOW).unwrap_err();
        assert!(
            matches!(error, JwtError::Claim { name: "nbf", .. }),
            "{literal}: {error:?}"
        );
        let iat = token_with_times(&signer, Some(&exp), None, Some(literal));
        let error = validate_at(&iat, &bundles, NOW).unwrap_err();
        assert!(
            matches!(error, JwtError::Claim { name: "iat", .. }),
            "{literal}: {error:?}"
        );
    }
    let now = NOW.to_string();
    validate_at(
        &token_with_times(&signer, Some(&exp), Some(&now), Some(&now)),
        &bundles,
        NOW,
    )
    .unwrap();
}

// ---- properties over the whole range of JSON numbers ----

/// A JSON number literal: integers of every width (past u64 and i64 too), floats of every
/// magnitude and sign, and values around the validation time and the latest accepted date.
fn numeric_literal() -> impl Strategy<Value = String> {
    use proptest::num::f64 as float;
    let finite =
        (float::POSITIVE | float::NEGATIVE | float::NORMAL | float::SUBNORMAL | float::ZERO)
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite());
    let float_literal = |f: f64| serde_json::to_string(&f).unwrap();
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u128>().prop_map(|n| n.to_string()),
        any::<i128>().prop_map(|n| n.to_string()),
        (-1000i128..1000).prop_map(|d| (i128::from(NOW) + d).to_string()),
        (-1000i128..1000).prop_map(|d| (i128::from(MAX_NUMERIC_DATE) + d).to_string()),
        (-3i64..3).prop_map(|n| n.to_string()),
        finite.prop_map(float_literal),
        (-1000.0f64..1000.0).prop_map(move |d| float_literal(NOW as f64 + d)),
        (-1000.0f64..1000.0).prop_map(move |d| float_literal(MAX_NUMERIC_DATE as f64 + d)),
        Just("-0.0".to_owned()),
        Just("-0".to_owned()),
    ]
}

/// What the JSON number means, in seconds: `None` when it is no NumericDate of 1970 to 9999
/// (negative, or later than the latest accepted second). Read as any JSON parser reads it.
fn seconds(literal: &str) -> Option<f64> {
    let value: Value = serde_json::from_str(literal).unwrap();
    let seconds = match value.as_u64() {
        Some(whole) => return (whole <= MAX_NUMERIC_DATE).then_some(whole as f64),
        None if value.as_i64().is_some() => return None,
        None => value.as_f64().unwrap(),
    };
    (seconds >= 0.0 && seconds <= MAX_NUMERIC_DATE as f64).then_some(seconds)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// `exp`: outside 1970..=9999 a claim error; else valid exactly when after now.
    #[test]
    fn exp_over_every_number(exp in numeric_literal()) {
        let (signer, _) = signer("k1");
        let bundles = bundles("example.org", &signer);
        let token = token_with_times(&signer, Some(&exp), None, Some("1780000000"));
        let result = validate_at(&token, &bundles, NOW);
        match seconds(&exp) {
            None => prop_assert!(
                matches!(result, Err(JwtError::Claim { name: "exp", .. })),
                "{exp}: {result:?}"
            ),
            Some(at) if at > NOW as f64 => prop_assert!(result.is_ok(), "{exp}: {result:?}"),
            Some(_) => prop_assert!(
                matches!(result, Err(JwtError::Expired { .. })),
                "{exp}: {result:?}"
            ),
        }
    }

    /// `nbf`: outside 1970..=9999 a claim error; else valid exactly when not after now.
    #[test]
    fn nbf_over_every_number(nbf in numeric_literal()) {
        let (signer, _) = signer("k1");
        let bundles = bundles("example.org", &signer);
        let exp = (NOW + 300).to_string();
        let token = token_with_times(&signer, Some(&exp), Some(&nbf), None);
        let result = validate_at(&token, &bundles, NOW);
        match seconds(&nbf) {
            None => prop_assert!(
                matches!(result, Err(JwtError::Claim { name: "nbf", .. })),
                "{nbf}: {result:?}"
            ),
            Some(at) if at <= NOW as f64 => prop_assert!(result.is_ok(), "{nbf}: {result:?}"),
            Some(_) => prop_assert!(
                matches!(result, Err(JwtError::NotYetValid { .. })),
                "{nbf}: {result:?}"
            ),
        }
    }

    /// `iat`: outside 1970..=9999 a claim error; else never a reason to refuse.
    #[test]
    fn iat_over_every_number(iat in numeric_literal()) {
        let (signer, _) = signer("k1");
        let bundles = bundles("example.org", &signer);
        let exp = (NOW + 300).to_string();
        let token = token_with_times(&signer, Some(&exp), None, Some(&iat));
        let result = validate_at(&token, &bundles, NOW);
        match seconds(&iat) {
            None => prop_assert!(
                matches!(result, Err(JwtError::Claim { name: "iat", .. })),
                "{iat}: {result:?}"
            ),
            Some(_) => prop_assert!(result.is_ok(), "{iat}: {result:?}"),
        }
    }

    /// All three at once, each maybe absent: valid exactly when each present one is in range,
    /// `exp` after now and `nbf` not after now; never a panic.
    #[test]
    fn time_claims_together(
        exp in proptest::option::of(numeric_literal()),
        nbf in proptest::option::of(numeric_literal()),
        iat in proptest::option::of(numeric_literal()),
    ) {
        let (signer, _) = signer("k1");
        let bundles = bundles("example.org", &signer);
        let token = token_with_times(&signer, exp.as_deref(), nbf.as_deref(), iat.as_deref());
        let result = validate_at(&token, &bundles, NOW);
        let exp_ok = exp.as_deref().and_then(seconds).is_some_and(|at| at > NOW as f64);
        let nbf_ok = nbf.as_deref().is_none_or(|nbf| seconds(nbf).is_some_and(|at| at <= NOW as f64));
        let iat_ok = iat.as_deref().is_none_or(|iat| seconds(iat).is_some());
        prop_assert_eq!(result.is_ok(), exp_ok && nbf_ok && iat_ok, "{:?}", result);
        if let Err(error) = result {
            prop_assert!(["claim", "exp", "nbf"].contains(&error.rule()), "{}", error);
        }
    }
}

// ---- Debug never shows a token or a private key ----

/// Asserts `debug` shows none of `secrets` (and names `what` on failure).
fn assert_hides(what: &str, debug: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !debug.contains(secret),
            "{what} Debug shows a secret ({secret}): {debug}"
        );
    }
}

/// Every way a bearer token could show: whole, and its signature (what makes it usable).
fn token_texts(token: &str) -> Vec<String> {
    let signature = token.rsplit('.').next().unwrap().to_owned();
    vec![token.to_owned(), signature]
}

/// Every way a PKCS#8 key could show: base64 (standard and URL-safe), each PEM line, and the
/// bytes as `Debug` lists them.
fn key_texts(der: &[u8]) -> Vec<String> {
    let pem = spiffe_mtls::pem::encode("PRIVATE KEY", der);
    let bytes = format!("{der:?}");
    let mut texts = vec![
        STANDARD.encode(der),
        URL_SAFE_NO_PAD.encode(der),
        bytes.trim_matches(['[', ']']).to_owned(),
    ];
    texts.extend(
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::to_owned),
    );
    texts
}

fn refs(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

#[test]
fn debug_of_a_validated_jwt_svid_hides_the_token() {
    let (signer, _) = signer("k1");
    let bundles = bundles("example.org", &signer);
    let exp = NOW + 300;
    let token = token_with_times(&signer, Some(&exp.to_string()), None, None);
    let svid = JwtSvidValidator::new()
        .unwrap()
        .validate_at(
            &token,
            AUDIENCE,
            &bundles,
            UNIX_EPOCH + Duration::from_secs(NOW),
        )
        .unwrap();
    let debug = format!("{svid:?}");
    assert_hides("JwtSvid", &debug, &refs(&token_texts(&token)));
    // The good twin: the token is still there for who asks, and the non-secret fields show.
    assert_eq!(svid.token(), token);
    for shown in [SUBJECT, AUDIENCE, "2026-05-28T20:31:40Z", "<redacted>"] {
        assert!(debug.contains(shown), "{shown} missing: {debug}");
    }
}

#[test]
fn debug_of_a_jwt_signer_hides_its_private_key() {
    let (signer, der) = signer("signing-key-1");
    let debug = format!("{signer:?}");
    assert_hides("JwtSigner", &debug, &refs(&key_texts(&der)));
    assert!(
        debug.contains("signing-key-1") && debug.contains("ES256"),
        "{debug}"
    );
}

#[cfg(feature = "dev-server")]
#[test]
fn debug_of_an_x509_svid_hides_its_private_key() {
    use spiffe_mtls::dev_server::{DevCa, SvidRequest};
    let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
    let svid = ca
        .issue(&SvidRequest::new(
            SUBJECT.parse().unwrap(),
            Duration::from_secs(600),
        ))
        .unwrap();
    let debug = format!("{svid:?}");
    assert_hides(
        "X509Svid",
        &debug,
        &refs(&key_texts(svid.private_key().secret_der())),
    );
    assert!(debug.contains(SUBJECT), "{debug}");
    assert!(debug.contains("expires_at"), "{debug}");
}

#[cfg(feature = "workload-api")]
#[test]
fn debug_of_the_workload_api_wire_messages_hides_keys_and_tokens() {
    use spiffe_mtls::workload::proto::{
        Jwtsvid, JwtsvidResponse, ValidateJwtsvidRequest, X509svid, X509svidResponse,
    };
    let (signer, der) = signer("k1");
    let token = token_with_times(&signer, Some(&(NOW + 300).to_string()), None, None);
    let x509 = X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: SUBJECT.to_owned(),
            x509_svid_key: der.clone(),
            hint: "internal".to_owned(),
            ..X509svid::default()
        }],
        ..X509svidResponse::default()
    };
    let debug = format!("{x509:?}");
    assert_hides("X509svidResponse", &debug, &refs(&key_texts(&der)));
    assert!(
        debug.contains(SUBJECT) && debug.contains("internal"),
        "{debug}"
    );
    let jwt = JwtsvidResponse {
        svids: vec![Jwtsvid {
            spiffe_id: SUBJECT.to_owned(),
            svid: token.clone(),
            hint: String::new(),
        }],
    };
    let debug = format!("{jwt:?}");
    assert_hides("JwtsvidResponse", &debug, &refs(&token_texts(&token)));
    assert!(debug.contains(SUBJECT), "{debug}");
    let validate = ValidateJwtsvidRequest {
        audience: AUDIENCE.to_owned(),
        svid: token.clone(),
    };
    let debug = format!("{validate:?}");
    assert_hides(
        "ValidateJwtsvidRequest",
        &debug,
        &refs(&token_texts(&token)),
    );
    assert!(debug.contains(AUDIENCE), "{debug}");
}

// ---- behind JwtAuthLayer ----

#[cfg(feature = "http")]
mod bearer_layer {
    use super::*;
    use axum::Extension;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use spiffe_mtls::jwt::StaticJwtBundles;
    use spiffe_mtls::net::{JwtAuthLayer, PeerIdentity};
    use tower::ServiceExt;

    /// `/debug` answers `{:?}` of the caller's identity and of the request's headers: what a
    /// careless log line would print.
    fn app(bundles: JwtBundleSet) -> axum::Router {
        axum::Router::new()
            .route(
                "/debug",
                get(
                    |Extension(peer): Extension<PeerIdentity>, headers: http::HeaderMap| async move {
                        format!("{peer:?}\n{headers:?}")
                    },
                ),
            )
            .layer(JwtAuthLayer::new(StaticJwtBundles::new(bundles), AUDIENCE).unwrap())
    }

    async fn call(app: &axum::Router, token: &str) -> (u16, String) {
        let request = http::Request::get("/debug")
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn a_huge_exp_gets_401_and_the_layer_keeps_serving() {
        let (signer, _) = signer("k1");
        let app = app(bundles("example.org", &signer));
        for literal in HUGE {
            let token = token_with_times(&signer, Some(literal), None, None);
            let (status, body) = call(&app, &token).await;
            assert_eq!(status, 401, "{literal}: {body}");
            assert!(body.contains("(claim)"), "{literal}: {body}");
        }
        // The same service, right after: a good token passes.
        let good = token_with_times(&signer, Some(&(now() + 300).to_string()), None, None);
        let (status, body) = call(&app, &good).await;
        assert_eq!(status, 200, "{body}");
    }

    #[tokio::test]
    async fn debug_of_a_jwt_callers_peer_identity_hides_the_bearer_token() {
        let (signer, _) = signer("k1");
        let app = app(bundles("example.org", &signer));
        let exp = now() + 300;
        let token = token_with_times(&signer, Some(&exp.to_string()), None, None);
        let (status, debug) = call(&app, &token).await;
        assert_eq!(status, 200, "{debug}");
        assert_hides(
            "PeerIdentity and headers",
            &debug,
            &refs(&token_texts(&token)),
        );
        assert!(debug.contains("\"authorization\": Sensitive"), "{debug}");
        let expiry = time::OffsetDateTime::from_unix_timestamp(i64::try_from(exp).unwrap())
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        for shown in [SUBJECT, AUDIENCE, expiry.as_str()] {
            assert!(debug.contains(shown), "{shown} missing: {debug}");
        }
    }
}

// ---- against the dev server ----

#[cfg(all(feature = "dev-server", feature = "http"))]
mod workload_api {
    use super::*;
    use std::sync::Arc;

    use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
    use spiffe_mtls::jwt::JwtSource;
    use spiffe_mtls::net::JwtBearerLayer;
    use spiffe_mtls::workload::{EndpointAddress, WorkloadClient};
    use tower::{Layer, ServiceExt};

    pub(super) async fn dev_server(
        address: &EndpointAddress,
        options: DevServerOptions,
    ) -> DevServer {
        let config = DevServerConfig::one_identity(
            "example.org".parse().unwrap(),
            SUBJECT.parse().unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap()
        .with_federation("partner.org".parse().unwrap());
        DevServer::start(config, address.clone(), options)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn debug_of_the_workload_api_token_holders_hides_the_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
        let server = dev_server(&address, DevServerOptions::default()).await;
        let audience = [AUDIENCE.to_owned()];

        let issued = WorkloadClient::connect(&address)
            .await
            .unwrap()
            .fetch_jwt_svids(&audience, None)
            .await
            .unwrap();
        let debug = format!("{issued:?}");
        assert_hides(
            "IssuedJwtSvid",
            &debug,
            &refs(&token_texts(issued[0].token())),
        );
        assert!(debug.contains(SUBJECT), "{debug}");

        let source = Arc::new(JwtSource::connect(address.clone()).await.unwrap());
        let cached = source.fetch_svid(&audience).await.unwrap();
        let secrets = token_texts(cached.token());
        let debug = format!("{cached:?}");
        assert_hides("CachedJwtSvid", &debug, &refs(&secrets));
        assert!(
            debug.contains(SUBJECT) && debug.contains("expires_at"),
            "{debug}"
        );
        // The source, holding that token in its cache.
        let debug = format!("{source:?}");
        assert_hides("JwtSource", &debug, &refs(&secrets));
        assert!(debug.contains("cached_audience_sets: 1"), "{debug}");

        // The client layer and its service, after a request went through with the token.
        let layer = JwtBearerLayer::new(Arc::clone(&source), [AUDIENCE]);
        let seen = Arc::new(std::sync::Mutex::new(None));
        let record = Arc::clone(&seen);
        let service = layer.layer(tower::service_fn(move |request: http::Request<()>| {
            let record = Arc::clone(&record);
            async move {
                let value = request.headers().get("authorization").unwrap();
                *record.lock().unwrap() =
                    Some((value.to_str().unwrap().to_owned(), format!("{request:?}")));
                Ok::<_, std::convert::Infallible>(())
            }
        }));
        service
            .clone()
            .oneshot(http::Request::new(()))
            .await
            .unwrap();
        let (sent, request) = seen.lock().unwrap().clone().unwrap();
        assert_eq!(sent, format!("Bearer {}", cached.token()));
        // The request it sent: the header is there, marked sensitive, so its Debug hides it.
        assert_hides("the bearer request", &request, &refs(&secrets));
        assert!(request.contains("authorization"), "{request}");
        for (what, debug) in [
            ("JwtBearerLayer", format!("{layer:?}")),
            ("JwtBearer", format!("{service:?}")),
        ] {
            assert_hides(what, &debug, &refs(&secrets));
            assert!(debug.contains(AUDIENCE), "{what}: {debug}");
        }
        server.shutdown().await;
    }
}

// ---- de-federation: `jwt bundles --write` and JwtBundleFiles ----

#[cfg(all(feature = "cli", feature = "dev-server", feature = "http"))]
mod defederation {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Output};

    use spiffe_mtls::dev_server::DevServerOptions;
    use spiffe_mtls::jwt::{JwtBundleFiles, JwtBundleSource};
    use spiffe_mtls::workload::{EndpointAddress, WorkloadClient};

    const PARTNER: &str = "spiffe://partner.org/agent/billing";

    /// `spiffe-mtls jwt bundles --socket ADDRESS --write DIR`, off the runtime's threads.
    async fn write_bundles(address: &EndpointAddress, dir: &Path) -> Output {
        let (socket, dir) = (address.to_string(), dir.to_owned());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
                .args(["jwt", "bundles", "--socket", &socket, "--write"])
                .arg(&dir)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn local_token(address: &EndpointAddress) -> String {
        WorkloadClient::connect(address)
            .await
            .unwrap()
            .fetch_jwt_svids(&[AUDIENCE.to_owned()], None)
            .await
            .unwrap()[0]
            .token()
            .to_owned()
    }

    fn validate(source: &JwtBundleFiles, token: &str) -> Result<String, JwtError> {
        JwtSvidValidator::new()
            .unwrap()
            .validate(token, AUDIENCE, &source.jwt_bundles().unwrap())
            .map(|svid| svid.spiffe_id().to_string())
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_defederated_partners_token_is_refused_after_the_next_jwt_bundles_write() {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks");
        let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
        let (partner, _) = signer("partner-key");
        let partner_bundle = JwtBundle::new(
            "partner.org".parse().unwrap(),
            [partner.public_key().clone()],
        )
        .unwrap();
        let partner_token = partner
            .sign_svid(
                &PARTNER.parse().unwrap(),
                &[AUDIENCE.to_owned()],
                SystemTime::now() + Duration::from_secs(600),
            )
            .unwrap();

        // Federated with partner.org: both bundles written, both tokens valid.
        let server = super::workload_api::dev_server(
            &address,
            DevServerOptions::default().with_federated_jwt(partner_bundle),
        )
        .await;
        let out = write_bundles(&address, &jwks).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "example.org\npartner.org\n");
        assert!(jwks.join("partner.org.jwks").exists());
        let source = JwtBundleFiles::open_with_interval(&jwks, Duration::from_millis(20)).unwrap();
        assert_eq!(validate(&source, &partner_token).unwrap(), PARTNER);
        assert_eq!(
            validate(&source, &local_token(&address).await).unwrap(),
            SUBJECT
        );
        server.shutdown().await;

        // partner.org leaves the federation (the dev server restarts without it).
        let server = super::workload_api::dev_server(&address, DevServerOptions::default()).await;
        let mut updates = source.updates();
        let out = write_bundles(&address, &jwks).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "example.org\n");
        let stderr = text(&out.stderr);
        let removed = format!("removed {}", jwks.join("partner.org.jwks").display());
        assert!(stderr.lines().any(|line| line == removed), "{stderr}");
        assert!(!jwks.join("partner.org.jwks").exists());

        // The watcher drops partner.org's bundle: its token is refused, ours still passes. The
        // writer removes the stale file before it rewrites ours (the restarted server has a
        // new key), so a reload may see the one change before the other: wait for both.
        let ours = local_token(&address).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while source.jwt_bundles().unwrap().len() != 1 || validate(&source, &ours).is_err() {
                updates.changed().await.unwrap();
            }
        })
        .await
        .expect("the bundle files were not reloaded within 10 s");
        let error = validate(&source, &partner_token).unwrap_err();
        assert_eq!(error, JwtError::NoBundle("partner.org".parse().unwrap()));
        assert_eq!(validate(&source, &ours).unwrap(), SUBJECT);
        server.shutdown().await;
    }
}

// ---- `jwt validate` ----

#[cfg(feature = "cli")]
#[test]
fn jwt_validate_exits_1_for_a_huge_exp_and_0_for_its_twin() {
    let (signer, _) = signer("k1");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("example.org.jwks");
    std::fs::write(
        &bundle,
        bundles("example.org", &signer)
            .iter()
            .next()
            .unwrap()
            .to_jwks()
            .to_string(),
    )
    .unwrap();
    let run = |exp: &str| {
        let token = dir.path().join("token");
        std::fs::write(&token, token_with_times(&signer, Some(exp), None, None)).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
            .args(["jwt", "validate", "--audience", AUDIENCE, "--at"])
            .arg("2026-05-28T00:00:00Z")
            .arg("--token")
            .arg(&token)
            .arg("--bundle")
            .arg(format!("example.org={}", bundle.display()))
            .output()
            .unwrap()
    };
    for literal in HUGE {
        let out = run(literal);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{literal}: {stderr}");
        assert!(stderr.contains("(claim)"), "{literal}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{literal}: {stderr}");
    }
    let out = run(&(NOW + 300).to_string());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SUBJECT);
}

// ---- a Workload API that issues a token with a huge exp ----

#[cfg(all(feature = "workload-api", feature = "grpc"))]
mod hostile_workload_api {
    use super::*;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use spiffe_mtls::jwt::{JwtSource, JwtSourceError};
    use spiffe_mtls::workload::EndpointAddress;
    use spiffe_mtls::workload::proto::spiffe_workload_api_server::{
        SpiffeWorkloadApi, SpiffeWorkloadApiServer,
    };
    use spiffe_mtls::workload::proto::{
        JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
        ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
        X509svidRequest, X509svidResponse,
    };
    use tokio_stream::Stream;
    use tokio_stream::wrappers::UnixListenerStream;
    use tonic::{Request, Response, Status};

    type Updates<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

    /// Answers FetchJWTSVID with whatever token the test put in `token`, and one empty JWT
    /// bundle set on FetchJWTBundles (then keeps the stream open).
    struct Scripted {
        token: Arc<Mutex<String>>,
    }

    #[tonic::async_trait]
    impl SpiffeWorkloadApi for Scripted {
        type FetchX509SVIDStream = Updates<X509svidResponse>;
        type FetchX509BundlesStream = Updates<X509BundlesResponse>;
        type FetchJWTBundlesStream = Updates<JwtBundlesResponse>;

        async fn fetch_x509svid(
            &self,
            _: Request<X509svidRequest>,
        ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
            Err(Status::unimplemented("scripted"))
        }

        async fn fetch_x509_bundles(
            &self,
            _: Request<X509BundlesRequest>,
        ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
            Err(Status::unimplemented("scripted"))
        }

        async fn fetch_jwtsvid(
            &self,
            _: Request<JwtsvidRequest>,
        ) -> Result<Response<JwtsvidResponse>, Status> {
            Ok(Response::new(JwtsvidResponse {
                svids: vec![Jwtsvid {
                    spiffe_id: SUBJECT.to_owned(),
                    svid: self.token.lock().unwrap().clone(),
                    hint: String::new(),
                }],
            }))
        }

        async fn fetch_jwt_bundles(
            &self,
            _: Request<JwtBundlesRequest>,
        ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
            let first = tokio_stream::once(Ok(JwtBundlesResponse::default()));
            let forever = tokio_stream::StreamExt::chain(first, tokio_stream::pending());
            Ok(Response::new(Box::pin(forever)))
        }

        async fn validate_jwtsvid(
            &self,
            _: Request<ValidateJwtsvidRequest>,
        ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
            Err(Status::unimplemented("scripted"))
        }
    }

    #[tokio::test]
    async fn a_workload_api_token_with_a_huge_exp_is_refused_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scripted.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let token = Arc::new(Mutex::new(String::new()));
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SpiffeWorkloadApiServer::new(Scripted {
                    token: Arc::clone(&token),
                }))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        let source = JwtSource::connect(EndpointAddress::Unix(path))
            .await
            .unwrap();
        let (signer, _) = signer("k1");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let audience = [AUDIENCE.to_owned()];
        for literal in [
            "18446744073709551615",
            "253402300800",
            "9223372036854775807",
        ] {
            *token.lock().unwrap() = token_with_times(&signer, Some(literal), None, None);
            let error = source.fetch_svid(&audience).await.unwrap_err();
            assert!(
                matches!(&error, JwtSourceError::Invalid(reason) if reason.contains(literal)),
                "{literal}: {error}"
            );
        }
        // The good twin: a token expiring in five minutes is cached and handed out.
        let good = token_with_times(&signer, Some(&(now + 300).to_string()), None, None);
        *token.lock().unwrap() = good.clone();
        let cached = source.fetch_svid(&audience).await.unwrap();
        assert_eq!(cached.token(), good);
        assert_eq!(
            cached.expires_at(),
            UNIX_EPOCH + Duration::from_secs(now + 300)
        );
        server.abort();
    }
}
