//! The X.509-SVID verifier on arbitrary chains, against a fixed bundle at a fixed time.
//!
//! Input: certificates one after the other, each as a big-endian u16 length and that many
//! bytes (a short last piece is taken as is), at most one more than the verifier accepts.
//! The bundle and time are `fuzz/fixtures/verify_chain/`, written with the seeds by
//! `cargo test --test fuzz_seeds -- --ignored`, so the seed chains are valid.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use spiffe_mtls::rustls::pki_types::{CertificateDer, UnixTime};
use spiffe_mtls::verify::MAX_CHAIN_LENGTH;
use spiffe_mtls::{BundleSet, SvidVerifier, X509Bundle};

struct Fixture {
    verifier: SvidVerifier,
    bundles: BundleSet,
    now: UnixTime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let example = X509Bundle::parse(
        "example.org".parse().expect("trust domain"),
        include_bytes!("../fixtures/verify_chain/bundle.pem"),
    )
    .expect("fixture bundle");
    let revoked = X509Bundle::empty("revoked.example.org".parse().expect("trust domain"));
    let secs: u64 = include_str!("../fixtures/verify_chain/time")
        .trim()
        .parse()
        .expect("fixture time");
    Fixture {
        verifier: SvidVerifier::new().expect("crypto provider"),
        bundles: [example, revoked].into_iter().collect(),
        now: UnixTime::since_unix_epoch(Duration::from_secs(secs)),
    }
});

fn split_chain(mut data: &[u8]) -> Vec<CertificateDer<'_>> {
    let mut chain = Vec::new();
    while let [high, low, rest @ ..] = data {
        if chain.len() > MAX_CHAIN_LENGTH {
            break;
        }
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(rest.len());
        let (cert, after) = rest.split_at(len);
        chain.push(CertificateDer::from(cert));
        data = after;
    }
    chain
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let chain = split_chain(data);
    if let Ok(svid) = fixture
        .verifier
        .verify(&chain, &fixture.bundles, fixture.now)
    {
        assert_eq!(svid.trust_domain().as_str(), "example.org");
        assert_eq!(svid.chain(), chain.as_slice());
    }
});
