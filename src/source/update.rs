//! An [`X509Context`] from a Workload API update: the messages of the Workload API itself, or
//! a context the `spiffe` crate's source accepted; both re-checked by this crate's rules,
//! within [`UpdateLimits`].

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::limits::{UpdateLimits, UpdateShape};
use super::{ContextError, X509Context};
use crate::bundle::{BundleSet, X509Bundle};
use crate::spiffe_id::{IdError, TrustDomain};
use crate::svid::X509Svid;
use crate::workload::proto::{X509BundlesResponse, X509svidResponse};

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
        Self::from_spiffe_after(context, limits, None)
    }

    /// As [`X509Context::from_spiffe`], taking from `previous` (the context this one
    /// replaces) what the update left byte for byte as it was: an SVID with the same chain,
    /// key and hint (not parsed, nor its key loaded, again), and the bundle set when every
    /// bundle is the same (shared, so peer chains verified against it stay verified). What is
    /// taken passed the same checks on the same bytes.
    ///
    /// # Errors
    /// As [`X509Context::from_spiffe`].
    pub(crate) fn from_spiffe_after(
        context: &spiffe::X509Context,
        limits: &UpdateLimits,
        previous: Option<&X509Context>,
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
            if let Some(same) = previous.and_then(|previous| unchanged_svid(previous, svid)) {
                svids.push(same.clone());
                continue;
            }
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
        if let Some(previous) = previous
            && same_bundles(previous.bundles(), context.bundle_set())
        {
            return Self::with_shared_bundles(svids, Arc::clone(previous.shared_bundles()));
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

/// The SVID of `previous` made of exactly the bytes (chain, key) and hint of `theirs`.
fn unchanged_svid<'a>(
    previous: &'a X509Context,
    theirs: &spiffe::X509Svid,
) -> Option<&'a X509Svid> {
    let hint = theirs.hint().filter(|hint| !hint.is_empty());
    previous.svids().iter().find(|ours| {
        ours.hint() == hint
            && ours.chain().len() == theirs.cert_chain().len()
            && ours
                .chain()
                .iter()
                .zip(theirs.cert_chain())
                .all(|(ours, theirs)| ours.as_ref() == theirs.as_bytes())
            && ours.private_key().secret_der() == theirs.private_key().as_bytes()
    })
}

/// Whether `ours` holds exactly the trust domains and roots (byte for byte, in order) of
/// `theirs`.
fn same_bundles(ours: &BundleSet, theirs: &spiffe::X509BundleSet) -> bool {
    ours.len() == theirs.len()
        && theirs.iter().all(|(trust_domain, theirs)| {
            let Ok(trust_domain) = bundle_trust_domain(trust_domain.as_ref()) else {
                return false;
            };
            ours.get(&trust_domain).is_some_and(|ours| {
                ours.roots().len() == theirs.authorities().len()
                    && ours
                        .roots()
                        .zip(theirs.authorities())
                        .all(|(ours, theirs)| ours.as_ref() == theirs.as_bytes())
            })
        })
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
        Self::from_response_after(response, limits, None)
    }

    /// As [`X509Context::from_response`], taking from `previous` (the context this one
    /// replaces) what the update left byte for byte as it was, by the rules of
    /// [`X509Context::from_spiffe_after`]: an SVID with the same chain, key and hint (not
    /// parsed, nor its key loaded, again; its stated ID still compared), and the bundle set
    /// when every bundle is the same.
    ///
    /// # Errors
    /// As [`X509Context::from_response`].
    pub(crate) fn from_response_after(
        response: X509svidResponse,
        limits: &UpdateLimits,
        previous: Option<&X509Context>,
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

        // Each trust domain's roots as the update states them, in the order a `BundleSet`
        // takes them (a later one replaces an earlier one of the same trust domain).
        let mut stated: Vec<(TrustDomain, String, Vec<CertificateDer<'static>>)> = Vec::new();
        let mut svids = Vec::with_capacity(chains.len());
        for (index, (item, chain)) in response.svids.iter().zip(chains).enumerate() {
            let hint = Some(item.hint.as_str()).filter(|hint| !hint.is_empty());
            let svid = match previous.and_then(|p| same_svid(p, &chain, &item.x509_svid_key, hint))
            {
                Some(same) => same.clone(),
                None => {
                    let key = PrivatePkcs8KeyDer::from(item.x509_svid_key.clone()).into();
                    let svid = X509Svid::from_der(chain, key)
                        .map_err(|error| ContextError::Svid { index, error })?;
                    match hint {
                        Some(hint) => svid.with_hint(hint),
                        None => svid,
                    }
                }
            };
            if svid.spiffe_id().to_string() != item.spiffe_id {
                return Err(ContextError::IdMismatch {
                    index,
                    stated: item.spiffe_id.clone(),
                    actual: svid.spiffe_id().to_string(),
                });
            }
            let trust_domain = svid.spiffe_id().trust_domain();
            if !stated.iter().any(|(known, _, _)| known == trust_domain) {
                let roots = split_certificates(&item.bundle).map_err(ContextError::Der)?;
                UpdateLimits::check("roots in a bundle", roots.len(), limits.max_bundle_roots)?;
                stated.push((trust_domain.clone(), trust_domain.to_string(), roots));
            }
            svids.push(svid);
        }
        for (key, roots) in federated {
            let trust_domain = bundle_trust_domain(key)?;
            stated.retain(|(known, _, _)| *known != trust_domain);
            stated.push((trust_domain, key.to_owned(), roots));
        }
        // The local bundles count too, as the `spiffe` crate counts its bundle set.
        UpdateLimits::check("bundles in the update", stated.len(), limits.max_bundles)?;
        if let Some(previous) = previous
            && same_stated_bundles(previous.bundles(), &stated)
        {
            return Self::with_shared_bundles(svids, Arc::clone(previous.shared_bundles()));
        }
        let mut bundles = BundleSet::new();
        for (trust_domain, key, roots) in stated {
            bundles.insert(X509Bundle::new(trust_domain, roots).map_err(|error| {
                ContextError::Bundle {
                    trust_domain: key,
                    error,
                }
            })?);
        }
        Self::new(svids, bundles)
    }
}

/// The SVID of `previous` made of exactly this chain, key and hint.
fn same_svid<'a>(
    previous: &'a X509Context,
    chain: &[CertificateDer<'static>],
    key: &[u8],
    hint: Option<&str>,
) -> Option<&'a X509Svid> {
    previous.svids().iter().find(|ours| {
        ours.hint() == hint && ours.chain() == chain && ours.private_key().secret_der() == key
    })
}

/// Whether `ours` holds exactly the trust domains and roots (byte for byte, in order) of
/// `stated`.
fn same_stated_bundles(
    ours: &BundleSet,
    stated: &[(TrustDomain, String, Vec<CertificateDer<'static>>)],
) -> bool {
    ours.len() == stated.len()
        && stated.iter().all(|(trust_domain, _, roots)| {
            ours.get(trust_domain).is_some_and(|ours| {
                ours.roots().len() == roots.len()
                    && ours.roots().zip(roots).all(|(ours, theirs)| ours == theirs)
            })
        })
}

/// The bundles of a `FetchX509Bundles` update, within `limits`.
///
/// # Errors
/// [`ContextError::LimitExceeded`] before any certificate is parsed when the update is past a
/// limit; else the first bundle that breaks a rule.
pub(crate) fn bundles_from_response(
    response: &X509BundlesResponse,
    limits: &UpdateLimits,
) -> Result<BundleSet, ContextError> {
    UpdateLimits::check(
        "bundles in the update",
        response.bundles.len(),
        limits.max_bundles,
    )?;
    let bytes = response.bundles.values().map(Vec::len).sum::<usize>();
    UpdateLimits::check("bytes in the update", bytes, limits.max_message_bytes)?;
    let mut bundles = BundleSet::new();
    for (key, der) in &response.bundles {
        let roots = split_certificates(der).map_err(ContextError::Der)?;
        UpdateLimits::check("roots in a bundle", roots.len(), limits.max_bundle_roots)?;
        bundles.insert(bundle(key, roots)?);
    }
    Ok(bundles)
}
