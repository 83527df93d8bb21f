//! The X.509 context: the SVIDs of a workload and the bundles it trusts, as one Workload API
//! update delivers them.

use std::sync::Arc;
use std::time::SystemTime;

use super::SourceError;

use crate::bundle::{BundleError, BundleSet};
use crate::spiffe_id::IdError;
use crate::svid::{SvidError, X509Svid};

/// Why a Workload API update is not a usable context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The update holds no SVID.
    #[error("the update holds no SVID")]
    NoSvid,
    /// An SVID is invalid.
    #[error("SVID #{index}: {error}")]
    Svid {
        /// Index in the update.
        index: usize,
        /// What is wrong.
        error: SvidError,
    },
    /// The ID the server states differs from the certificate's.
    #[error("SVID #{index}: the response says {stated} but the certificate holds {actual}")]
    IdMismatch {
        /// Index in the update.
        index: usize,
        /// The stated ID.
        stated: String,
        /// The certificate's ID.
        actual: String,
    },
    /// Two SVIDs share a hint.
    #[error("hint {0:?} appears on more than one SVID")]
    DuplicateHint(String),
    /// A bundle or its key is invalid.
    #[error("bundle of {trust_domain}: {error}")]
    Bundle {
        /// The key in the update.
        trust_domain: String,
        /// What is wrong.
        error: BundleError,
    },
    /// A bundle key is not a trust domain.
    #[error("bundle key: {0}")]
    TrustDomain(#[from] IdError),
    /// Concatenated DER does not split into certificates.
    #[error("{0}")]
    Der(String),
    /// The update is past one of its limits (`UpdateLimits`, with the `workload-api` feature).
    #[error("{count} {what}, more than the limit of {max}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// How many the update holds.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// A workload's SVIDs (the first is the default) and its trusted bundles.
#[derive(Debug, Clone)]
pub struct X509Context {
    svids: Vec<X509Svid>,
    /// Shared by the contexts that follow while the bundles stay the same (an SVID rotation,
    /// an expired SVID left out): peer chains verified against them stay verified.
    bundles: Arc<BundleSet>,
}

impl X509Context {
    /// A context of these SVIDs (at least one) and bundles.
    ///
    /// # Errors
    /// [`ContextError::NoSvid`] without SVIDs; [`ContextError::DuplicateHint`].
    pub fn new(svids: Vec<X509Svid>, bundles: BundleSet) -> Result<Self, ContextError> {
        Self::with_shared_bundles(svids, Arc::new(bundles))
    }

    /// As [`X509Context::new`], with bundles another context may share.
    pub(crate) fn with_shared_bundles(
        svids: Vec<X509Svid>,
        bundles: Arc<BundleSet>,
    ) -> Result<Self, ContextError> {
        if svids.is_empty() {
            return Err(ContextError::NoSvid);
        }
        let mut hints = std::collections::HashSet::new();
        for hint in svids.iter().filter_map(X509Svid::hint) {
            if !hints.insert(hint) {
                return Err(ContextError::DuplicateHint(hint.to_owned()));
            }
        }
        Ok(Self { svids, bundles })
    }

    /// The default SVID (the first).
    pub fn default_svid(&self) -> &X509Svid {
        &self.svids[0]
    }

    /// Every SVID, the default first.
    pub fn svids(&self) -> &[X509Svid] {
        &self.svids
    }

    /// The SVID with this hint.
    pub fn svid_by_hint(&self, hint: &str) -> Option<&X509Svid> {
        self.svids.iter().find(|s| s.hint() == Some(hint))
    }

    /// The trusted bundles: the SVIDs' own trust domain and federated ones.
    pub fn bundles(&self) -> &BundleSet {
        &self.bundles
    }

    /// The trusted bundles as shared: the same allocation for as long as a source's updates
    /// leave the bundles unchanged (what the verification cache is keyed on).
    pub(crate) fn shared_bundles(&self) -> &Arc<BundleSet> {
        &self.bundles
    }

    /// This context without the SVIDs expired at `now`.
    ///
    /// # Errors
    /// [`SourceError::Expired`] when the default SVID has expired: another SVID does not
    /// silently take its place.
    pub fn unexpired_at(&self, now: SystemTime) -> Result<Self, SourceError> {
        let default = self.default_svid();
        if default.is_expired_at(now) {
            return Err(SourceError::Expired {
                spiffe_id: default.spiffe_id().clone(),
                expired_at: default.expires_at(),
            });
        }
        Ok(Self {
            svids: self
                .svids
                .iter()
                .filter(|svid| !svid.is_expired_at(now))
                .cloned()
                .collect(),
            bundles: Arc::clone(&self.bundles),
        })
    }
}
