//! Agent cards signed by an X.509-SVID: each rule of the verifier broken by one card, beside
//! its good twin that passes.
#![cfg(all(unix, feature = "a2a", feature = "dev-server"))]

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use spiffe_mtls::a2a::{CardSignatureError, MtlsAgentCard, sign_card, verify_card};
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::{BundleSet, SpiffeId, X509Svid};

const DOMAIN: &str = "cards.example";

fn ca(domain: &str) -> DevCa {
    DevCa::new(domain.parse().unwrap(), Duration::from_secs(3600)).unwrap()
}

fn id(domain: &str, path: &str) -> SpiffeId {
    format!("spiffe://{domain}/{path}").parse().unwrap()
}

fn svid(ca: &DevCa, id: &SpiffeId, lifetime: Duration) -> X509Svid {
    ca.issue(&SvidRequest::new(id.clone(), lifetime)).unwrap()
}

fn card() -> Value {
    MtlsAgentCard::new("echo agent", "https://127.0.0.1:8443/a2a")
        .skill("echo", "Echo", "Replies with the text it was sent")
        .to_json()
}

/// A signed card's first signature's protected header, decoded.
fn header(signed: &Value) -> Value {
    let protected = signed["signatures"][0]["protected"].as_str().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).unwrap()).unwrap()
}

/// `signed` with its first signature's protected header replaced by `header` (the
/// signature left as it was).
fn with_header(signed: &Value, header: &Value) -> Value {
    let mut changed = signed.clone();
    changed["signatures"][0]["protected"] = Value::from(URL_SAFE_NO_PAD.encode(header.to_string()));
    changed
}

struct World {
    ca: DevCa,
    server: SpiffeId,
    server_svid: X509Svid,
    bundles: BundleSet,
}

fn world() -> World {
    let ca = ca(DOMAIN);
    let server = id(DOMAIN, "agent/server");
    let server_svid = svid(&ca, &server, Duration::from_secs(600));
    let bundles = [ca.bundle()].into_iter().collect();
    World {
        ca,
        server,
        server_svid,
        bundles,
    }
}

#[test]
fn a_card_signed_by_the_peers_svid_verifies_whatever_the_order_of_its_members() {
    let w = world();
    let signed = sign_card(&card(), &w.server_svid).unwrap();
    let header = header(&signed);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JOSE");
    assert_eq!(
        header["x5c"].as_array().unwrap().len(),
        w.server_svid.chain().len()
    );
    let now = SystemTime::now();
    assert_eq!(
        verify_card(&signed, &w.bundles, &w.server, now).unwrap(),
        w.server
    );
    // The same card parsed with its members in another order: the same canonical bytes.
    let text = serde_json::to_string(&signed).unwrap();
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    assert!(verify_card(&reparsed, &w.bundles, &w.server, now).is_ok());
    // A signature replaces the one the card had.
    let again = sign_card(&signed, &w.server_svid).unwrap();
    assert_eq!(again["signatures"].as_array().unwrap().len(), 1);
}

#[test]
fn a_card_changed_after_signing_is_refused() {
    let w = world();
    let signed = sign_card(&card(), &w.server_svid).unwrap();
    let mut changed = signed.clone();
    changed["name"] = Value::from("evil agent");
    let error = verify_card(&changed, &w.bundles, &w.server, SystemTime::now()).unwrap_err();
    assert!(
        matches!(error, CardSignatureError::BadSignature { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("changed after signing"),
        "{error}"
    );
    let mut added = signed.clone();
    added["securitySchemes"]["mtls"]["description"] = Value::from("trust me");
    assert!(verify_card(&added, &w.bundles, &w.server, SystemTime::now()).is_err());
}

#[test]
fn a_key_the_card_names_itself_is_never_trusted() {
    let w = world();
    let signed = sign_card(&card(), &w.server_svid).unwrap();
    for parameter in ["jwk", "jku", "x5u"] {
        let mut named = header(&signed);
        named[parameter] = json!("https://attacker.example/key");
        let error = verify_card(
            &with_header(&signed, &named),
            &w.bundles,
            &w.server,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            matches!(error, CardSignatureError::SelfNamedKey { parameter: p, .. } if p == parameter),
            "{error}"
        );
        let mut unprotected = signed.clone();
        unprotected["signatures"][0]["header"] = json!({ parameter: "https://attacker.example" });
        assert!(
            matches!(
                verify_card(&unprotected, &w.bundles, &w.server, SystemTime::now()),
                Err(CardSignatureError::SelfNamedKey { .. })
            ),
            "{parameter} in the unprotected header"
        );
    }
    // Its twin: an unprotected header that names no key changes nothing.
    let mut noted = signed.clone();
    noted["signatures"][0]["header"] = json!({"note": "hello"});
    assert!(verify_card(&noted, &w.bundles, &w.server, SystemTime::now()).is_ok());
}

#[test]
fn a_chain_of_another_trust_domain_is_refused_unless_its_bundle_is_trusted() {
    let w = world();
    let other_ca = ca("other.example");
    let other = id("other.example", "agent/server");
    let signed = sign_card(&card(), &svid(&other_ca, &other, Duration::from_secs(600))).unwrap();
    let error = verify_card(&signed, &w.bundles, &other, SystemTime::now()).unwrap_err();
    assert!(matches!(error, CardSignatureError::Chain { .. }), "{error}");
    // Twin: federated with other.example, the same card verifies.
    let federated: BundleSet = [w.ca.bundle(), other_ca.bundle()].into_iter().collect();
    assert!(verify_card(&signed, &federated, &other, SystemTime::now()).is_ok());
}

#[test]
fn a_chain_from_an_impostor_ca_of_the_same_name_is_refused() {
    let w = world();
    let impostor = ca(DOMAIN);
    let signed = sign_card(
        &card(),
        &svid(&impostor, &w.server, Duration::from_secs(600)),
    )
    .unwrap();
    let error = verify_card(&signed, &w.bundles, &w.server, SystemTime::now()).unwrap_err();
    assert!(matches!(error, CardSignatureError::Chain { .. }), "{error}");
}

#[test]
fn a_card_signed_by_another_workload_of_the_trust_domain_is_refused_for_this_peer() {
    let w = world();
    let other = id(DOMAIN, "agent/other");
    let signed = sign_card(&card(), &svid(&w.ca, &other, Duration::from_secs(600))).unwrap();
    let error = verify_card(&signed, &w.bundles, &w.server, SystemTime::now()).unwrap_err();
    match &error {
        CardSignatureError::WrongSigner {
            signer, expected, ..
        } => {
            assert_eq!((&**signer, &**expected), (&other, &w.server));
        }
        other => panic!("{other}"),
    }
    assert!(
        error
            .to_string()
            .contains(&format!("signed by {other}, expected {}", w.server))
    );
    // Twin: when that workload is the peer, its card verifies.
    assert!(verify_card(&signed, &w.bundles, &other, SystemTime::now()).is_ok());
}

#[test]
fn a_signature_from_a_rotated_out_svid_past_its_expiry_is_refused() {
    let w = world();
    let short = svid(&w.ca, &w.server, Duration::from_secs(60));
    let signed = sign_card(&card(), &short).unwrap();
    let later = SystemTime::now() + Duration::from_secs(120);
    let error = verify_card(&signed, &w.bundles, &w.server, later).unwrap_err();
    assert!(matches!(error, CardSignatureError::Chain { .. }), "{error}");
    assert!(verify_card(&signed, &w.bundles, &w.server, SystemTime::now()).is_ok());
}

#[test]
fn an_alg_that_is_not_the_keys_is_refused() {
    let w = world();
    let signed = sign_card(&card(), &w.server_svid).unwrap();
    for alg in ["ES384", "RS256", "PS256", "none", "HS256"] {
        let mut changed = header(&signed);
        changed["alg"] = Value::from(alg);
        let error = verify_card(
            &with_header(&signed, &changed),
            &w.bundles,
            &w.server,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            matches!(error, CardSignatureError::AlgorithmMismatch { .. }),
            "{alg}: {error}"
        );
    }
}

#[test]
fn a_chain_swapped_after_signing_or_a_critical_header_is_refused() {
    let w = world();
    let signed = sign_card(&card(), &w.server_svid).unwrap();
    // Another valid SVID of the same workload in x5c, the signature left: the header is
    // signed, so it no longer verifies.
    let fresh = svid(&w.ca, &w.server, Duration::from_secs(600));
    let other_chain = sign_card(&card(), &fresh).unwrap();
    let mut swapped = header(&signed);
    swapped["x5c"] = header(&other_chain)["x5c"].clone();
    let error = verify_card(
        &with_header(&signed, &swapped),
        &w.bundles,
        &w.server,
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(
        matches!(error, CardSignatureError::BadSignature { .. }),
        "{error}"
    );

    let mut critical = header(&signed);
    critical["crit"] = json!(["exp"]);
    assert!(matches!(
        verify_card(
            &with_header(&signed, &critical),
            &w.bundles,
            &w.server,
            SystemTime::now()
        ),
        Err(CardSignatureError::Critical { .. })
    ));
    let mut no_chain = header(&signed);
    no_chain.as_object_mut().unwrap().remove("x5c");
    assert!(matches!(
        verify_card(
            &with_header(&signed, &no_chain),
            &w.bundles,
            &w.server,
            SystemTime::now()
        ),
        Err(CardSignatureError::Malformed { .. })
    ));
}

#[test]
fn an_unsigned_or_malformed_card_is_refused_with_its_reason() {
    let w = world();
    let now = SystemTime::now();
    assert!(matches!(
        verify_card(&card(), &w.bundles, &w.server, now),
        Err(CardSignatureError::Unsigned)
    ));
    let mut empty = card();
    empty["signatures"] = json!([]);
    assert!(matches!(
        verify_card(&empty, &w.bundles, &w.server, now),
        Err(CardSignatureError::Unsigned)
    ));
    for signature in [
        json!("not an object"),
        json!({"protected": "%%%", "signature": "x"}),
        json!({"protected": URL_SAFE_NO_PAD.encode("[1]"), "signature": "x"}),
        json!({"signature": "x"}),
    ] {
        let mut broken = card();
        broken["signatures"] = json!([signature]);
        assert!(
            matches!(
                verify_card(&broken, &w.bundles, &w.server, now),
                Err(CardSignatureError::Malformed { .. })
            ),
            "{broken}"
        );
    }
    assert!(matches!(
        verify_card(&json!([1]), &w.bundles, &w.server, now),
        Err(CardSignatureError::NotACard)
    ));
    // More signatures than are checked: refused before any is.
    let signed = sign_card(&card(), &w.server_svid).unwrap();
    let mut many = signed.clone();
    many["signatures"] = Value::Array(vec![signed["signatures"][0].clone(); 9]);
    assert!(matches!(
        verify_card(&many, &w.bundles, &w.server, now),
        Err(CardSignatureError::TooManySignatures(9))
    ));
    many["signatures"] = Value::Array(vec![signed["signatures"][0].clone(); 8]);
    assert!(verify_card(&many, &w.bundles, &w.server, now).is_ok());
    // One good signature among bad ones is enough.
    let mut mixed = signed.clone();
    mixed["signatures"] = json!([{"signature": "x"}, signed["signatures"][0].clone()]);
    assert!(verify_card(&mixed, &w.bundles, &w.server, now).is_ok());
}
