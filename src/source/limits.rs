//! Bounds on what one Workload API update may hold.
//!
//! The Workload API is trusted to say who we are, not to be well behaved: a broken or
//! compromised agent could send updates that cost unbounded memory or time to check. An
//! update past any bound is dropped (with a logged reason) and the last good context stays.

use super::ContextError;

/// The bounds an update must stay within; the defaults are far above what SPIRE sends.
///
/// ```
/// use spiffe_mtls::source::UpdateLimits;
///
/// let limits = UpdateLimits::default().with_max_svids(8);
/// assert_eq!(limits.max_svids, 8);
/// assert_eq!(limits.max_chain_length, 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateLimits {
    /// The largest update, in bytes of certificates and keys (what the encoded message
    /// carries). Default 4 MiB, which is also the largest message the gRPC client decodes.
    pub max_message_bytes: usize,
    /// The most SVIDs in one update. Default 64.
    pub max_svids: usize,
    /// The most certificates in one SVID chain. Default 16, the verifier's
    /// [`MAX_CHAIN_LENGTH`](crate::verify::MAX_CHAIN_LENGTH).
    pub max_chain_length: usize,
    /// The most roots in one trust domain's bundle. Default 64.
    pub max_bundle_roots: usize,
    /// The most bundles (the local one and federated ones). Default 128.
    pub max_bundles: usize,
}

/// The default of [`UpdateLimits::max_message_bytes`].
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = crate::workload::MAX_MESSAGE_BYTES;

impl Default for UpdateLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_svids: 64,
            max_chain_length: crate::verify::MAX_CHAIN_LENGTH,
            max_bundle_roots: 64,
            max_bundles: 128,
        }
    }
}

impl UpdateLimits {
    /// Sets [`UpdateLimits::max_message_bytes`].
    #[must_use]
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets [`UpdateLimits::max_svids`].
    #[must_use]
    pub fn with_max_svids(mut self, count: usize) -> Self {
        self.max_svids = count;
        self
    }

    /// Sets [`UpdateLimits::max_chain_length`].
    #[must_use]
    pub fn with_max_chain_length(mut self, count: usize) -> Self {
        self.max_chain_length = count;
        self
    }

    /// Sets [`UpdateLimits::max_bundle_roots`].
    #[must_use]
    pub fn with_max_bundle_roots(mut self, count: usize) -> Self {
        self.max_bundle_roots = count;
        self
    }

    /// Sets [`UpdateLimits::max_bundles`].
    #[must_use]
    pub fn with_max_bundles(mut self, count: usize) -> Self {
        self.max_bundles = count;
        self
    }

    /// Checks one count against its bound.
    pub(crate) fn check(what: &'static str, count: usize, max: usize) -> Result<(), ContextError> {
        if count > max {
            return Err(ContextError::LimitExceeded { what, count, max });
        }
        Ok(())
    }

    /// Checks the shape of an update before anything in it is parsed: its size, how many
    /// SVIDs and bundles, and, per SVID and bundle, how many certificates.
    pub(crate) fn check_update(&self, update: &UpdateShape) -> Result<(), ContextError> {
        Self::check("bytes in the update", update.bytes, self.max_message_bytes)?;
        Self::check("SVIDs in the update", update.svids, self.max_svids)?;
        Self::check("bundles in the update", update.bundles, self.max_bundles)?;
        if let Some(&longest) = update.chain_lengths.iter().max() {
            Self::check(
                "certificates in an SVID chain",
                longest,
                self.max_chain_length,
            )?;
        }
        if let Some(&largest) = update.bundle_roots.iter().max() {
            Self::check("roots in a bundle", largest, self.max_bundle_roots)?;
        }
        Ok(())
    }
}

/// What an update holds, counted without parsing it.
#[derive(Debug, Default)]
pub(crate) struct UpdateShape {
    /// Bytes of certificates and keys.
    pub(crate) bytes: usize,
    /// SVIDs.
    pub(crate) svids: usize,
    /// Bundles.
    pub(crate) bundles: usize,
    /// Certificates of each SVID chain.
    pub(crate) chain_lengths: Vec<usize>,
    /// Roots of each bundle.
    pub(crate) bundle_roots: Vec<usize>,
}
