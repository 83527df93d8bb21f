//! The go-spiffe conformance data (tests/data/go-spiffe, see its CONFORMANCE.md) and the
//! outcomes go-spiffe's own tests expect.

use std::path::PathBuf;

use spiffe_mtls::pem;
use spiffe_mtls::verify::Position;
use spiffe_mtls::{BundleError, SvidError, TrustDomain, VerifyError, X509Bundle, X509Svid};

fn data(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/go-spiffe")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn load_svid(certs: &str, key: &str) -> Result<X509Svid, SvidError> {
    X509Svid::from_pem(
        &data(&format!("x509svid/{certs}")),
        &data(&format!("x509svid/{key}")),
    )
}

#[test]
fn svid_loading_outcomes() {
    type Check = fn(&Result<X509Svid, SvidError>) -> bool;
    let cases: &[(&str, &str, Check)] = &[
        ("good-leaf-only.pem", "key-pkcs8-rsa.pem", |r| r.is_ok()),
        (
            "good-leaf-and-intermediate.pem",
            "key-pkcs8-ecdsa.pem",
            |r| r.is_ok(),
        ),
        ("good-key-and-cert.pem", "good-key-and-cert.pem", |r| {
            r.is_ok()
        }),
        ("good-cert-and-key.pem", "good-cert-and-key.pem", |r| {
            r.is_ok()
        }),
        ("key-pkcs8-rsa.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(r, Err(SvidError::NoCertificates))
        }),
        ("good-leaf-only.pem", "good-leaf-only.pem", |r| {
            matches!(r, Err(SvidError::NoPrivateKey))
        }),
        ("good-leaf-only.pem", "not-pem", |r| {
            matches!(r, Err(SvidError::KeyPem(pem::PemError::NotPem)))
        }),
        ("not-pem", "key-pkcs8-rsa.pem", |r| {
            matches!(r, Err(SvidError::CertificatesPem(pem::PemError::NotPem)))
        }),
        ("good-leaf-only.pem", "corrupt-key.pem", |r| {
            matches!(r, Err(SvidError::CorruptKey(_)))
        }),
        ("corrupt-cert.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(r, Err(SvidError::Invalid(VerifyError::Malformed { .. })))
        }),
        ("good-leaf-and-intermediate.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(r, Err(SvidError::KeyMismatch))
        }),
        ("wrong-leaf-empty-id.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(
                r,
                Err(SvidError::Invalid(VerifyError::LeafUriSanCount {
                    count: 0
                }))
            )
        }),
        ("wrong-leaf-ca-true.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(r, Err(SvidError::Invalid(VerifyError::LeafIsCa)))
        }),
        (
            "wrong-leaf-no-digital-signature.pem",
            "key-pkcs8-rsa.pem",
            |r| {
                matches!(
                    r,
                    Err(SvidError::Invalid(VerifyError::LeafMissingDigitalSignature))
                )
            },
        ),
        ("wrong-leaf-cert-sign.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(r, Err(SvidError::Invalid(VerifyError::LeafHasKeyCertSign)))
        }),
        ("wrong-leaf-crl-sign.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(r, Err(SvidError::Invalid(VerifyError::LeafHasCrlSign)))
        }),
        ("wrong-intermediate-no-ca.pem", "key-pkcs8-rsa.pem", |r| {
            matches!(
                r,
                Err(SvidError::Invalid(VerifyError::SigningCertNotCa {
                    position: Position::Chain(1)
                }))
            )
        }),
        (
            "wrong-intermediate-no-key-cert-sign.pem",
            "key-pkcs8-rsa.pem",
            |r| {
                matches!(
                    r,
                    Err(SvidError::Invalid(
                        VerifyError::SigningCertMissingKeyCertSign {
                            position: Position::Chain(1)
                        }
                    ))
                )
            },
        ),
    ];
    for (certs, key, check) in cases {
        let result = load_svid(certs, key);
        assert!(check(&result), "{certs} + {key}: {result:?}");
    }
}

#[test]
fn loaded_svid_details() {
    let svid = load_svid("good-leaf-and-intermediate.pem", "key-pkcs8-ecdsa.pem").unwrap();
    assert_eq!(
        svid.spiffe_id().to_string(),
        "spiffe://example.org/workload-1"
    );
    assert_eq!(svid.chain().len(), 2);
    assert!(svid.hint().is_none());
    // the certificates expired in 2025: loading does not check time, callers can
    let expiry = svid.expires_at();
    assert!(svid.is_expired_at(expiry + std::time::Duration::from_secs(1)));
    assert!(!svid.is_expired_at(expiry));
    // key material never appears in Debug
    let shown = format!("{svid:?}");
    assert!(
        shown.contains("workload-1") && !shown.contains("key:"),
        "{shown}"
    );
}

fn td() -> TrustDomain {
    "example.org".parse().unwrap()
}

#[test]
fn spiffe_bundle_documents() {
    for ok in [
        "spiffebundle_valid_1.json",
        "spiffebundle_valid_2.json",
        "spiffebundle_valid_with_wit.json",
    ] {
        let bundle = X509Bundle::parse(td(), &data(&format!("spiffebundle/{ok}")))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(bundle.roots().len(), 1, "{ok}");
    }
    let error =
        |file: &str| X509Bundle::parse(td(), &data(&format!("spiffebundle/{file}"))).unwrap_err();
    assert_eq!(
        error("spiffebundle_missing_kid.json"),
        BundleError::JwksMissingKid { index: 1 }
    );
    assert_eq!(
        error("spiffebundle_no_keys.json"),
        BundleError::JwksWithoutKeys
    );
    assert_eq!(
        error("spiffebundle_multiple_x509.json"),
        BundleError::JwksX5cCount { index: 0, count: 2 }
    );
}

#[test]
fn pem_bundles() {
    let load = |file: &str| X509Bundle::parse(td(), &data(&format!("x509bundle/{file}")));
    assert_eq!(load("cert.pem").unwrap().roots().len(), 1);
    assert_eq!(load("certs.pem").unwrap().roots().len(), 2);
    assert_eq!(load("empty.pem").unwrap_err(), BundleError::NoCertificates);
    assert_eq!(load("not-pem.pem").unwrap_err(), BundleError::UnknownFormat);
    assert_eq!(
        X509Bundle::from_pem(td(), &data("x509bundle/not-pem.pem")).unwrap_err(),
        BundleError::Pem(pem::PemError::NotPem)
    );
    assert!(matches!(
        load("corrupted.pem").unwrap_err(),
        BundleError::CorruptCertificate { index: 0, .. }
    ));
    assert_eq!(
        load("key.pem").unwrap_err(),
        BundleError::NotACertificate {
            index: 0,
            found: "a private key"
        }
    );
}

#[test]
fn empty_key_set_is_a_valid_empty_bundle() {
    let bundle = X509Bundle::parse(td(), br#"{"keys": []}"#).unwrap();
    assert!(bundle.is_empty());
    assert!(matches!(
        X509Bundle::parse(td(), b"{not json").unwrap_err(),
        BundleError::Json(_)
    ));
    assert!(matches!(
        X509Bundle::parse(td(), br#"{"keys": [{"use": "x509-svid", "x5c": ["!!"]}]}"#).unwrap_err(),
        BundleError::JwksX5cEncoding { index: 0, .. }
    ));
}
