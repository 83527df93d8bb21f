//! Where SVIDs and bundles come from: the [`X509Source`] trait and its implementations.
//!
//! | Source | Material from | Updates |
//! |---|---|---|
//! | [`WorkloadApiSource`] | a SPIFFE Workload API (SPIRE agent, the dev server) | streamed, reconnects |
//! | [`FileSource`] | PEM files (`spiffe-mtls fetch --write`, spiffe-helper) | polled, reloaded atomically |
//! | [`StaticSource`] | memory | [`StaticSource::replace`] |
//!
//! Every source fails closed: an SVID past its notAfter is never handed out, and an update
//! that does not validate is dropped while the last good context stays in place.

mod cell;
mod context;
mod error;
mod file;
mod file_bundles;
mod file_paths;
#[cfg(feature = "workload-api")]
mod limits;
pub(crate) mod poller;
mod static_source;
#[cfg(feature = "workload-api")]
mod update;
#[cfg(feature = "workload-api")]
mod workload;
#[cfg(feature = "workload-api")]
mod workload_stream;

use std::sync::Arc;

pub use cell::Updates;
pub use context::{ContextError, X509Context};
pub use error::SourceError;
pub use file::{DEFAULT_POLL_INTERVAL, FileSource};
pub use file_paths::{FilePaths, federated_bundle_file_name};
#[cfg(feature = "workload-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
pub use limits::{DEFAULT_MAX_MESSAGE_BYTES, UpdateLimits};
pub use static_source::StaticSource;
#[cfg(feature = "workload-api")]
pub(crate) use update::bundles_from_response;
#[cfg(feature = "workload-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
pub use workload::{WorkloadApiSource, WorkloadApiSourceBuilder};

/// The current X.509 context of a workload: its SVIDs and the bundles it trusts.
///
/// Reads are lock-free (an atomic pointer load) and cheap enough for every TLS handshake.
/// [`X509Source::updates`] tells when the context changed.
pub trait X509Source: std::fmt::Debug + Send + Sync {
    /// The current context, without SVIDs that have expired.
    ///
    /// # Errors
    /// [`SourceError::Expired`] when the default SVID has expired (the source fails closed
    /// rather than present or trust a stale identity), [`SourceError::Withdrawn`] when the
    /// Workload API withdrew the identity, [`SourceError::Closed`] after shutdown.
    fn x509_context(&self) -> Result<Arc<X509Context>, SourceError>;

    /// A handle that wakes on every change of the context or of its availability.
    fn updates(&self) -> Updates;

    /// The state of the stream the source follows: `Some` for a source that streams from
    /// the Workload API on this crate's client, `None` for the others (files, memory, a
    /// `spiffe` crate source).
    fn stream_state(&self) -> Option<StreamState> {
        None
    }
}

/// The state of a Workload API stream (see [`X509Source::stream_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// An update arrived on the current stream; `false` while reconnecting.
    pub connected: bool,
    /// When the stream entered this state.
    pub since: std::time::SystemTime,
    /// How many times the stream came back after it ended or failed.
    pub reconnects: u64,
}

impl<S: X509Source + ?Sized> X509Source for Arc<S> {
    fn x509_context(&self) -> Result<Arc<X509Context>, SourceError> {
        (**self).x509_context()
    }

    fn updates(&self) -> Updates {
        (**self).updates()
    }

    fn stream_state(&self) -> Option<StreamState> {
        (**self).stream_state()
    }
}
