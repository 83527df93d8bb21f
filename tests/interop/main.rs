//! The crate against implementations we did not write: the Python `spiffe` package and
//! PyJWT, the official Python A2A SDK, the Rust `spiffe` crate, go-spiffe and a real SPIRE.
//!
//! One test binary (see `tests/api/main.rs` for why). The tests that need a tool a plain
//! `cargo test` may not have are ignored with the reason; `.ci/run` runs them with a filter,
//! e.g. `cargo test --test interop interop_spire:: -- --ignored`.

#[cfg(all(feature = "a2a", feature = "workload-api"))]
#[path = "../../examples/support/agents.rs"]
mod agents;

#[cfg(all(feature = "oauth", feature = "federation"))]
#[path = "../../examples/support/keycloak.rs"]
mod keycloak;
#[cfg(all(
    feature = "oauth",
    feature = "federation",
    feature = "a2a",
    feature = "dev-server"
))]
#[path = "../../examples/support/oauth_demo.rs"]
mod oauth_demo;

#[path = "../interop_tools/mod.rs"]
mod interop_tools;

#[cfg(all(unix, feature = "cli", feature = "dev-server"))]
#[path = "../proxy_world/mod.rs"]
mod proxy_world;

#[cfg(unix)]
#[path = "../spire_world/mod.rs"]
mod spire_world;

mod interop_a2a_python;
mod interop_card_python;
mod interop_go_spiffe;
mod interop_keycloak;
mod interop_python;
mod interop_rust_spiffe;
mod interop_spire;
