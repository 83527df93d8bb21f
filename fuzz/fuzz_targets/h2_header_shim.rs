//! The dev server's HTTP/2 header shim on any client bytes: it rewrites them or refuses them
//! with an I/O error, and never panics; what it lets through starts with the client preface.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    if let Ok(rewritten) = spiffe_mtls::dev_server::rewrite_client_bytes(data)
        && !rewritten.is_empty()
    {
        assert!(
            rewritten.starts_with(PREFACE),
            "the shim forwarded bytes that do not start with the preface"
        );
    }
});
