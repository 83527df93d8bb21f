//! Why a source cannot hand out a context.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::spiffe_id::SpiffeId;
use crate::workload::AddressError;

use super::ContextError;

/// Why a source has no usable X.509 context, or could not start.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The default SVID is past its notAfter; it is not handed out.
    #[error(
        "the SVID {spiffe_id} expired at {}; refusing to use it (no fresh SVID arrived in time)",
        crate::verify::rfc3339_system_time(*expired_at)
    )]
    Expired {
        /// The SVID's ID.
        spiffe_id: SpiffeId,
        /// Its notAfter.
        expired_at: SystemTime,
    },
    /// The Workload API withdrew this workload's identity (PermissionDenied on the stream);
    /// the source recovers when an identity is issued again.
    #[error("the Workload API withdrew this workload's identity: {0}")]
    Withdrawn(String),
    /// The source was shut down.
    #[error("the X.509 source is closed")]
    Closed,
    /// No Workload API address was given and `SPIFFE_ENDPOINT_SOCKET` does not hold one.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// Nothing exists at the Unix socket path.
    #[error(
        "no Workload API socket at {0} (is the SPIRE agent or `spiffe-mtls dev-server` running, and is the path right?)"
    )]
    NoSocket(PathBuf),
    /// The endpoint exists but does not accept connections.
    #[error("cannot reach the Workload API at {address}: {reason}")]
    Unreachable {
        /// The endpoint.
        address: String,
        /// Why.
        reason: String,
    },
    /// The Workload API answered PermissionDenied: no registration entry matches this process.
    /// Made by [`SourceError::no_identity`], which names the process as a registration entry
    /// would select it.
    #[error(
        "the Workload API at {address} has no identity for this process ({process}): register one \
         whose selectors match it (the Workload API said: {reason})"
    )]
    NoIdentity {
        /// The endpoint.
        address: String,
        /// This process as the Workload API attests it: `uid 1000, path /usr/bin/app`.
        process: String,
        /// The server's message.
        reason: String,
    },
    /// The Workload API refused the request for good (InvalidArgument, Unimplemented, ...).
    #[error("the Workload API at {address} refused the request: {reason}")]
    Refused {
        /// The endpoint.
        address: String,
        /// The status and message.
        reason: String,
    },
    /// No usable context arrived in time.
    #[error("no X.509 context from {address} within {after:?}: {reason}")]
    Timeout {
        /// The endpoint.
        address: String,
        /// How long the source waited.
        after: Duration,
        /// What was observed meanwhile.
        reason: String,
    },
    /// The material does not form a valid context (bad SVID, key mismatch, bad bundle).
    #[error("invalid X.509 material: {0}")]
    Invalid(String),
    /// A file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl From<ContextError> for SourceError {
    fn from(error: ContextError) -> Self {
        Self::Invalid(error.to_string())
    }
}
