//! SPIFFE IDs and trust domains: any string either parses or is refused, and what parses
//! prints back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_mtls::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::new(text) {
        assert_eq!(id.to_string(), text);
        assert_eq!(id.to_string().parse::<SpiffeId>().as_ref(), Ok(&id));
        let td = id.trust_domain();
        assert_eq!(TrustDomain::new(td.as_str()).as_ref(), Ok(td));
        assert_eq!(format!("{}{}", td.id_string(), id.path()), text);
        assert!(id.path_is_within(id.path()));
        assert!(id.path_is_within(""));
    }
    if let Ok(td) = TrustDomain::new(text) {
        assert_eq!(td.as_str(), text);
        assert_eq!(
            SpiffeId::new(&td.id_string()).map(|id| id.path().len()),
            Ok(0)
        );
    }
});
