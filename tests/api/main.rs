//! The library's tests that run in this process: verifier rules and conformance data,
//! sources, configs, servers, layers, JWT-SVIDs, the dev server, audit and the agents.
//!
//! One test binary for all of them rather than one per file: each binary links the whole
//! dependency graph again, and one crate compiles the shared generic code once (issue 22:
//! the build a newcomer's `cargo test` pays for). Run one file's tests with a filter, e.g.
//! `cargo test --test api verify_rules::`. Tests that need the process to themselves (a
//! global log subscriber, RSS limits) stay in files of their own under `tests/`.

#[path = "../common/mod.rs"]
mod common;

#[cfg(all(feature = "a2a", feature = "workload-api"))]
#[path = "../../examples/support/agents.rs"]
mod agents;
#[cfg(all(feature = "a2a", feature = "dev-server"))]
#[path = "../../examples/support/demo.rs"]
mod demo;

mod a2a_jwt;
mod agents_demo;
mod audit;
mod card_signature;
mod conformance;
mod dashboard;
mod dev_server;
mod dev_server_jwt;
mod errors;
mod federation;
mod fuzz_seeds;
mod handlers;
mod http_clients;
mod jwt_http;
mod jwt_security;
mod jwt_sources;
mod jwt_validation;
mod layers;
mod live_reasons;
mod modes;
mod mtls;
mod oauth;
mod proptest_parsers;
mod resumption;
mod rotation_under_load;
mod server_limits;
mod source_file;
mod source_file_trust;
mod source_updates;
mod source_workload;
mod verify_rules;
