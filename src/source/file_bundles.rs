//! Filing the roots of bundle files under the trust domain each file is bound to.
//!
//! Trust is bound, never inferred: a root's own `spiffe://` URI SAN may confirm its file's
//! binding, never move the root into another trust domain, and never into the local one from
//! a federated file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use super::SourceError;
use super::file_paths::Binding;
use crate::bundle::{BundleSet, X509Bundle};
use crate::spiffe_id::TrustDomain;

/// Roots per trust domain, and the file each trust domain's roots came from.
#[derive(Debug, Default)]
pub(crate) struct BoundRoots {
    roots: BTreeMap<TrustDomain, (PathBuf, Vec<CertificateDer<'static>>)>,
}

impl BoundRoots {
    /// The roots of `local`'s bundle file and of every federated file, each bound to its trust
    /// domain.
    ///
    /// # Errors
    /// [`SourceError::File`] naming the file whose roots break its binding, hold no
    /// certificate, or repeat a trust domain another file already holds.
    pub(crate) fn bind<'a>(
        local: &TrustDomain,
        files: impl IntoIterator<Item = (&'a Path, &'a Binding, &'a [u8])>,
    ) -> Result<Self, SourceError> {
        let mut bound = Self::default();
        for (path, binding, pem) in files {
            let (trust_domain, certs) = bind_file(local, path, binding, pem)?;
            if let Some((earlier, _)) = bound.roots.get(&trust_domain) {
                return Err(SourceError::File {
                    path: path.to_path_buf(),
                    reason: format!(
                        "holds the bundle of {trust_domain}, which {} already holds",
                        earlier.display()
                    ),
                });
            }
            bound
                .roots
                .insert(trust_domain, (path.to_path_buf(), certs));
        }
        Ok(bound)
    }

    /// The bundles, one per trust domain.
    ///
    /// # Errors
    /// [`SourceError::File`] naming the file whose roots do not form a bundle.
    pub(crate) fn into_bundles(self) -> Result<BundleSet, SourceError> {
        let mut bundles = BundleSet::new();
        for (trust_domain, (path, certs)) in self.roots {
            let bundle = X509Bundle::new(trust_domain, certs).map_err(|e| SourceError::File {
                path,
                reason: e.to_string(),
            })?;
            bundles.insert(bundle);
        }
        Ok(bundles)
    }
}

/// The trust domain one bundle file holds, and its roots.
fn bind_file(
    local: &TrustDomain,
    path: &Path,
    binding: &Binding,
    pem: &[u8],
) -> Result<(TrustDomain, Vec<CertificateDer<'static>>), SourceError> {
    let fail = |reason: String| SourceError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certs = crate::pem::certificates(pem).map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificates".into()));
    }
    let by_uri_san = *binding == Binding::FederatedByUriSan;
    let mut bound: Option<TrustDomain> = match binding {
        Binding::Local => Some(local.clone()),
        Binding::Federated(trust_domain) if trust_domain == local => {
            return Err(fail(format!(
                "a federated bundle file cannot hold the local trust domain {local}"
            )));
        }
        Binding::Federated(trust_domain) => Some(trust_domain.clone()),
        Binding::FederatedByUriSan => None,
    };
    for cert in &certs {
        match (named_trust_domain(cert).map_err(&fail)?, &bound) {
            (None, _) if by_uri_san => {
                return Err(fail("a root names no trust domain (no spiffe:// URI SAN) and the file name binds none: name the file federated_bundle.N.td.<trust-domain>.pem or add it with FilePaths::with_federated and its trust domain".into()));
            }
            (None, _) => {}
            (Some(named), _) if by_uri_san && named == *local => {
                return Err(fail(format!(
                    "a root of a federated bundle file names the local trust domain {local}; federated roots never join the local bundle"
                )));
            }
            (Some(named), Some(expected)) if named != *expected => {
                return Err(fail(format!(
                    "a root names trust domain {named} in its URI SAN, but this file holds the bundle of {expected}"
                )));
            }
            (Some(_), Some(_)) => {}
            (Some(named), None) => bound = Some(named),
        }
    }
    let trust_domain = bound.ok_or_else(|| fail("no certificates".into()))?;
    Ok((trust_domain, certs))
}

/// The trust domain a CA certificate names in a `spiffe://` URI SAN, if any.
fn named_trust_domain(cert: &CertificateDer<'_>) -> Result<Option<TrustDomain>, String> {
    let Some(uri) = crate::verify::first_spiffe_uri(cert).map_err(|e| format!("a root is {e}"))?
    else {
        return Ok(None);
    };
    let name = uri["spiffe://".len()..]
        .split('/')
        .next()
        .unwrap_or_default();
    TrustDomain::new(name)
        .map(Some)
        .map_err(|e| format!("a root's URI SAN {uri}: {e}"))
}
