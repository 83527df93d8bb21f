//! Which files a [`FileSource`](super::FileSource) reads, and which trust domain each bundle
//! file is bound to.

use std::path::{Path, PathBuf};

use super::SourceError;
use crate::spiffe_id::TrustDomain;

/// How a bundle file is bound to a trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    /// The bundle of the SVID's own trust domain: only its roots.
    Local,
    /// A federated bundle of exactly this trust domain (never the local one).
    Federated(TrustDomain),
    /// A federated bundle whose roots name their trust domain in a `spiffe://` URI SAN, one
    /// trust domain per file, never the local one (spire-agent's index-named files).
    FederatedByUriSan,
}

/// Which files hold an SVID, its key and the bundles, and the trust domain each bundle file
/// belongs to.
///
/// The bundle file holds the roots of the SVID's own trust domain only: a root in it whose
/// `spiffe://` URI SAN names another trust domain is refused. Each federated bundle file
/// belongs to exactly one trust domain, never the SVID's own; a root that names another trust
/// domain than its file's is refused with an error that names the file. (spiffe-helper's
/// `include_federated_domains` appends federated roots to its bundle file, where nothing binds
/// them to their trust domain: point the source at separate federated files instead.)
///
/// # The `fetch --write` layout
///
/// `spiffe-mtls fetch --write DIR` writes, for the SVID at index `N` (0 is the default):
///
/// | file | holds | trust domain |
/// |---|---|---|
/// | `svid.N.pem` | the SVID chain, leaf first | the SVID's |
/// | `svid.N.key` | its PKCS#8 key (mode 0600) | |
/// | `bundle.N.pem` | the roots of the SVID's own trust domain | the SVID's, only |
/// | `federated_bundle.N.td.<trust-domain>.pem` | the roots of one federated trust domain | the one in the name |
///
/// The trust domain of a federated file is part of its name, so it changes with the file's
/// content in one atomic rename: a file never lends its roots to another trust domain.
///
/// `spire-agent api fetch x509 -write DIR` names federated files by position instead
/// (`federated_bundle.N.M.pem`, `M` a number). Such a file is bound by the `spiffe://` URI
/// SAN of its roots, the only binding there is: every root must name the same trust domain,
/// and never the SVID's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePaths {
    /// The SVID chain, leaf first.
    pub svid: PathBuf,
    /// The SVID's private key.
    pub key: PathBuf,
    /// The bundle of the SVID's trust domain.
    pub bundle: PathBuf,
    federated: Vec<(PathBuf, Option<TrustDomain>)>,
    /// Directory and SVID index whose federated bundle files are found at each load.
    federated_dir: Option<(PathBuf, usize)>,
}

/// The name `fetch --write` gives the federated bundle of `trust_domain` for SVID `index`:
/// `federated_bundle.<index>.td.<trust-domain>.pem`.
pub fn federated_bundle_file_name(index: usize, trust_domain: &TrustDomain) -> String {
    format!("federated_bundle.{index}.td.{}.pem", trust_domain.as_str())
}

/// What the name of a file in a `fetch --write` directory says about it, for SVID `index`:
/// `None` when it is no federated bundle file of that SVID, else its binding.
///
/// # Errors
/// A message when the name starts like a federated bundle file but is neither form.
pub(crate) fn federated_binding(name: &str, index: usize) -> Option<Result<Binding, String>> {
    let middle = name
        .strip_prefix(&format!("federated_bundle.{index}."))?
        .strip_suffix(".pem")?;
    if let Some(trust_domain) = middle.strip_prefix("td.") {
        return Some(
            TrustDomain::new(trust_domain)
                .map(Binding::Federated)
                .map_err(|e| format!("the file name's trust domain {trust_domain:?}: {e}")),
        );
    }
    if !middle.is_empty() && middle.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Ok(Binding::FederatedByUriSan));
    }
    Some(Err(format!(
        "not a federated bundle file name: expected federated_bundle.{index}.td.<trust-domain>.pem or federated_bundle.{index}.<number>.pem"
    )))
}

impl FilePaths {
    /// An SVID in `svid`, its key in `key`, the bundle of its trust domain in `bundle`.
    pub fn new(
        svid: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        bundle: impl Into<PathBuf>,
    ) -> Self {
        Self {
            svid: svid.into(),
            key: key.into(),
            bundle: bundle.into(),
            federated: Vec::new(),
            federated_dir: None,
        }
    }

    /// The layout of `spiffe-mtls fetch --write DIR` and `spire-agent api fetch x509 -write
    /// DIR` (see [`FilePaths`]): `svid.0.pem`, `svid.0.key`, `bundle.0.pem`, and
    /// every federated bundle file of SVID 0 present at each load.
    pub fn fetch_layout(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let mut paths = Self::new(
            dir.join("svid.0.pem"),
            dir.join("svid.0.key"),
            dir.join("bundle.0.pem"),
        );
        paths.federated_dir = Some((dir.to_path_buf(), 0));
        paths
    }

    /// spiffe-helper's default file names: `svid.pem`, `svid_key.pem`, `svid_bundle.pem`.
    pub fn spiffe_helper(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self::new(
            dir.join("svid.pem"),
            dir.join("svid_key.pem"),
            dir.join("svid_bundle.pem"),
        )
    }

    /// Adds a federated bundle file. With `trust_domain`, the file is the bundle of that trust
    /// domain (a root naming another one is refused); without, each root must name the file's
    /// one trust domain in a `spiffe://` URI SAN.
    #[must_use]
    pub fn with_federated(
        mut self,
        path: impl Into<PathBuf>,
        trust_domain: Option<TrustDomain>,
    ) -> Self {
        self.federated.push((path.into(), trust_domain));
        self
    }

    /// Every bundle file now, the local one first, each with its binding.
    pub(crate) fn bundle_files(&self) -> Result<Vec<(PathBuf, Binding)>, SourceError> {
        let mut files = vec![(self.bundle.clone(), Binding::Local)];
        files.extend(self.federated.iter().map(|(path, trust_domain)| {
            let binding = trust_domain
                .clone()
                .map_or(Binding::FederatedByUriSan, Binding::Federated);
            (path.clone(), binding)
        }));
        if let Some((dir, index)) = &self.federated_dir {
            let entries = std::fs::read_dir(dir).map_err(|e| SourceError::File {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            let mut found = Vec::new();
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                    continue;
                };
                match federated_binding(name, *index) {
                    None => {}
                    Some(Ok(binding)) => found.push((path, binding)),
                    Some(Err(reason)) => return Err(SourceError::File { path, reason }),
                }
            }
            found.sort_by(|a, b| a.0.cmp(&b.0));
            files.extend(found);
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td(name: &str) -> TrustDomain {
        name.parse().unwrap()
    }

    #[test]
    fn names_bind_federated_files() {
        let name = federated_bundle_file_name(0, &td("partner.org"));
        assert_eq!(name, "federated_bundle.0.td.partner.org.pem");
        assert_eq!(
            federated_binding(&name, 0),
            Some(Ok(Binding::Federated(td("partner.org"))))
        );
        // an all-digit trust domain is still told apart from spire-agent's index names
        assert_eq!(
            federated_binding(&federated_bundle_file_name(0, &td("42")), 0),
            Some(Ok(Binding::Federated(td("42"))))
        );
        assert_eq!(
            federated_binding("federated_bundle.0.3.pem", 0),
            Some(Ok(Binding::FederatedByUriSan))
        );
    }

    #[test]
    fn other_files_are_not_federated_bundles() {
        for name in [
            "bundle.0.pem",
            "svid.0.pem",
            "federated_bundle.1.0.pem",
            "federated_bundle.0.0.pem.tmp",
            ".federated_bundle.0.0.pem",
        ] {
            assert_eq!(federated_binding(name, 0), None, "{name}");
        }
    }

    #[test]
    fn malformed_federated_names_are_errors() {
        for name in [
            "federated_bundle.0.partner.org.pem",
            "federated_bundle.0.td.Partner.org.pem",
            "federated_bundle.0.td..pem",
            "federated_bundle.0.-1.pem",
        ] {
            assert!(matches!(federated_binding(name, 0), Some(Err(_))), "{name}");
        }
    }
}
