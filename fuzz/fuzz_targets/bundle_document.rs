//! Bundle documents, PEM or SPIFFE bundle JSON: any bytes either load or are refused, and the
//! roots of a loaded bundle survive a PEM round trip.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use spiffe_mtls::{TrustDomain, X509Bundle};
use spiffe_mtls::pem;

static TRUST_DOMAIN: LazyLock<TrustDomain> =
    LazyLock::new(|| "example.org".parse().expect("trust domain"));

fuzz_target!(|data: &[u8]| {
    let td = TRUST_DOMAIN.clone();
    let _ = X509Bundle::from_jwks(td.clone(), data);
    let _ = X509Bundle::from_pem(td.clone(), data);
    let _ = pem::certificates(data);
    if let Ok(bundle) = X509Bundle::parse(td.clone(), data) {
        let roots: Vec<_> = bundle.roots().cloned().collect();
        assert!(roots.iter().all(|root| bundle.contains(root)));
        if !roots.is_empty() {
            let pem = pem::encode_certificates(&roots);
            let again = X509Bundle::from_pem(td, pem.as_bytes()).expect("re-encoded bundle");
            assert!(again.roots().eq(roots.iter()));
        }
    }
});
