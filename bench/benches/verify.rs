//! Verification and authorization costs per handshake, at a pinned time.
//!
//! Run: `cargo bench --bench verify`. Groups:
//! - `verify_authorize`: a leaf + one intermediate verified against the bundle, then
//!   authorized by exact ID (what a server does per handshake);
//! - `exact_id_lookup`: one exact-ID rule holding 1 and 100,000 IDs; the time must not grow
//!   with the set (hash lookup, not a scan);
//! - `hostile_extensions`: a leaf with 6,800 empty extensions (refused by size before
//!   parsing), one with the most extensions allowed (64, verified), beside the plain leaf:
//!   an unauthenticated peer must not buy more work than a normal handshake costs.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use spiffe_mtls::rustls::pki_types::{CertificateDer, UnixTime};
use spiffe_mtls::{BundleSet, SpiffeId, SvidVerifier, X509Bundle, authorize};

const ID: &str = "spiffe://example.org/agent/client";

fn params(name: &str, ca: bool, uri: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.not_before = time::macros::datetime!(2026-01-01 00:00 UTC);
    params.not_after = time::macros::datetime!(2027-01-01 00:00 UTC);
    params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("uri"))];
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    }
    params
}

/// A root in a bundle set, and a leaf + intermediate chain below it (ECDSA P-256).
fn chain_and_bundles() -> (Vec<CertificateDer<'static>>, BundleSet) {
    chain_and_bundles_with(0)
}

/// As [`chain_and_bundles`], the leaf carrying `extra` empty non-critical extensions.
fn chain_and_bundles_with(extra: u64) -> (Vec<CertificateDer<'static>>, BundleSet) {
    let root_params = params("root", true, "spiffe://example.org");
    let root_key = KeyPair::generate().expect("key");
    let root = root_params.self_signed(&root_key).expect("root");
    let int_params = params("intermediate", true, "spiffe://example.org");
    let int_key = KeyPair::generate().expect("key");
    let int = int_params
        .signed_by(&int_key, &Issuer::from_params(&root_params, &root_key))
        .expect("intermediate");
    let leaf_key = KeyPair::generate().expect("key");
    let mut leaf_params = params("leaf", false, ID);
    leaf_params.custom_extensions = (0..extra)
        .map(|i| CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 2, i], vec![]))
        .collect();
    let leaf = leaf_params
        .signed_by(&leaf_key, &Issuer::from_params(&int_params, &int_key))
        .expect("leaf");
    let bundle =
        X509Bundle::new("example.org".parse().expect("td"), [root.der().clone()]).expect("bundle");
    (
        vec![leaf.der().clone(), int.der().clone()],
        [bundle].into_iter().collect(),
    )
}

fn verify_authorize(c: &mut Criterion) {
    let (chain, bundles) = chain_and_bundles();
    let verifier = SvidVerifier::new().expect("crypto provider");
    let now = UnixTime::since_unix_epoch(Duration::from_secs(1_780_272_000)); // 2026-06-01
    let rule = authorize::id(ID.parse().expect("id"));
    let mut group = c.benchmark_group("verify_authorize");
    group.bench_function("leaf_and_intermediate", |b| {
        b.iter(|| {
            let svid = verifier
                .verify(black_box(&chain), &bundles, now)
                .expect("valid");
            rule.authorize(svid.spiffe_id()).expect("allowed");
        })
    });
    group.finish();
}

fn exact_id_lookup(c: &mut Criterion) {
    let peer: SpiffeId = "spiffe://example.org/agent/42".parse().expect("id");
    let mut group = c.benchmark_group("exact_id_lookup");
    for size in [1usize, 100_000] {
        let ids = (0..size).map(|i| {
            let n = if size == 1 { 42 } else { i };
            format!("spiffe://example.org/agent/{n}")
                .parse::<SpiffeId>()
                .expect("id")
        });
        let rule = authorize::one_of(ids);
        assert!(rule.is_allowed(&peer));
        group.bench_with_input(BenchmarkId::from_parameter(size), &rule, |b, rule| {
            b.iter(|| rule.is_allowed(black_box(&peer)))
        });
    }
    group.finish();
}

fn hostile_extensions(c: &mut Criterion) {
    let verifier = SvidVerifier::new().expect("crypto provider");
    let now = UnixTime::since_unix_epoch(Duration::from_secs(1_780_272_000)); // 2026-06-01
    let mut group = c.benchmark_group("hostile_extensions");
    let own = {
        use x509_parser::prelude::FromDer;
        let (chain, _) = chain_and_bundles();
        let (_, leaf) =
            x509_parser::certificate::X509Certificate::from_der(&chain[0]).expect("leaf");
        leaf.extensions().len() as u64
    };
    let at_limit = spiffe_mtls::verify::MAX_EXTENSIONS as u64 - own;
    for (name, extra, valid) in [
        ("plain", 0, true),
        ("64_extensions", at_limit, true),
        ("6800_extensions", 6_800, false),
    ] {
        let (chain, bundles) = chain_and_bundles_with(extra);
        assert_eq!(
            verifier.verify(&chain, &bundles, now).is_ok(),
            valid,
            "{name}"
        );
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify(black_box(&chain), &bundles, now).is_ok())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    verify_authorize,
    exact_id_lookup,
    hostile_extensions
);
criterion_main!(benches);
