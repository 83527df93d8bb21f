//! Workload API endpoint addresses, strict and lenient: any string either parses or is
//! refused, and a strictly parsed address prints back to an address that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiffe_mtls::workload::EndpointAddress;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strict = text.parse::<EndpointAddress>();
    if let Ok(address) = &strict {
        assert_eq!(
            address.to_string().parse::<EndpointAddress>().as_ref(),
            Ok(address)
        );
    }
    let lenient = EndpointAddress::parse_lenient(text);
    if strict.is_ok() {
        assert_eq!(lenient, strict);
    }
});
