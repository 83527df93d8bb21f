//! JWT-SVID validation, rule by rule: for each rule a token that breaks exactly it, refused
//! with that rule named, and its good twin, accepted. Tokens are signed for real (ES256,
//! ES384 and the RSA family by the rustls provider, ES512 by RustCrypto's p521), so a refusal
//! is never a signature accident.
#![cfg(feature = "jwt")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use serde_json::{Value, json};
use spiffe_mtls::jwt::{Algorithm, JwtBundle, JwtBundleSet, JwtError, JwtSigner, JwtSvidValidator};
use spiffe_mtls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const AUDIENCE: &str = "spiffe://example.org/reports";
const SUBJECT: &str = "spiffe://example.org/agent/client";

fn ec_key(alg: &'static rcgen::SignatureAlgorithm) -> PrivateKeyDer<'static> {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

fn rsa_key() -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        include_bytes!("../data/jwt/rsa2048.key.der").to_vec(),
    ))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a good token.
fn claims() -> Value {
    json!({"sub": SUBJECT, "aud": [AUDIENCE], "exp": now() + 300, "iat": now()})
}

/// A header naming the signer's algorithm and key.
fn header(signer: &JwtSigner) -> Value {
    json!({"alg": signer.alg().as_str(), "kid": signer.kid(), "typ": "JWT"})
}

struct World {
    /// example.org's key.
    signer: JwtSigner,
    /// partner.org's key.
    partner: JwtSigner,
    bundles: JwtBundleSet,
}

fn bundle_of(trust_domain: &str, signers: &[&JwtSigner]) -> JwtBundle {
    JwtBundle::new(
        trust_domain.parse().unwrap(),
        signers.iter().map(|s| s.public_key().clone()),
    )
    .unwrap()
}

fn world() -> World {
    let signer = JwtSigner::new(
        ec_key(&rcgen::PKCS_ECDSA_P256_SHA256),
        Algorithm::ES256,
        "k1",
    )
    .unwrap();
    let partner = JwtSigner::new(
        ec_key(&rcgen::PKCS_ECDSA_P256_SHA256),
        Algorithm::ES256,
        "p1",
    )
    .unwrap();
    let bundles = [
        bundle_of("example.org", &[&signer]),
        bundle_of("partner.org", &[&partner]),
    ]
    .into_iter()
    .collect();
    World {
        signer,
        partner,
        bundles,
    }
}

impl World {
    fn validate(&self, token: &str) -> Result<spiffe_mtls::jwt::JwtSvid, JwtError> {
        JwtSvidValidator::new()
            .unwrap()
            .validate(token, AUDIENCE, &self.bundles)
    }

    /// A token with `header` and `claims`, signed by example.org's key.
    fn token(&self, header: &Value, claims: &Value) -> String {
        self.signer
            .sign_parts(&header.to_string(), &claims.to_string())
            .unwrap()
    }

    fn good(&self) -> String {
        self.token(&header(&self.signer), &claims())
    }

    /// The rule a token with these parts breaks.
    fn refused(&self, header: &Value, claims: &Value) -> JwtError {
        self.validate(&self.token(header, claims)).unwrap_err()
    }
}

fn with(mut value: Value, name: &str, member: Value) -> Value {
    value[name] = member;
    value
}

fn without(mut value: Value, name: &str) -> Value {
    value.as_object_mut().unwrap().remove(name);
    value
}

#[test]
fn a_good_token_validates_and_says_who_and_for_whom() {
    let w = world();
    let svid = w.validate(&w.good()).unwrap();
    assert_eq!(svid.spiffe_id().to_string(), SUBJECT);
    assert_eq!(svid.audience(), [AUDIENCE]);
    assert!(svid.expiry() > SystemTime::now());
    assert_eq!(svid.claims()["sub"], SUBJECT);
    // One audience as a plain string is the same.
    let one = with(claims(), "aud", json!(AUDIENCE));
    w.validate(&w.token(&header(&w.signer), &one)).unwrap();
}

#[test]
fn alg_none_is_refused() {
    let w = world();
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "k1", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let error = w.validate(&unsigned).unwrap_err();
    assert_eq!(error.rule(), "alg", "{error}");
    assert!(error.to_string().contains("none"), "{error}");
    // No alg at all, or a non-string one.
    let error = w.refused(&without(header(&w.signer), "alg"), &claims());
    assert_eq!(error.rule(), "alg");
    let error = w.refused(&with(header(&w.signer), "alg", json!(256)), &claims());
    assert_eq!(error.rule(), "alg");
}

#[test]
fn hs256_with_the_public_key_as_the_secret_is_refused() {
    // The classic confusion: a validator that feeds "the key" to HMAC when alg says HS256
    // would accept this, since the public key is public. Here the alg alone refuses it.
    let w = world();
    let secret = w.signer.public_key().to_jwk().to_string();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "k1", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let error = w.validate(&token).unwrap_err();
    assert_eq!(error.rule(), "alg");
    assert!(error.to_string().contains("HMAC"), "{error}");
}

#[test]
fn an_unknown_kid_is_refused() {
    let w = world();
    let error = w.refused(&with(header(&w.signer), "kid", json!("k9")), &claims());
    assert!(
        matches!(error, JwtError::UnknownKey { ref kid, .. } if kid == "k9"),
        "{error}"
    );
    let error = w.refused(&without(header(&w.signer), "kid"), &claims());
    assert_eq!(error, JwtError::MissingKeyId);
}

#[test]
fn a_key_of_another_trust_domain_cannot_sign_for_ours() {
    // partner.org signs, with its own key and kid, a token whose sub is in example.org: the
    // key is looked up in example.org's bundle only, where p1 is not.
    let w = world();
    let forged = w
        .partner
        .sign_parts(&header(&w.partner).to_string(), &claims().to_string())
        .unwrap();
    let error = w.validate(&forged).unwrap_err();
    assert!(
        matches!(error, JwtError::UnknownKey { ref trust_domain, .. } if trust_domain.as_str() == "example.org"),
        "{error}"
    );
    // Twin: the same key for a partner.org subject is fine.
    let own = with(claims(), "sub", json!("spiffe://partner.org/agent"));
    let token = w
        .partner
        .sign_parts(&header(&w.partner).to_string(), &own.to_string())
        .unwrap();
    assert_eq!(
        w.validate(&token).unwrap().spiffe_id().to_string(),
        "spiffe://partner.org/agent"
    );
    // A trust domain with no JWT bundle at all.
    let stranger = with(claims(), "sub", json!("spiffe://stranger.org/agent"));
    let error = w.refused(&header(&w.signer), &stranger);
    assert_eq!(error.rule(), "bundle");
}

#[test]
fn expiry_is_required_and_enforced_with_optional_leeway() {
    let w = world();
    let expired = with(claims(), "exp", json!(now() - 5));
    let error = w.refused(&header(&w.signer), &expired);
    assert_eq!(error.rule(), "exp", "{error}");
    assert!(matches!(error, JwtError::Expired { .. }));
    let token = w.token(&header(&w.signer), &expired);
    let lenient = JwtSvidValidator::new()
        .unwrap()
        .leeway(Duration::from_secs(30));
    lenient.validate(&token, AUDIENCE, &w.bundles).unwrap();
    // exp equal to now is already expired (now must be before exp).
    let at = UNIX_EPOCH + Duration::from_secs(now() + 300);
    let error = JwtSvidValidator::new()
        .unwrap()
        .validate_at(&w.good(), AUDIENCE, &w.bundles, at)
        .unwrap_err();
    assert_eq!(error.rule(), "exp");
    assert_eq!(
        w.refused(&header(&w.signer), &without(claims(), "exp")),
        JwtError::MissingExpiry
    );
    let error = w.refused(
        &header(&w.signer),
        &with(claims(), "exp", json!("tomorrow")),
    );
    assert_eq!(error.rule(), "claim");
}

#[test]
fn nbf_in_the_future_is_refused() {
    let w = world();
    let early = with(claims(), "nbf", json!(now() + 60));
    assert_eq!(w.refused(&header(&w.signer), &early).rule(), "nbf");
    let ok = with(claims(), "nbf", json!(now() - 1));
    w.validate(&w.token(&header(&w.signer), &ok)).unwrap();
}

#[test]
fn the_audience_must_be_present_and_ours() {
    let w = world();
    let other = with(claims(), "aud", json!(["spiffe://example.org/billing"]));
    let error = w.refused(&header(&w.signer), &other);
    assert!(matches!(error, JwtError::Audience { .. }), "{error}");
    assert_eq!(
        w.refused(&header(&w.signer), &without(claims(), "aud")),
        JwtError::MissingAudience
    );
    assert_eq!(
        w.refused(&header(&w.signer), &with(claims(), "aud", json!([]))),
        JwtError::MissingAudience
    );
    let error = w.refused(
        &header(&w.signer),
        &with(claims(), "aud", json!([AUDIENCE, 7])),
    );
    assert_eq!(error.rule(), "claim");
    // Twin: ours among several.
    let several = with(claims(), "aud", json!(["a", AUDIENCE]));
    w.validate(&w.token(&header(&w.signer), &several)).unwrap();
}

#[test]
fn sub_must_be_a_spiffe_id() {
    let w = world();
    assert_eq!(
        w.refused(&header(&w.signer), &without(claims(), "sub")),
        JwtError::MissingSubject
    );
    for bad in [
        json!("spiffe://Example.org/agent"),
        json!("https://example.org/agent"),
        json!("spiffe://example.org/a/../b"),
        json!(42),
    ] {
        let error = w.refused(&header(&w.signer), &with(claims(), "sub", bad.clone()));
        assert_eq!(error.rule(), "sub", "{bad}: {error}");
    }
}

#[test]
fn typ_must_be_jwt_or_jose_when_present() {
    let w = world();
    let error = w.refused(&with(header(&w.signer), "typ", json!("JWS")), &claims());
    assert_eq!(error.rule(), "typ", "{error}");
    let error = w.refused(&with(header(&w.signer), "typ", json!("jwt")), &claims());
    assert_eq!(error.rule(), "typ", "{error}");
    for ok in [
        with(header(&w.signer), "typ", json!("JOSE")),
        without(header(&w.signer), "typ"),
    ] {
        w.validate(&w.token(&ok, &claims())).unwrap();
    }
}

#[test]
fn crit_and_any_other_header_are_refused() {
    let w = world();
    let error = w.refused(&with(header(&w.signer), "crit", json!(["exp"])), &claims());
    assert_eq!(error.rule(), "crit", "{error}");
    for name in ["x5u", "jku", "jwk", "cty", "b64", "private"] {
        let error = w.refused(&with(header(&w.signer), name, json!("x")), &claims());
        assert_eq!(error, JwtError::Header(name.to_owned()));
    }
}

#[test]
fn an_oversized_token_is_refused_before_parsing() {
    let w = world();
    let padded = with(claims(), "note", json!("x".repeat(9000)));
    let token = w.token(&header(&w.signer), &padded);
    let error = w.validate(&token).unwrap_err();
    assert!(
        matches!(error, JwtError::TooLarge { max: 8192, .. }),
        "{error}"
    );
    // Twin: the same token under a larger cap.
    JwtSvidValidator::new()
        .unwrap()
        .max_token_bytes(16 * 1024)
        .validate(&token, AUDIENCE, &w.bundles)
        .unwrap();
    // The cap comes first: a huge string of garbage is refused for its size.
    let error = w.validate(&"!".repeat(100_000)).unwrap_err();
    assert_eq!(error.rule(), "size");
}

#[test]
fn garbage_segments_are_refused_as_malformed() {
    let w = world();
    let good = w.good();
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        "".to_owned(),
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], "%%%", parts[2]),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("not json"),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("[1,2]"),
            parts[1],
            parts[2]
        ),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode("\"just a string\""),
            parts[2]
        ),
        format!("{}.{}.{}", parts[0], parts[1], "+/+/"),
    ];
    for token in cases {
        let error = w.validate(&token).unwrap_err();
        assert_eq!(error.rule(), "format", "{token:?}: {error}");
    }
    // A member named twice: two parsers could read two different algorithms.
    let twice = r#"{"alg":"ES256","alg":"none","kid":"k1"}"#;
    let token = w.signer.sign_parts(twice, &claims().to_string()).unwrap();
    assert_eq!(w.validate(&token).unwrap_err().rule(), "format");
    let twice = format!(
        r#"{{"sub":"{SUBJECT}","aud":"{AUDIENCE}","exp":{},"sub":"spiffe://example.org/admin"}}"#,
        now() + 60
    );
    let token = w
        .signer
        .sign_parts(&header(&w.signer).to_string(), &twice)
        .unwrap();
    assert_eq!(w.validate(&token).unwrap_err().rule(), "format");
}

#[test]
fn a_tampered_token_fails_its_signature() {
    let w = world();
    let good = w.good();
    // Another payload under the original signature.
    let (signing_input, signature) = good.rsplit_once('.').unwrap();
    let (head, _) = signing_input.split_once('.').unwrap();
    let admin = with(claims(), "sub", json!("spiffe://example.org/admin"));
    let swapped = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(admin.to_string())
    );
    assert_eq!(w.validate(&swapped).unwrap_err(), JwtError::Signature);
    // A signature of the wrong size.
    let short = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode([1u8; 63]));
    assert_eq!(w.validate(&short).unwrap_err(), JwtError::Signature);
}

#[test]
fn the_key_must_suit_the_algorithm() {
    let w = world();
    // An ES384 header over example.org's P-256 key.
    let error = w.refused(&with(header(&w.signer), "alg", json!("ES384")), &claims());
    assert!(matches!(error, JwtError::KeyMismatch { .. }), "{error}");
    let error = w.refused(&with(header(&w.signer), "alg", json!("RS256")), &claims());
    assert!(matches!(error, JwtError::KeyMismatch { .. }), "{error}");
}

#[test]
fn every_algorithm_of_the_specification_validates() {
    let rsa = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];
    let mut signers: Vec<JwtSigner> = rsa
        .iter()
        .map(|alg| JwtSigner::new(rsa_key(), *alg, alg.as_str()).unwrap())
        .collect();
    signers.push(
        JwtSigner::new(
            ec_key(&rcgen::PKCS_ECDSA_P384_SHA384),
            Algorithm::ES384,
            "ES384",
        )
        .unwrap(),
    );
    // The RSA signers share one key: publish it once per kid.
    let bundle = bundle_of("example.org", &signers.iter().collect::<Vec<_>>());
    let bundles: JwtBundleSet = [bundle].into_iter().collect();
    let validator = JwtSvidValidator::new().unwrap();
    for signer in &signers {
        let token = signer.sign_claims(&claims()).unwrap();
        let svid = validator
            .validate(&token, AUDIENCE, &bundles)
            .unwrap_or_else(|e| panic!("{}: {e}", signer.alg()));
        assert_eq!(svid.spiffe_id().to_string(), SUBJECT);
    }
}

#[test]
fn es512_validates_though_ring_has_no_p521() {
    use p521::ecdsa::signature::Signer;
    let key = p521::ecdsa::SigningKey::from_slice(&[1u8; 66]).unwrap();
    let point = p521::ecdsa::VerifyingKey::from(&key).to_encoded_point(false);
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-521", "kid": "k512", "use": "jwt-svid",
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
        "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
    }]});
    let bundle =
        JwtBundle::parse("example.org".parse().unwrap(), jwks.to_string().as_bytes()).unwrap();
    let bundles: JwtBundleSet = [bundle].into_iter().collect();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES512", "kid": "k512"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let signature: p521::ecdsa::Signature = key.sign(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    let validator = JwtSvidValidator::new().unwrap();
    validator.validate(&token, AUDIENCE, &bundles).unwrap();
    // Twin: one bit off.
    let mut bytes = signature.to_bytes().to_vec();
    bytes[10] ^= 1;
    let bad = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(bytes));
    assert_eq!(
        validator.validate(&bad, AUDIENCE, &bundles).unwrap_err(),
        JwtError::Signature
    );
}
