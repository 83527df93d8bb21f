//! Where the reference implementations built by `interop/build.sh` live: SPIRE's
//! `spire-server` and `spire-agent`, `ghostunnel`, and our go-spiffe program `go-spiffe-peer`.
//!
//! The tests that run them are `#[ignore = "... interop/build.sh ..."]` (a plain `cargo test`,
//! on a machine without Go too, lists them as ignored with that reason); `.ci/run` builds the
//! tools and runs them with `--ignored`, and then a missing tool is a failure that says how to
//! build it.
#![allow(dead_code)] // each test crate uses its own part

use std::path::PathBuf;

/// The directory holding the tools: `SPIFFE_MTLS_INTEROP_BIN`, else `bin` in
/// `SPIFFE_MTLS_INTEROP_CACHE`, else in `$XDG_CACHE_HOME` or `~/.cache` under
/// `spiffe-mtls-interop` (where `interop/build.sh` puts them).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPIFFE_MTLS_INTEROP_BIN") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("SPIFFE_MTLS_INTEROP_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(|dir| PathBuf::from(dir).join("spiffe-mtls-interop"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/spiffe-mtls-interop"))
        })
        .expect("neither SPIFFE_MTLS_INTEROP_BIN, SPIFFE_MTLS_INTEROP_CACHE nor HOME is set");
    cache.join("bin")
}

/// The path of one tool (`spire-server`, `spire-agent`, `ghostunnel`, `go-spiffe-peer`);
/// panics, naming `interop/build.sh`, when it has not been built.
pub fn tool(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the interop tools with interop/build.sh (needs Go), or point \
         SPIFFE_MTLS_INTEROP_BIN at a directory holding {name}",
        path.display()
    );
    path
}
