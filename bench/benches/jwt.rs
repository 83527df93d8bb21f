//! JWT-SVID validation per token, this crate's validator beside the `spiffe` crate's (its
//! `jwt-verify-aws-lc-rs` backend), on the same tokens and keys: ES256 and RS256.
//!
//! Run: `cargo bench --bench jwt`. Both validate the full token (signature, `sub`, `aud`,
//! `exp`) against a bundle set holding the signing key.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use spiffe_mtls::jwt::{Algorithm, JwtBundle, JwtBundleSet, JwtSigner, JwtSvidValidator};
use spiffe_mtls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const AUDIENCE: &str = "spiffe://example.org/reports";
const SUBJECT: &str = "spiffe://example.org/agent/client";

/// A token signed by a fresh key of `alg`, and the key's JWK Set.
fn token_and_jwks(alg: Algorithm) -> (String, String) {
    let key = match alg {
        Algorithm::ES256 => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
        }
        _ => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            include_bytes!("../../tests/data/jwt/rsa2048.key.der").to_vec(),
        )),
    };
    let signer = JwtSigner::new(key, alg, "bench-key").expect("signer");
    let token = signer
        .sign_svid(
            &SUBJECT.parse().expect("id"),
            &[AUDIENCE.to_owned()],
            SystemTime::now() + Duration::from_secs(3600),
        )
        .expect("token");
    let bundle = JwtBundle::new(
        "example.org".parse().expect("td"),
        [signer.public_key().clone()],
    )
    .expect("bundle");
    (token, bundle.to_jwks().to_string())
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_validate");
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let (token, jwks) = token_and_jwks(alg);

        let ours: JwtBundleSet =
            [
                JwtBundle::parse("example.org".parse().expect("td"), jwks.as_bytes())
                    .expect("our bundle"),
            ]
            .into_iter()
            .collect();
        let validator = JwtSvidValidator::new().expect("validator");
        assert_eq!(
            validator
                .validate(&token, AUDIENCE, &ours)
                .expect("ours validates")
                .spiffe_id()
                .to_string(),
            SUBJECT
        );
        group.bench_function(BenchmarkId::new("spiffe_mtls", alg), |b| {
            b.iter(|| validator.validate(black_box(&token), AUDIENCE, &ours))
        });

        let trust_domain = spiffe::TrustDomain::new("example.org").expect("td");
        let mut theirs_bundle = spiffe::JwtBundle::new(trust_domain);
        let document: serde_json::Value = serde_json::from_str(&jwks).expect("json");
        for key in document["keys"].as_array().expect("keys") {
            theirs_bundle
                .add_jwk_authority_json(key.to_string().as_bytes())
                .expect("their authority");
        }
        let mut theirs = spiffe::JwtBundleSet::default();
        theirs.add_bundle(theirs_bundle);
        let validated = spiffe::JwtSvid::parse_and_validate(&token, &theirs, &[AUDIENCE])
            .expect("theirs validates");
        assert_eq!(validated.spiffe_id().to_string(), SUBJECT);
        group.bench_function(BenchmarkId::new("spiffe_crate", alg), |b| {
            b.iter(|| spiffe::JwtSvid::parse_and_validate(black_box(&token), &theirs, &[AUDIENCE]))
        });
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
