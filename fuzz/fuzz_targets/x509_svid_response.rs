//! A Workload API X509SVIDResponse message from any bytes, turned into an X.509 context:
//! decoding and every check of the conversion refuse bad input without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use spiffe_mtls::source::X509Context;
use spiffe_mtls::workload::proto::X509svidResponse;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = X509svidResponse::decode(data) else {
        return;
    };
    let stated: Vec<String> = response.svids.iter().map(|s| s.spiffe_id.clone()).collect();
    if let Ok(context) = X509Context::try_from(response) {
        assert_eq!(context.svids().len(), stated.len());
        assert_eq!(context.default_svid().spiffe_id().to_string(), stated[0]);
        for svid in context.svids() {
            assert!(
                context
                    .bundles()
                    .get(svid.spiffe_id().trust_domain())
                    .is_some()
            );
        }
    }
});
