//! The tests that run the `spiffe-mtls` binary and the examples as processes: `verify`,
//! `fetch`, `watch`, `jwt`, `dev-server`, the demo, the sidecar proxy in both modes, the
//! exit codes and error texts; and the A2A security tests.
//!
//! One test binary (see `tests/api/main.rs` for why). Run one file's tests with a filter,
//! e.g. `cargo test --test cli proxy_limits::`. `a2a_security` is here because it installs
//! the process's log subscriber, and the other tests here run their servers in child
//! processes, so its audit trail holds only its own events.

#[path = "../common/mod.rs"]
mod common;

#[cfg(all(feature = "cli", feature = "dev-server"))]
#[path = "../proxy_world/mod.rs"]
mod proxy_world;

#[path = "../common/webdriver.rs"]
mod webdriver;

#[cfg(all(feature = "a2a", feature = "workload-api"))]
#[path = "../../examples/support/agents.rs"]
mod agents;

mod a2a_security;
mod browser;
mod bundle_endpoint;
mod cli_demo;
mod cli_errors;
mod cli_jwt;
mod cli_verify;
mod cli_workload;
mod dashboard;
mod examples;
mod proxy;
mod proxy_agent_card;
mod proxy_errors;
mod proxy_http_hardening;
mod proxy_http_security;
mod proxy_key_exchange;
mod proxy_limits;
mod proxy_live;
