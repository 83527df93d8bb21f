//! The dev server's HTTP/2 header shim on any client bytes: it rewrites them or refuses them
//! with an I/O error, and never panics. Built only with the `h2_header_shim` feature (see
//! `fuzz/Cargo.toml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result: Result<Vec<u8>, std::io::Error> =
        spiffe_mtls::dev_server::rewrite_client_bytes(data);
    let _ = result;
});
