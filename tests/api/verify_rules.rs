//! One adversarial certificate per verifier rule, each breaking exactly that rule, and the
//! good twin that passes.

use crate::common;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use spiffe_mtls::rustls::pki_types::CertificateDer;
use spiffe_mtls::verify::{ErrorKind, MAX_CERTIFICATE_SIZE, MAX_EXTENSIONS, Position};
use spiffe_mtls::{BundleSet, SvidVerifier, VerifiedSvid, VerifyError};
use time::macros::datetime;

const ID: &str = "spiffe://example.org/agent/client";

fn verify(chain: &[CertificateDer<'_>], bundles: &BundleSet) -> Result<VerifiedSvid, VerifyError> {
    SvidVerifier::new()
        .expect("provider")
        .verify(chain, bundles, now())
}

/// A leaf from `edit`ed profile parameters, directly under a fresh example.org root.
fn leaf_result(edit: impl FnOnce(&mut CertificateParams)) -> Result<VerifiedSvid, VerifyError> {
    let root = Ca::root("example.org");
    let leaf = root.leaf_with(ID, edit);
    verify(&leaf.chain, &bundles([root.bundle("example.org")]))
}

/// A leaf under an intermediate made from `edit`ed parameters.
fn intermediate_result(
    edit: impl FnOnce(&mut CertificateParams),
) -> Result<VerifiedSvid, VerifyError> {
    let root = Ca::root("example.org");
    let intermediate = root.intermediate("intermediate", edit);
    let leaf = intermediate.leaf(ID).via(&intermediate);
    verify(&leaf.chain, &bundles([root.bundle("example.org")]))
}

#[track_caller]
fn assert_rejected(result: Result<VerifiedSvid, VerifyError>, expected: VerifyError) {
    match result {
        Ok(svid) => panic!("accepted {}, expected {expected}", svid.spiffe_id()),
        Err(error) => assert_eq!(error, expected, "message: {error}"),
    }
}

// ---- the good twins ----

#[test]
fn good_leaf_directly_under_root() {
    let svid = leaf_result(|_| {}).expect("valid");
    assert_eq!(svid.spiffe_id().to_string(), ID);
    assert_eq!(svid.trust_domain().as_str(), "example.org");
    assert_eq!(svid.chain().len(), 1);
    let expiry = datetime!(2027-01-01 00:00 UTC).unix_timestamp() as u64;
    assert_eq!(
        svid.expires_at(),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(expiry)
    );
}

#[test]
fn good_leaf_under_intermediate() {
    let svid = intermediate_result(|_| {}).expect("valid");
    assert_eq!(svid.chain().len(), 2);
}

#[test]
fn good_leaf_without_extended_key_usage() {
    leaf_result(|p| p.extended_key_usages.clear()).expect("EKU is optional");
}

#[test]
fn good_leaf_with_more_extended_key_usages() {
    leaf_result(|p| {
        p.extended_key_usages
            .push(ExtendedKeyUsagePurpose::CodeSigning)
    })
    .expect("other EKUs beside serverAuth and clientAuth are fine");
}

#[test]
fn good_leaf_with_empty_subject_and_critical_san() {
    // rcgen marks the SAN extension critical when the subject is empty
    leaf_result(|p| p.distinguished_name = DistinguishedName::new()).expect("valid");
}

#[test]
fn good_leaf_with_dns_names_besides_the_uri() {
    leaf_result(|p| p.subject_alt_names.push(dns("localhost"))).expect("DNS SANs are allowed");
}

#[test]
fn good_non_critical_unknown_extension() {
    leaf_result(|p| p.custom_extensions.push(unknown_extension(false))).expect("ignored");
}

#[test]
fn good_chain_with_root_included_and_out_of_order() {
    let root = Ca::root("example.org");
    let upper = root.intermediate("upper", |_| {});
    let lower = upper.intermediate("lower", |_| {});
    let mut leaf = lower.leaf(ID);
    // intermediates in the wrong order, and the root itself at the end
    leaf.chain
        .extend([upper.der.clone(), lower.der.clone(), root.der.clone()]);
    verify(&leaf.chain, &bundles([root.bundle("example.org")])).expect("path is built");
}

#[test]
fn good_leaf_uppercase_path_segment() {
    let root = Ca::root("example.org");
    let leaf = root.leaf("spiffe://example.org/Agent/Client");
    verify(&leaf.chain, &bundles([root.bundle("example.org")])).expect("paths may be mixed case");
}

// ---- leaf rules ----

#[test]
fn leaf_without_uri_san() {
    assert_rejected(
        leaf_result(|p| p.subject_alt_names = vec![dns("workload.example.org")]),
        VerifyError::LeafUriSanCount { count: 0 },
    );
}

#[test]
fn leaf_with_two_uri_sans() {
    assert_rejected(
        leaf_result(|p| p.subject_alt_names.push(uri("https://example.org/other"))),
        VerifyError::LeafUriSanCount { count: 2 },
    );
}

#[test]
fn leaf_with_two_spiffe_ids() {
    assert_rejected(
        leaf_result(|p| p.subject_alt_names.push(uri("spiffe://example.org/other"))),
        VerifyError::LeafUriSanCount { count: 2 },
    );
}

#[test]
fn leaf_uri_not_spiffe() {
    let error =
        leaf_result(|p| p.subject_alt_names = vec![uri("https://example.org/agent")]).unwrap_err();
    assert!(matches!(error, VerifyError::LeafIdInvalid(_)), "{error}");
}

#[test]
fn leaf_id_with_upper_case_trust_domain() {
    let root = Ca::root("example.org");
    let leaf = root.leaf("spiffe://EXAMPLE.org/agent");
    let error = verify(&leaf.chain, &bundles([root.bundle("example.org")])).unwrap_err();
    assert!(matches!(error, VerifyError::LeafIdInvalid(_)), "{error}");
    assert!(error.to_string().contains("lower case"), "{error}");
}

#[test]
fn leaf_id_with_upper_case_scheme() {
    let root = Ca::root("example.org");
    let leaf = root.leaf("SPIFFE://example.org/agent");
    let error = verify(&leaf.chain, &bundles([root.bundle("example.org")])).unwrap_err();
    assert!(matches!(error, VerifyError::LeafIdInvalid(_)), "{error}");
}

#[test]
fn leaf_id_with_dot_segment() {
    let root = Ca::root("example.org");
    let leaf = root.leaf("spiffe://example.org/agent/../admin");
    let error = verify(&leaf.chain, &bundles([root.bundle("example.org")])).unwrap_err();
    assert!(matches!(error, VerifyError::LeafIdInvalid(_)), "{error}");
}

#[test]
fn leaf_id_without_path() {
    let root = Ca::root("example.org");
    let leaf = root.leaf("spiffe://example.org");
    assert_rejected(
        verify(&leaf.chain, &bundles([root.bundle("example.org")])),
        VerifyError::LeafIdWithoutPath {
            id: "spiffe://example.org".into(),
        },
    );
}

#[test]
fn leaf_with_ca_flag() {
    assert_rejected(
        leaf_result(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
        VerifyError::LeafIsCa,
    );
}

#[test]
fn leaf_without_key_usage() {
    assert_rejected(
        leaf_result(|p| p.key_usages.clear()),
        VerifyError::LeafKeyUsageMissing,
    );
}

#[test]
fn leaf_key_usage_not_critical() {
    assert_rejected(
        leaf_result(|p| {
            p.key_usages.clear();
            p.custom_extensions.push(key_usage_digital_signature(false));
        }),
        VerifyError::LeafKeyUsageNotCritical,
    );
    // the twin: the same extension, critical
    leaf_result(|p| {
        p.key_usages.clear();
        p.custom_extensions.push(key_usage_digital_signature(true));
    })
    .expect("valid");
}

#[test]
fn leaf_without_digital_signature() {
    assert_rejected(
        leaf_result(|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]),
        VerifyError::LeafMissingDigitalSignature,
    );
}

#[test]
fn leaf_with_key_cert_sign() {
    assert_rejected(
        leaf_result(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)),
        VerifyError::LeafHasKeyCertSign,
    );
}

#[test]
fn leaf_with_crl_sign() {
    assert_rejected(
        leaf_result(|p| p.key_usages.push(KeyUsagePurpose::CrlSign)),
        VerifyError::LeafHasCrlSign,
    );
}

#[test]
fn leaf_extended_key_usage_without_client_auth() {
    assert_rejected(
        leaf_result(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
        VerifyError::LeafExtendedKeyUsage {
            missing: "clientAuth",
        },
    );
}

#[test]
fn leaf_extended_key_usage_without_server_auth() {
    assert_rejected(
        leaf_result(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]),
        VerifyError::LeafExtendedKeyUsage {
            missing: "serverAuth",
        },
    );
}

#[test]
fn leaf_extended_key_usage_with_neither() {
    assert_rejected(
        leaf_result(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning]),
        VerifyError::LeafExtendedKeyUsage {
            missing: "serverAuth and clientAuth",
        },
    );
}

// ---- rules for every certificate ----

#[test]
fn empty_subject_with_non_critical_san() {
    assert_rejected(
        leaf_result(|p| {
            p.distinguished_name = DistinguishedName::new();
            p.subject_alt_names.clear();
            p.custom_extensions.push(uri_san(ID, false));
        }),
        VerifyError::EmptySubjectWithoutCriticalSan {
            position: Position::Leaf,
        },
    );
}

#[test]
fn unknown_critical_extension() {
    assert_rejected(
        leaf_result(|p| p.custom_extensions.push(unknown_extension(true))),
        VerifyError::UnknownCriticalExtension {
            position: Position::Leaf,
            oid: "1.3.6.1.4.1.55555.1".into(),
        },
    );
}

#[test]
fn duplicate_extension() {
    assert_rejected(
        leaf_result(|p| p.custom_extensions.push(key_usage_digital_signature(true))),
        VerifyError::DuplicateExtension {
            position: Position::Leaf,
            oid: "2.5.29.15".into(),
        },
    );
}

/// `count` non-critical extensions with distinct OIDs and empty values.
fn empty_extensions(count: u64) -> Vec<rcgen::CustomExtension> {
    (0..count)
        .map(|i| rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 2, i], vec![]))
        .collect()
}

/// How many extensions the profile leaf of these tests carries by itself.
fn profile_extensions() -> usize {
    use x509_parser::prelude::FromDer;
    let leaf = Ca::root("example.org").leaf(ID);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&leaf.chain[0]).unwrap();
    cert.extensions().len()
}

#[test]
fn good_leaf_with_extensions_up_to_the_limit() {
    let extra = (MAX_EXTENSIONS - profile_extensions()) as u64;
    leaf_result(|p| p.custom_extensions = empty_extensions(extra)).expect("at the limit");
}

#[test]
fn too_many_extensions() {
    let extra = (MAX_EXTENSIONS + 1 - profile_extensions()) as u64;
    assert_rejected(
        leaf_result(|p| p.custom_extensions = empty_extensions(extra)),
        VerifyError::TooManyExtensions {
            position: Position::Leaf,
            count: MAX_EXTENSIONS + 1,
            max: MAX_EXTENSIONS,
        },
    );
}

#[test]
fn duplicate_extension_after_many_others() {
    assert_rejected(
        leaf_result(|p| {
            p.custom_extensions = empty_extensions(40);
            p.custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 55555, 2, 7],
                    vec![],
                ));
        }),
        VerifyError::DuplicateExtension {
            position: Position::Leaf,
            oid: "1.3.6.1.4.1.55555.2.7".into(),
        },
    );
}

/// The review's certificate: 6,800 empty extensions, refused before any of them is parsed.
#[test]
fn certificate_too_large() {
    let result = leaf_result(|p| p.custom_extensions = empty_extensions(6_800));
    match result {
        Err(VerifyError::CertificateTooLarge {
            position: Position::Leaf,
            size,
            max: MAX_CERTIFICATE_SIZE,
        }) => assert!(size > MAX_CERTIFICATE_SIZE),
        other => panic!("expected CertificateTooLarge, got {other:?}"),
    }
}

#[test]
fn good_certificate_at_the_size_limit() {
    // One extension whose value pads the leaf to exactly the limit; ECDSA signatures vary by a
    // byte or two, so the padding is adjusted until the size is exact.
    let root = Ca::root("example.org");
    let sign = |pad: usize| {
        root.leaf_with(ID, |p| {
            p.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 55555, 3],
                vec![0; pad],
            )];
        })
    };
    let mut pad = MAX_CERTIFICATE_SIZE - 1000;
    let leaf = (0..20)
        .find_map(|_| {
            let leaf = sign(pad);
            let size = leaf.chain[0].len();
            if size == MAX_CERTIFICATE_SIZE {
                return Some(leaf);
            }
            pad = pad + MAX_CERTIFICATE_SIZE
                - size.min(MAX_CERTIFICATE_SIZE)
                - size.saturating_sub(MAX_CERTIFICATE_SIZE);
            None
        })
        .expect("a leaf of exactly the limit");
    verify(&leaf.chain, &bundles([root.bundle("example.org")])).expect("at the limit");
    let larger = (0..20)
        .map(|_| sign(pad + 1))
        .find(|leaf| leaf.chain[0].len() == MAX_CERTIFICATE_SIZE + 1)
        .expect("a leaf one byte over the limit");
    assert!(matches!(
        verify(&larger.chain, &bundles([root.bundle("example.org")])),
        Err(VerifyError::CertificateTooLarge { size, .. }) if size == MAX_CERTIFICATE_SIZE + 1
    ));
}

#[test]
fn outer_signature_algorithm_differs_from_inner() {
    let root = Ca::root("example.org");
    let leaf = root.leaf(ID);
    let mut der = leaf.chain[0].to_vec();
    // ecdsa-with-SHA256 (1.2.840.10045.4.3.2): turn the last, outer one into SHA384 (...4.3.3)
    let oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let at = der
        .windows(oid.len())
        .rposition(|w| w == oid)
        .expect("outer OID");
    der[at + oid.len() - 1] = 0x03;
    assert_rejected(
        verify(
            &[CertificateDer::from(der)],
            &bundles([root.bundle("example.org")]),
        ),
        VerifyError::SignatureAlgorithmMismatch {
            position: Position::Leaf,
        },
    );
}

#[test]
fn garbage_and_trailing_bytes_are_malformed() {
    let root = Ca::root("example.org");
    let set = bundles([root.bundle("example.org")]);
    let error = verify(&[CertificateDer::from(b"CORRUPT".to_vec())], &set).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Malformed, "{error}");

    let mut der = root.leaf(ID).chain[0].to_vec();
    der.push(0);
    let error = verify(&[CertificateDer::from(der)], &set).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Malformed, "{error}");

    let mut leaf = root.leaf(ID);
    leaf.chain
        .push(CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]));
    let error = verify(&leaf.chain, &set).unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::Malformed {
                position: Position::Chain(1),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn empty_and_overlong_chains() {
    let root = Ca::root("example.org");
    let set = bundles([root.bundle("example.org")]);
    assert_rejected(verify(&[], &set), VerifyError::EmptyChain);
    let leaf = root.leaf(ID);
    let long = vec![leaf.chain[0].clone(); 17];
    assert_rejected(
        verify(&long, &set),
        VerifyError::ChainTooLong { count: 17, max: 16 },
    );
}

// ---- signing certificate rules ----

#[test]
fn intermediate_without_ca_flag() {
    assert_rejected(
        intermediate_result(|p| p.is_ca = IsCa::ExplicitNoCa),
        VerifyError::SigningCertNotCa {
            position: Position::Chain(1),
        },
    );
}

#[test]
fn intermediate_without_basic_constraints() {
    assert_rejected(
        intermediate_result(|p| p.is_ca = IsCa::NoCa),
        VerifyError::SigningCertNotCa {
            position: Position::Chain(1),
        },
    );
}

#[test]
fn intermediate_without_key_cert_sign() {
    assert_rejected(
        intermediate_result(|p| p.key_usages = vec![KeyUsagePurpose::CrlSign]),
        VerifyError::SigningCertMissingKeyCertSign {
            position: Position::Chain(1),
        },
    );
}

#[test]
fn intermediate_without_key_usage() {
    assert_rejected(
        intermediate_result(|p| p.key_usages.clear()),
        VerifyError::SigningCertMissingKeyCertSign {
            position: Position::Chain(1),
        },
    );
}

#[test]
fn intermediate_spiffe_id_with_path() {
    assert_rejected(
        intermediate_result(|p| p.subject_alt_names = vec![uri("spiffe://example.org/ca")]),
        VerifyError::SigningCertIdWithPath {
            position: Position::Chain(1),
            id: "spiffe://example.org/ca".into(),
        },
    );
    // the twin: no SPIFFE ID at all is fine too
    intermediate_result(|p| p.subject_alt_names.clear()).expect("valid");
}

#[test]
fn intermediate_spiffe_id_invalid() {
    let error = intermediate_result(|p| p.subject_alt_names = vec![uri("spiffe://Example.org")])
        .unwrap_err();
    assert!(
        matches!(error, VerifyError::SigningCertIdInvalid { .. }),
        "{error}"
    );
}

#[test]
fn root_is_not_held_to_the_signing_profile() {
    // a root without keyCertSign or a SPIFFE ID is still a trust anchor
    let root = Ca::root_with("example.org", |p| {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.subject_alt_names.clear();
    });
    let leaf = root.leaf(ID);
    verify(&leaf.chain, &bundles([root.bundle("example.org")])).expect("valid");
}

// ---- trust domains and bundles ----

#[test]
fn no_bundle_for_the_leafs_trust_domain() {
    // the root that signed the leaf is trusted, but for another trust domain
    let root = Ca::root("example.org");
    let leaf = root.leaf(ID);
    assert_rejected(
        verify(&leaf.chain, &bundles([root.bundle("other.org")])),
        VerifyError::NoBundle {
            trust_domain: td("example.org"),
        },
    );
}

#[test]
fn cross_trust_domain_chain() {
    // partner.org's CA issues an example.org ID; both bundles are held
    let example = Ca::root("example.org");
    let partner = Ca::root("partner.org");
    let forged = partner.leaf(ID);
    assert_rejected(
        verify(
            &forged.chain,
            &bundles([example.bundle("example.org"), partner.bundle("partner.org")]),
        ),
        VerifyError::UnknownIssuer {
            trust_domain: td("example.org"),
        },
    );
}

#[test]
fn empty_bundle_trusts_nothing() {
    let root = Ca::root("example.org");
    let leaf = root.leaf(ID);
    let empty = spiffe_mtls::X509Bundle::empty(td("example.org"));
    assert_rejected(
        verify(&leaf.chain, &bundles([empty])),
        VerifyError::EmptyBundle {
            trust_domain: td("example.org"),
        },
    );
}

#[test]
fn unknown_issuer() {
    let trusted = Ca::root("example.org");
    let stranger = Ca::root("example.org");
    let leaf = stranger.leaf(ID);
    let error = verify(&leaf.chain, &bundles([trusted.bundle("example.org")])).unwrap_err();
    // same subject name, different key: the signature check is what fails
    assert_eq!(error.kind(), ErrorKind::BadSignature, "{error}");

    let named_apart = Ca::root_with("example.org", |p| {
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "another root");
    });
    let leaf = named_apart.leaf(ID);
    assert_rejected(
        verify(&leaf.chain, &bundles([trusted.bundle("example.org")])),
        VerifyError::UnknownIssuer {
            trust_domain: td("example.org"),
        },
    );
}

#[test]
fn forged_signature() {
    let root = Ca::root("example.org");
    let other_key = KeyPair::generate().unwrap();
    let forger = Issuer::from_params(&root.params, &other_key);
    let key = KeyPair::generate().unwrap();
    let leaf = leaf_params(ID).signed_by(&key, &forger).unwrap();
    assert_rejected(
        verify(
            &[leaf.der().clone()],
            &bundles([root.bundle("example.org")]),
        ),
        VerifyError::BadSignature {
            position: Position::Leaf,
        },
    );
}

#[test]
fn unsupported_signature_algorithm() {
    let root = Ca::root("example.org");
    let leaf = root.leaf(ID);
    let error = SvidVerifier::with_algorithms(&[])
        .verify(&leaf.chain, &bundles([root.bundle("example.org")]), now())
        .unwrap_err();
    assert_rejected(
        Err(error),
        VerifyError::UnsupportedSignatureAlgorithm {
            position: Position::Leaf,
        },
    );
}

// ---- time ----

#[test]
fn expired_leaf() {
    assert_rejected(
        leaf_result(|p| p.not_after = datetime!(2026-05-31 23:59:59 UTC)),
        VerifyError::Expired {
            position: Position::Leaf,
            not_after: "2026-05-31T23:59:59Z".into(),
        },
    );
}

#[test]
fn leaf_not_yet_valid() {
    assert_rejected(
        leaf_result(|p| p.not_before = datetime!(2026-06-01 00:00:01 UTC)),
        VerifyError::NotYetValid {
            position: Position::Leaf,
            not_before: "2026-06-01T00:00:01Z".into(),
        },
    );
}

#[test]
fn validity_bounds_are_inclusive() {
    leaf_result(|p| p.not_after = datetime!(2026-06-01 00:00 UTC)).expect("valid at notAfter");
    leaf_result(|p| p.not_before = datetime!(2026-06-01 00:00 UTC)).expect("valid at notBefore");
}

#[test]
fn expired_intermediate() {
    let error = intermediate_result(|p| p.not_after = datetime!(2026-02-01 00:00 UTC)).unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::Expired {
                position: Position::Chain(1),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn expired_root() {
    let root = Ca::root_with("example.org", |p| {
        p.not_after = datetime!(2026-03-01 00:00 UTC)
    });
    let leaf = root.leaf(ID);
    let error = verify(&leaf.chain, &bundles([root.bundle("example.org")])).unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::Expired {
                position: Position::Root,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn time_is_injected() {
    let root = Ca::root("example.org");
    let leaf = root.leaf(ID);
    let set = bundles([root.bundle("example.org")]);
    let verifier = SvidVerifier::new().unwrap();
    verifier
        .verify(&leaf.chain, &set, now())
        .expect("valid now");
    let later = at(datetime!(2027-01-01 00:00:01 UTC));
    assert_eq!(
        verifier
            .verify(&leaf.chain, &set, later)
            .unwrap_err()
            .kind(),
        ErrorKind::Expired
    );
}

// ---- path length ----

#[test]
fn root_path_length_zero_forbids_intermediates() {
    let root = Ca::root_with("example.org", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))
    });
    let intermediate = root.intermediate("intermediate", |_| {});
    let leaf = intermediate.leaf(ID).via(&intermediate);
    assert_rejected(
        verify(&leaf.chain, &bundles([root.bundle("example.org")])),
        VerifyError::PathLengthExceeded {
            position: Position::Root,
            max: 0,
            found: 1,
        },
    );
    // the twin: pathLen 1 allows the one intermediate
    let root = Ca::root_with("example.org", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1))
    });
    let intermediate = root.intermediate("intermediate", |_| {});
    let leaf = intermediate.leaf(ID).via(&intermediate);
    verify(&leaf.chain, &bundles([root.bundle("example.org")])).expect("valid");
}

#[test]
fn intermediate_path_length_zero_forbids_another_intermediate() {
    let root = Ca::root("example.org");
    let upper = root.intermediate("upper", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))
    });
    let lower = upper.intermediate("lower", |_| {});
    let leaf = lower.leaf(ID).via(&lower).via(&upper);
    assert_rejected(
        verify(&leaf.chain, &bundles([root.bundle("example.org")])),
        VerifyError::PathLengthExceeded {
            position: Position::Chain(2),
            max: 0,
            found: 1,
        },
    );
    // the twin: pathLen 0 on the lowest intermediate is fine
    let root = Ca::root("example.org");
    let only = root.intermediate("only", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))
    });
    let leaf = only.leaf(ID).via(&only);
    verify(&leaf.chain, &bundles([root.bundle("example.org")])).expect("valid");
}

#[test]
fn path_depth_is_capped_at_eight_intermediates() {
    let chain_of = |intermediates: usize| {
        let root = Ca::root("example.org");
        let mut cas: Vec<Ca> = Vec::new();
        for i in 0..intermediates {
            let parent = cas.last().unwrap_or(&root);
            let next = parent.intermediate(&format!("intermediate {i}"), |_| {});
            cas.push(next);
        }
        let mut leaf = cas.last().unwrap_or(&root).leaf(ID);
        leaf.chain.extend(cas.iter().rev().map(|ca| ca.der.clone()));
        verify(&leaf.chain, &bundles([root.bundle("example.org")]))
    };
    chain_of(8).expect("eight intermediates are allowed");
    assert_rejected(chain_of(9), VerifyError::PathTooDeep { max: 8 });
}

// ---- name constraints ----

fn constrained_root(
    edit: impl FnOnce(&mut CertificateParams),
) -> Result<VerifiedSvid, VerifyError> {
    let root = Ca::root_with("example.org", edit);
    let leaf = root.leaf_with(ID, |p| p.subject_alt_names.push(dns("agent.example.org")));
    verify(&leaf.chain, &bundles([root.bundle("example.org")]))
}

#[test]
fn uri_name_constraint_is_honored_not_refused() {
    constrained_root(|p| {
        p.custom_extensions
            .push(uri_name_constraints(&["example.org"], &[]))
    })
    .expect("the trust domain is the permitted host");
    constrained_root(|p| {
        p.custom_extensions
            .push(uri_name_constraints(&[".org"], &[]))
    })
    .expect("the trust domain is below the permitted domain");
}

#[test]
fn uri_name_constraint_permitted_elsewhere() {
    let error = constrained_root(|p| {
        p.custom_extensions
            .push(uri_name_constraints(&["other.org"], &[]))
    })
    .unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::NameConstraintViolation {
                position: Position::Root,
                constrained: Position::Leaf,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("outside the permitted subtrees"),
        "{error}"
    );
}

#[test]
fn uri_name_constraint_excluded() {
    let error = constrained_root(|p| {
        p.custom_extensions
            .push(uri_name_constraints(&[], &["example.org"]))
    })
    .unwrap_err();
    assert!(error.to_string().contains("excluded subtree"), "{error}");
}

#[test]
fn uri_name_constraint_on_intermediate() {
    let error = intermediate_result(|p| {
        p.subject_alt_names.clear();
        p.custom_extensions
            .push(uri_name_constraints(&["partner.org"], &[]));
    })
    .unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::NameConstraintViolation {
                position: Position::Chain(1),
                ..
            }
        ),
        "{error}"
    );
    intermediate_result(|p| {
        p.subject_alt_names.clear();
        p.custom_extensions
            .push(uri_name_constraints(&["example.org"], &[]));
    })
    .expect("valid");
}

#[test]
fn dns_name_constraints() {
    constrained_root(|p| {
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName("example.org".into())],
            excluded_subtrees: vec![],
        })
    })
    .expect("agent.example.org is within example.org");
    let error = constrained_root(|p| {
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName("example.com".into())],
            excluded_subtrees: vec![],
        })
    })
    .unwrap_err();
    assert!(
        matches!(error, VerifyError::NameConstraintViolation { .. }),
        "{error}"
    );
}

#[test]
fn unevaluated_name_constraint_form_fails_closed() {
    let error = constrained_root(|p| {
        let mut dn = DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "Somebody else");
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DirectoryName(dn)],
            excluded_subtrees: vec![],
        })
    })
    .unwrap_err();
    assert!(error.to_string().contains("not supported"), "{error}");
}

#[test]
fn every_rule_error_has_a_kind() {
    let error = leaf_result(|p| p.key_usages.clear()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Profile);
    assert_eq!(
        error.to_string(),
        "leaf certificate has no key usage extension"
    );
}
