//! A SPIRE-compatible development Workload API server.
//!
//! [`DevServer`] serves the SPIFFE Workload API on a Unix socket (or TCP on loopback): it
//! attests callers by their socket credentials, matches them to registration entries
//! ([`DevServerConfig`]), and streams X.509-SVIDs and bundles that it issues from an
//! in-memory CA ([`DevCa`], EC P-256), rotating each SVID at half its lifetime and the CA with
//! overlap. Its handle drives it for tests: rotate now, rotate the CA, replace entries, fail
//! the next calls, end the streams, shut down.
//!
//! # Example
//! ```no_run
//! use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = DevServerConfig::one_identity(
//!     "example.org".parse()?,
//!     "spiffe://example.org/agent/server".parse()?,
//!     Duration::from_secs(3600),
//! )?;
//! let server = DevServer::start(config, "unix:///tmp/agent.sock".parse()?, DevServerOptions::default()).await?;
//! server.rotate_svids().await;
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod attest;
mod authority;
mod ca;
mod config;
mod connection;
mod hpack;
mod issuer;
mod peer;
mod procfs;
mod server;
mod service;
mod socket;

pub use attest::{Caller, Selector};
#[doc(hidden)]
pub use authority::rewrite_client_bytes;
pub use ca::{DevCa, DevCaError, SvidRequest};
pub use config::{ConfigError, DEFAULT_SVID_TTL, DevServerConfig, Entry, parse_duration};
pub use server::{DevServer, DevServerError, DevServerOptions};
pub use socket::{DEFAULT_SOCKET_NAME, SocketDirError, default_socket_dir, ensure_private_dir};
