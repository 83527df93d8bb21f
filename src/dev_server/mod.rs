//! A SPIRE-compatible development Workload API server.
//!
//! [`DevServer`] serves the SPIFFE Workload API on a Unix socket (or TCP on loopback): it
//! attests callers by their socket credentials, matches them to registration entries
//! ([`DevServerConfig`]), and streams X.509-SVIDs and bundles that it issues from an
//! in-memory CA ([`DevCa`], EC P-256), rotating each SVID at half its lifetime and the CA with
//! overlap. Its handle drives it for tests: rotate now, rotate the CA, replace entries, fail
//! the next calls, end the streams, shut down.
//!
//! # Security
//! The dev server is meant for one developer's machine, but it still holds its ground against
//! other local users and hostile local clients:
//! - Sockets: the CLI's default socket directory is private ([`default_socket_dir`],
//!   [`ensure_private_dir`]: created 0700, refused when another user owns it or it is open to
//!   group or others); missing parents of any socket path are created 0700; the socket file is
//!   0600 unless [`DevServerOptions::socket_mode`] says otherwise; TCP is loopback only unless
//!   [`DevServerOptions::allow_remote_tcp`].
//! - Entries: each needs at least one selector; one without would give its identity to anyone.
//! - Attestation is bound to the connection: the Unix peer's uid and gid come from the socket,
//!   and its pid's start time and executable, recorded at accept time, are re-checked at every
//!   call and stream update (a reused pid or an `exec` is refused with `PermissionDenied`). An
//!   `exec` between the client's `connect()` and the accept, or an `exec` away and back to the
//!   same file between two checks, goes unseen. Loopback TCP callers are known by the uid that
//!   owns their socket (`/proc/net/tcp{,6}`); other TCP callers match no entry.
//! - The HTTP/2 `:authority` shim in front of every Unix connection decodes the client's HPACK
//!   within caps (16 KiB frames, 32 KiB header blocks in at most 16 CONTINUATION frames, a
//!   4096-byte dynamic table, 16 KiB decoded header lists) and closes, with a warning, any
//!   connection that sends something malformed or over a cap; the server keeps serving the
//!   others.
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
mod jwt_service;
mod peer;
mod procfs;
mod refusal;
mod server;
mod service;
mod socket;

pub use attest::{Caller, Selector};
#[doc(hidden)]
pub use authority::rewrite_client_bytes;
pub use ca::{DevCa, DevCaError, SvidRequest};
pub use config::{ConfigError, DEFAULT_SVID_TTL, DevServerConfig, Entry, parse_duration};
pub use procfs::effective_uid;
pub use refusal::CallerRefusal;
pub use server::{DevServer, DevServerError, DevServerOptions};
pub use socket::{DEFAULT_SOCKET_NAME, SocketDirError, default_socket_dir, ensure_private_dir};
