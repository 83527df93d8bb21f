//! Authorization policy files (TOML): any text either parses or is refused; a parsed policy
//! answers for every route it names and for one it does not.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use spiffe_mtls::{Policy, SpiffeId};

static PEERS: LazyLock<[SpiffeId; 2]> = LazyLock::new(|| {
    [
        "spiffe://example.org/ns/prod/worker".parse().expect("id"),
        "spiffe://partner.org".parse().expect("id"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::from_toml(text) else {
        return;
    };
    for peer in PEERS.iter() {
        let _ = policy.connect().is_allowed(peer);
        for route in policy.route_names() {
            let _ = policy.authorize_route(route, peer);
        }
        let unnamed = "\u{0}not a named route";
        if policy.route(unnamed).is_none() {
            assert!(policy.authorize_route(unnamed, peer).is_err());
        }
    }
});
