//! Decision-grade audit events: each authentication and authorization decision, with the
//! evidence it was made on (the peer's leaf, the root its chain ended at, the bundles'
//! generation, the policy's digest and the rule, the route, skill, task or token), handed to
//! the [`AuditSink`]s registered in the process.
//!
//! Every decision is also a `tracing` event under [`AUDIT_TARGET`](crate::tls::AUDIT_TARGET)
//! (see [`crate::tls`]'s audit trail); the sinks get the same decisions as structured
//! [`AuditEvent`]s. [`AuditLog`] writes them as JSON lines, optionally hash-chained;
//! [`verify_chain`] (and `spiffe-mtls audit verify FILE`) checks such a chain.
//!
//! ```no_run
//! use std::sync::Arc;
//! use spiffe_mtls::audit::{self, AuditLog};
//!
//! let log = Arc::new(AuditLog::open("/var/log/agent-audit.jsonl", true)?);
//! let _registration = audit::register(log);
//! // ... serve; every decision of the process is now a line of the log.
//! # Ok::<(), std::io::Error>(())
//! ```

mod chain;
mod event;
mod log_file;
mod sink;

pub use chain::{ChainBreak, ChainError, ChainSummary, verify_chain, verify_chain_holding};
pub use event::{AuditEvent, Decision, MAX_FIELD_BYTES, rfc3339_millis, sha256_hex};
pub use log_file::{AUDIT_QUEUE, AuditLog};
pub use sink::{AuditSink, Registration, register};
pub(crate) use sink::{dispatch, enabled};
