//! Where JWT bundles come from, on the X.509 sources' conventions: the current set read
//! lock-free, a change counter that wakes subscribers; in memory ([`StaticJwtBundles`]), from
//! files ([`JwtBundleFiles`]), or from a Workload API (`JwtSource`, feature `workload-api`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::bundle::{JwtBundle, JwtBundleSet};
use crate::source::Updates;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// Why a JWT source has nothing to hand out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtSourceError {
    /// The source was shut down.
    #[error("the JWT source is closed")]
    Closed,
    /// The Workload API could not be reached or refused.
    #[error("Workload API: {0}")]
    Workload(String),
    /// The JWT-SVID for these audiences has expired and no fresh one could be fetched: it is
    /// not handed out.
    #[error(
        "the JWT-SVID of {spiffe_id} expired at {}; refusing to use it (no fresh one could be fetched)",
        crate::verify::rfc3339_system_time(*expired_at)
    )]
    Expired {
        /// Whose token.
        spiffe_id: SpiffeId,
        /// Its `exp`.
        expired_at: SystemTime,
    },
    /// A token from the Workload API is unreadable (no `exp`).
    #[error("unusable JWT-SVID from the Workload API: {0}")]
    Invalid(String),
    /// A bundle file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A source of JWT bundles: what a validator needs.
pub trait JwtBundleSource: std::fmt::Debug + Send + Sync {
    /// The current bundles.
    ///
    /// # Errors
    /// [`JwtSourceError::Closed`] after shutdown.
    fn jwt_bundles(&self) -> Result<Arc<JwtBundleSet>, JwtSourceError>;

    /// A handle that wakes on every change of the bundles.
    fn updates(&self) -> Updates;
}

impl<S: JwtBundleSource + ?Sized> JwtBundleSource for Arc<S> {
    fn jwt_bundles(&self) -> Result<Arc<JwtBundleSet>, JwtSourceError> {
        (**self).jwt_bundles()
    }

    fn updates(&self) -> Updates {
        (**self).updates()
    }
}

/// The current bundle set behind an atomic pointer, and a change counter.
#[derive(Debug)]
pub(crate) struct JwtBundleCell {
    bundles: ArcSwap<JwtBundleSet>,
    changes: watch::Sender<u64>,
    closed: AtomicBool,
}

impl JwtBundleCell {
    pub(crate) fn new(bundles: JwtBundleSet) -> Self {
        Self {
            bundles: ArcSwap::from_pointee(bundles),
            changes: watch::Sender::new(0),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn read(&self) -> Result<Arc<JwtBundleSet>, JwtSourceError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(JwtSourceError::Closed);
        }
        Ok(self.bundles.load_full())
    }

    /// Swaps in `bundles` when they differ from the current ones; whether they did.
    pub(crate) fn publish(&self, bundles: JwtBundleSet) -> bool {
        if *self.bundles.load_full() == bundles {
            return false;
        }
        self.bundles.store(Arc::new(bundles));
        self.changes.send_modify(|generation| *generation += 1);
        true
    }

    #[cfg_attr(not(feature = "workload-api"), allow(dead_code))]
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changes.send_modify(|generation| *generation += 1);
    }

    pub(crate) fn updates(&self) -> Updates {
        Updates::from_receiver(self.changes.subscribe())
    }
}

/// Fixed JWT bundles held in memory (tests, or keys distributed out of band).
///
/// # Example
/// ```
/// use spiffe_mtls::jwt::{JwtBundleSet, JwtBundleSource, StaticJwtBundles};
///
/// let source = StaticJwtBundles::new(JwtBundleSet::new());
/// assert!(source.jwt_bundles()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StaticJwtBundles {
    cell: JwtBundleCell,
}

impl StaticJwtBundles {
    /// A source that always hands out `bundles`.
    pub fn new(bundles: JwtBundleSet) -> Self {
        Self {
            cell: JwtBundleCell::new(bundles),
        }
    }

    /// Replaces the bundles; subscribers are woken when they changed.
    pub fn set(&self, bundles: JwtBundleSet) {
        self.cell.publish(bundles);
    }
}

impl JwtBundleSource for StaticJwtBundles {
    fn jwt_bundles(&self) -> Result<Arc<JwtBundleSet>, JwtSourceError> {
        self.cell.read()
    }

    fn updates(&self) -> Updates {
        self.cell.updates()
    }
}

/// The file name that binds a JWT bundle to `trust_domain`: `<trust-domain>.jwks`, what
/// `spiffe-mtls jwt bundles --write DIR` writes and [`JwtBundleFiles`] reads.
///
/// # Example
/// ```
/// use spiffe_mtls::jwt::{jwt_bundle_file_name, jwt_bundle_file_trust_domain};
///
/// let partner = "partner.org".parse()?;
/// assert_eq!(jwt_bundle_file_name(&partner), "partner.org.jwks");
/// assert_eq!(jwt_bundle_file_trust_domain("partner.org.jwks"), Some(Ok(partner)));
/// assert_eq!(jwt_bundle_file_trust_domain(".partner.org.jwks.7.tmp"), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn jwt_bundle_file_name(trust_domain: &TrustDomain) -> String {
    format!("{}.jwks", trust_domain.as_str())
}

/// What a file name in a JWT bundle directory says: `None` when it is no bundle file (no
/// `.jwks` suffix, or hidden, as the writer's temporary files are); else the one trust domain
/// its name binds it to, or why the name binds none (the name before `.jwks` is not a trust
/// domain).
pub fn jwt_bundle_file_trust_domain(name: &str) -> Option<Result<TrustDomain, String>> {
    if name.starts_with('.') {
        return None;
    }
    let stem = name.strip_suffix(".jwks")?;
    Some(
        stem.parse()
            .map_err(|e| format!("the file name is not <trust-domain>.jwks: {e}")),
    )
}

/// JWT bundles from a directory of `<trust-domain>.jwks` files (what `spiffe-mtls jwt bundles
/// --write DIR` writes; each a JWK Set or SPIFFE bundle document), reloaded when they change.
///
/// Each file holds the bundle of the one trust domain its name binds it to
/// ([`jwt_bundle_file_trust_domain`]), and the set is exactly the files present: a trust domain
/// whose file is removed (`jwt bundles --write` removes the files of trust domains that left
/// the federation) is no longer trusted from the next reload on. A `*.jwks` file whose name is
/// not a trust domain makes the directory unreadable (an error naming the file), not skipped.
///
/// A background thread reads the directory every poll interval; a changed set of files that
/// does not parse whole (a file half written) is ignored and the last good set stays current.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::jwt::{JwtBundleFiles, JwtBundleSource};
///
/// let source = JwtBundleFiles::open("/run/jwt-bundles")?;
/// for bundle in source.jwt_bundles()?.iter() {
///     println!("{}", bundle.trust_domain());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct JwtBundleFiles {
    cell: Arc<JwtBundleCell>,
    loader: Arc<FilesLoader>,
}

#[derive(Debug)]
struct FilesLoader {
    dir: PathBuf,
    last: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl FilesLoader {
    /// The `*.jwks` files of the directory, by file name.
    fn read(&self) -> Result<BTreeMap<String, Vec<u8>>, JwtSourceError> {
        let fail = |path: &Path, reason: String| JwtSourceError::File {
            path: path.to_path_buf(),
            reason,
        };
        let entries = std::fs::read_dir(&self.dir).map_err(|e| fail(&self.dir, e.to_string()))?;
        let mut files = BTreeMap::new();
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if jwt_bundle_file_trust_domain(&name).is_some() {
                let bytes =
                    std::fs::read(entry.path()).map_err(|e| fail(&entry.path(), e.to_string()))?;
                files.insert(name, bytes);
            }
        }
        Ok(files)
    }

    fn parse(&self, files: &BTreeMap<String, Vec<u8>>) -> Result<JwtBundleSet, JwtSourceError> {
        let mut bundles = JwtBundleSet::new();
        for (name, bytes) in files {
            let path = self.dir.join(name);
            let trust_domain = match jwt_bundle_file_trust_domain(name) {
                Some(Ok(trust_domain)) => trust_domain,
                Some(Err(reason)) => return Err(JwtSourceError::File { path, reason }),
                None => continue,
            };
            let bundle =
                JwtBundle::parse(trust_domain, bytes).map_err(|e| JwtSourceError::File {
                    path,
                    reason: e.to_string(),
                })?;
            bundles.insert(bundle);
        }
        Ok(bundles)
    }

    /// Reloads when the files changed: whether new bundles were published.
    fn reload(&self, cell: &JwtBundleCell) -> Result<bool, JwtSourceError> {
        let files = self.read()?;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == files {
            return Ok(false);
        }
        let bundles = self.parse(&files)?;
        *last = files;
        Ok(cell.publish(bundles))
    }
}

impl JwtBundleFiles {
    /// Loads `dir/*.jwks` and watches them every second.
    ///
    /// # Errors
    /// [`JwtSourceError::File`] when the directory or a file cannot be read or parsed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, JwtSourceError> {
        Self::open_with_interval(dir, crate::source::DEFAULT_POLL_INTERVAL)
    }

    /// As [`open`](Self::open), looking every `interval`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_interval(
        dir: impl Into<PathBuf>,
        interval: Duration,
    ) -> Result<Self, JwtSourceError> {
        let loader = Arc::new(FilesLoader {
            dir: dir.into(),
            last: Mutex::new(BTreeMap::new()),
        });
        let files = loader.read()?;
        let cell = Arc::new(JwtBundleCell::new(loader.parse(&files)?));
        *loader
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = files;
        let (cell_ref, loader_ref) = (Arc::downgrade(&cell), Arc::downgrade(&loader));
        crate::source::poller::spawn(
            "spiffe-mtls-jwt-files",
            format!("JWT bundle files ({})", loader.dir.display()),
            interval,
            move || {
                let (cell, loader) = (cell_ref.upgrade()?, loader_ref.upgrade()?);
                Some(loader.reload(&cell))
            },
        )
        .map_err(|e| JwtSourceError::File {
            path: loader.dir.clone(),
            reason: format!("cannot start the watcher thread: {e}"),
        })?;
        Ok(Self { cell, loader })
    }

    /// Looks at the files now: whether they changed and the new bundles are current.
    ///
    /// # Errors
    /// Why changed files were not taken (the last good bundles stay current).
    pub fn reload(&self) -> Result<bool, JwtSourceError> {
        self.loader.reload(&self.cell)
    }
}

impl JwtBundleSource for JwtBundleFiles {
    fn jwt_bundles(&self) -> Result<Arc<JwtBundleSet>, JwtSourceError> {
        self.cell.read()
    }

    fn updates(&self) -> Updates {
        self.cell.updates()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bundle_file_name_binds_one_trust_domain() {
        let td = |name: &str| name.parse::<TrustDomain>().unwrap();
        for trust_domain in ["example.org", "partner.org", "42", "a.jwks"] {
            let name = jwt_bundle_file_name(&td(trust_domain));
            assert_eq!(
                jwt_bundle_file_trust_domain(&name),
                Some(Ok(td(trust_domain))),
                "{name}"
            );
        }
        // Only the last `.jwks` is the suffix: the name never binds a shorter trust domain.
        assert_eq!(
            jwt_bundle_file_trust_domain("partner.org.jwks.jwks"),
            Some(Ok(td("partner.org.jwks")))
        );
        for not_a_bundle in [
            ".partner.org.jwks.42.tmp",
            ".partner.org.jwks",
            "partner.org.jwks.bak",
            "partner.org.json",
            "notes.txt",
        ] {
            assert_eq!(
                jwt_bundle_file_trust_domain(not_a_bundle),
                None,
                "{not_a_bundle}"
            );
        }
        for unbound in [
            "Partner.org.jwks",
            "partner org.jwks",
            "partner.org:8443.jwks",
        ] {
            let error = jwt_bundle_file_trust_domain(unbound).unwrap().unwrap_err();
            assert!(
                error.contains("not <trust-domain>.jwks"),
                "{unbound}: {error}"
            );
        }
    }
}
