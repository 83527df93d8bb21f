//! The X.509 context: the SVIDs of a workload and the bundles it trusts, as one Workload API
//! update delivers them.

use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::SourceError;
use super::limits::{UpdateLimits, UpdateShape};

use crate::bundle::{BundleError, BundleSet, X509Bundle};
use crate::spiffe_id::{IdError, TrustDomain};
use crate::svid::{SvidError, X509Svid};
use crate::workload::proto::X509svidResponse;

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
    /// The update is past one of its [`UpdateLimits`].
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
    bundles: BundleSet,
}

impl X509Context {
    /// A context of these SVIDs (at least one) and bundles.
    ///
    /// # Errors
    /// [`ContextError::NoSvid`] without SVIDs; [`ContextError::DuplicateHint`].
    pub fn new(svids: Vec<X509Svid>, bundles: BundleSet) -> Result<Self, ContextError> {
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
            bundles: self.bundles.clone(),
        })
    }
}

impl TryFrom<&spiffe::X509Context> for X509Context {
    type Error = ContextError;

    /// As [`X509Context::from_spiffe`] with the default [`UpdateLimits`].
    fn try_from(context: &spiffe::X509Context) -> Result<Self, ContextError> {
        Self::from_spiffe(context, &UpdateLimits::default())
    }
}

impl X509Context {
    /// Re-checks a context the `spiffe` crate accepted against this crate's stricter rules,
    /// within `limits`.
    ///
    /// # Errors
    /// [`ContextError::LimitExceeded`] before anything is parsed when the context is past a
    /// limit; else the first SVID or bundle that breaks a rule.
    pub fn from_spiffe(
        context: &spiffe::X509Context,
        limits: &UpdateLimits,
    ) -> Result<Self, ContextError> {
        let mut shape = UpdateShape {
            svids: context.svids().len(),
            bundles: context.bundle_set().len(),
            ..UpdateShape::default()
        };
        for svid in context.svids() {
            shape.chain_lengths.push(svid.cert_chain().len());
            shape.bytes += svid.private_key().as_bytes().len();
            shape.bytes += svid
                .cert_chain()
                .iter()
                .map(|cert| cert.as_bytes().len())
                .sum::<usize>();
        }
        for (_, bundle) in context.bundle_set().iter() {
            shape.bundle_roots.push(bundle.authorities().len());
            shape.bytes += bundle
                .authorities()
                .iter()
                .map(|cert| cert.as_bytes().len())
                .sum::<usize>();
        }
        limits.check_update(&shape)?;
        let mut svids = Vec::with_capacity(context.svids().len());
        for (index, svid) in context.svids().iter().enumerate() {
            let chain = svid
                .cert_chain()
                .iter()
                .map(|cert| CertificateDer::from(cert.as_bytes().to_vec()))
                .collect();
            let key = PrivatePkcs8KeyDer::from(svid.private_key().as_bytes().to_vec()).into();
            let mut ours = X509Svid::from_der(chain, key)
                .map_err(|error| ContextError::Svid { index, error })?;
            if let Some(hint) = svid.hint().filter(|hint| !hint.is_empty()) {
                ours = ours.with_hint(hint);
            }
            svids.push(ours);
        }
        let mut bundles = BundleSet::new();
        for (trust_domain, theirs) in context.bundle_set().iter() {
            let roots: Vec<CertificateDer<'static>> = theirs
                .authorities()
                .iter()
                .map(|cert| CertificateDer::from(cert.as_bytes().to_vec()))
                .collect();
            bundles.insert(bundle(trust_domain.as_ref(), roots)?);
        }
        Self::new(svids, bundles)
    }
}

/// Splits concatenated DER certificates.
///
/// # Errors
/// A message when the bytes do not split into whole DER elements.
pub(crate) fn split_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::verify::split_der_sequence(bytes)
        .map(|parts| {
            parts
                .into_iter()
                .map(|p| CertificateDer::from(p.to_vec()))
                .collect()
        })
        .map_err(|e| format!("concatenated certificates: {e}"))
}

/// The trust domain of a bundle key: `spiffe://td` (as SPIRE sends) or a bare name.
fn bundle_trust_domain(key: &str) -> Result<TrustDomain, IdError> {
    match key.strip_prefix("spiffe://") {
        Some(name) => TrustDomain::new(name),
        None => TrustDomain::new(key),
    }
}

/// The bundle of the trust domain named by an update's `key`.
fn bundle(key: &str, roots: Vec<CertificateDer<'static>>) -> Result<X509Bundle, ContextError> {
    let trust_domain = bundle_trust_domain(key)?;
    X509Bundle::new(trust_domain, roots).map_err(|error| ContextError::Bundle {
        trust_domain: key.to_owned(),
        error,
    })
}

impl TryFrom<X509svidResponse> for X509Context {
    type Error = ContextError;

    /// As [`X509Context::from_response`] with the default [`UpdateLimits`].
    fn try_from(response: X509svidResponse) -> Result<Self, ContextError> {
        Self::from_response(response, &UpdateLimits::default())
    }
}

impl X509Context {
    /// Checks every SVID (profile, key, stated ID) and every bundle of a Workload API update,
    /// within `limits`.
    ///
    /// # Errors
    /// [`ContextError::LimitExceeded`] before any certificate is parsed when the update is
    /// past a limit; else the first SVID or bundle that breaks a rule.
    pub fn from_response(
        response: X509svidResponse,
        limits: &UpdateLimits,
    ) -> Result<Self, ContextError> {
        let mut shape = UpdateShape {
            svids: response.svids.len(),
            bundles: response.federated_bundles.len(),
            ..UpdateShape::default()
        };
        UpdateLimits::check("SVIDs in the update", shape.svids, limits.max_svids)?;
        UpdateLimits::check("bundles in the update", shape.bundles, limits.max_bundles)?;
        let mut chains = Vec::with_capacity(response.svids.len());
        for item in &response.svids {
            shape.bytes += item.x509_svid.len() + item.x509_svid_key.len() + item.bundle.len();
            UpdateLimits::check("bytes in the update", shape.bytes, limits.max_message_bytes)?;
            let chain = split_certificates(&item.x509_svid).map_err(ContextError::Der)?;
            shape.chain_lengths.push(chain.len());
            chains.push(chain);
        }
        let mut federated = Vec::with_capacity(response.federated_bundles.len());
        for (key, der) in &response.federated_bundles {
            shape.bytes += der.len();
            UpdateLimits::check("bytes in the update", shape.bytes, limits.max_message_bytes)?;
            let roots = split_certificates(der).map_err(ContextError::Der)?;
            shape.bundle_roots.push(roots.len());
            federated.push((key.as_str(), roots));
        }
        limits.check_update(&shape)?;

        let mut bundles = BundleSet::new();
        let mut svids = Vec::with_capacity(chains.len());
        for (index, (item, chain)) in response.svids.iter().zip(chains).enumerate() {
            let key = PrivatePkcs8KeyDer::from(item.x509_svid_key.clone()).into();
            let mut svid = X509Svid::from_der(chain, key)
                .map_err(|error| ContextError::Svid { index, error })?;
            if svid.spiffe_id().to_string() != item.spiffe_id {
                return Err(ContextError::IdMismatch {
                    index,
                    stated: item.spiffe_id.clone(),
                    actual: svid.spiffe_id().to_string(),
                });
            }
            if !item.hint.is_empty() {
                svid = svid.with_hint(item.hint.clone());
            }
            let trust_domain = svid.spiffe_id().trust_domain().clone();
            if bundles.get(&trust_domain).is_none() {
                let roots = split_certificates(&item.bundle).map_err(ContextError::Der)?;
                UpdateLimits::check("roots in a bundle", roots.len(), limits.max_bundle_roots)?;
                bundles.insert(bundle(trust_domain.as_str(), roots)?);
            }
            svids.push(svid);
        }
        for (key, roots) in federated {
            bundles.insert(bundle(key, roots)?);
        }
        Self::new(svids, bundles)
    }
}
