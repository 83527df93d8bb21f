//! A source that reads PEM files and reloads them when they change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use super::cell::SourceCell;
use super::{SourceError, Updates, X509Context, X509Source};
use crate::bundle::{BundleSet, X509Bundle};
use crate::spiffe_id::TrustDomain;
use crate::svid::X509Svid;

/// The default time between two looks at the files.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Which files hold an SVID, its key and the bundles.
///
/// A bundle file may hold roots of several trust domains (spiffe-helper appends federated
/// roots to its bundle file): a root whose URI SAN is `spiffe://<td>` belongs to `<td>`, any
/// other root of the SVID bundle file to the SVID's own trust domain. A root of a federated
/// bundle file must name its trust domain that way (SPIRE's CA certificates do), unless the
/// file was added with [`FilePaths::with_federated`] and a trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePaths {
    /// The SVID chain, leaf first.
    pub svid: PathBuf,
    /// The SVID's private key.
    pub key: PathBuf,
    /// The bundle of the SVID's trust domain.
    pub bundle: PathBuf,
    federated: Vec<(PathBuf, Option<TrustDomain>)>,
    /// Directory and name prefix of federated bundle files found at each load.
    federated_glob: Option<(PathBuf, String)>,
}

impl FilePaths {
    /// An SVID in `svid`, its key in `key`, the bundle in `bundle`.
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
            federated_glob: None,
        }
    }

    /// The layout of `spiffe-mtls fetch --write DIR` and `spire-agent api fetch x509 -write
    /// DIR`: `svid.0.pem`, `svid.0.key`, `bundle.0.pem` and every `federated_bundle.0.*.pem`.
    pub fn fetch_layout(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let mut paths = Self::new(
            dir.join("svid.0.pem"),
            dir.join("svid.0.key"),
            dir.join("bundle.0.pem"),
        );
        paths.federated_glob = Some((dir.to_path_buf(), "federated_bundle.0.".into()));
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

    /// Adds a federated bundle file; with `trust_domain`, all its roots belong to it.
    #[must_use]
    pub fn with_federated(
        mut self,
        path: impl Into<PathBuf>,
        trust_domain: Option<TrustDomain>,
    ) -> Self {
        self.federated.push((path.into(), trust_domain));
        self
    }

    /// Every federated bundle file now, with its trust domain if given.
    fn federated_files(&self) -> Result<Vec<(PathBuf, Option<TrustDomain>)>, SourceError> {
        let mut files = self.federated.clone();
        if let Some((dir, prefix)) = &self.federated_glob {
            let entries = std::fs::read_dir(dir).map_err(|e| SourceError::File {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .and_then(|name| name.to_str())
                        .is_some_and(|name| name.starts_with(prefix) && name.ends_with(".pem"))
                })
                .collect();
            found.sort();
            files.extend(found.into_iter().map(|path| (path, None)));
        }
        Ok(files)
    }
}

/// The bytes of every file, read in one pass: what a load is built from.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    svid: Vec<u8>,
    key: Vec<u8>,
    bundle: Vec<u8>,
    federated: Vec<(PathBuf, Option<TrustDomain>, Vec<u8>)>,
}

fn read(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|e| SourceError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Snapshot {
    fn read(paths: &FilePaths) -> Result<Self, SourceError> {
        let federated = paths
            .federated_files()?
            .into_iter()
            .map(|(path, trust_domain)| {
                let bytes = read(&path)?;
                Ok((path, trust_domain, bytes))
            })
            .collect::<Result<_, SourceError>>()?;
        Ok(Self {
            svid: read(&paths.svid)?,
            key: read(&paths.key)?,
            bundle: read(&paths.bundle)?,
            federated,
        })
    }

    fn context(&self, paths: &FilePaths) -> Result<X509Context, SourceError> {
        let svid = X509Svid::from_pem(&self.svid, &self.key).map_err(|e| SourceError::File {
            path: paths.svid.clone(),
            reason: format!("with key {}: {e}", paths.key.display()),
        })?;
        let own = svid.spiffe_id().trust_domain().clone();
        let mut roots: BTreeMap<TrustDomain, Vec<CertificateDer<'static>>> = BTreeMap::new();
        roots.entry(own.clone()).or_default();
        add_roots(&mut roots, &paths.bundle, &self.bundle, Some(&own), false)?;
        for (path, trust_domain, bytes) in &self.federated {
            add_roots(
                &mut roots,
                path,
                bytes,
                trust_domain.as_ref(),
                trust_domain.is_some(),
            )?;
        }
        let mut bundles = BundleSet::new();
        for (trust_domain, certs) in roots {
            let bundle = X509Bundle::new(trust_domain, certs).map_err(|e| SourceError::File {
                path: paths.bundle.clone(),
                reason: e.to_string(),
            })?;
            bundles.insert(bundle);
        }
        Ok(X509Context::new(vec![svid], bundles)?)
    }
}

/// Files each root of a PEM bundle under its trust domain: the one named by its
/// `spiffe://` URI SAN unless `forced`, else `default`.
fn add_roots(
    roots: &mut BTreeMap<TrustDomain, Vec<CertificateDer<'static>>>,
    path: &Path,
    pem: &[u8],
    default: Option<&TrustDomain>,
    forced: bool,
) -> Result<(), SourceError> {
    let fail = |reason: String| SourceError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certs = crate::pem::pem_certificates(pem).map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificates".into()));
    }
    for cert in certs {
        let named = if forced {
            None
        } else {
            named_trust_domain(&cert).map_err(&fail)?
        };
        let trust_domain = named.or_else(|| default.cloned()).ok_or_else(|| {
            fail("a root names no trust domain (no spiffe:// URI SAN); add the file with FilePaths::with_federated and its trust domain".into())
        })?;
        roots.entry(trust_domain).or_default().push(cert);
    }
    Ok(())
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

/// An [`X509Source`] over PEM files, reloaded when their content changes.
///
/// A background thread reads all files every poll interval; when any byte changed, it builds
/// and checks a new context from all of them together and swaps it in whole. A half-written
/// update (a new certificate next to the old key, a truncated file) does not validate and is
/// ignored until the writer finishes; the last good context stays current meanwhile.
///
/// ```no_run
/// use spiffe_mtls::source::{FilePaths, FileSource, X509Source};
///
/// // Files written by `spiffe-mtls fetch --write /run/svid` or `spire-agent api fetch x509 -write`.
/// let source = FileSource::open(FilePaths::fetch_layout("/run/svid"))?;
/// println!("{}", source.x509_context()?.default_svid().spiffe_id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileSource {
    cell: Arc<SourceCell>,
    loader: Arc<Loader>,
}

#[derive(Debug)]
struct Loader {
    paths: FilePaths,
    last: std::sync::Mutex<Snapshot>,
}

impl Loader {
    /// Reloads when the files changed: `Ok(true)` when a new context was published.
    fn reload(&self, cell: &SourceCell) -> Result<bool, SourceError> {
        let snapshot = Snapshot::read(&self.paths)?;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == snapshot {
            return Ok(false);
        }
        let context = snapshot.context(&self.paths)?;
        cell.publish(context);
        *last = snapshot;
        Ok(true)
    }
}

impl FileSource {
    /// Loads the files and watches them every [`DEFAULT_POLL_INTERVAL`].
    ///
    /// # Errors
    /// [`SourceError::File`] when a file is missing or invalid, [`SourceError::Expired`] when
    /// the SVID has already expired.
    pub fn open(paths: FilePaths) -> Result<Self, SourceError> {
        Self::open_with_interval(paths, DEFAULT_POLL_INTERVAL)
    }

    /// As [`FileSource::open`], looking at the files every `interval`.
    ///
    /// # Errors
    /// As [`FileSource::open`].
    pub fn open_with_interval(paths: FilePaths, interval: Duration) -> Result<Self, SourceError> {
        let snapshot = Snapshot::read(&paths)?;
        let context = snapshot.context(&paths)?;
        let cell = Arc::new(SourceCell::new(context));
        cell.read()?;
        let loader = Arc::new(Loader {
            paths,
            last: std::sync::Mutex::new(snapshot),
        });
        let watched = (Arc::downgrade(&cell), Arc::downgrade(&loader));
        std::thread::Builder::new()
            .name("spiffe-mtls-file-source".into())
            .spawn(move || poll(&watched.0, &watched.1, interval))
            .map_err(|e| SourceError::File {
                path: loader.paths.svid.clone(),
                reason: format!("cannot start the watcher thread: {e}"),
            })?;
        Ok(Self { cell, loader })
    }

    /// Looks at the files now: `Ok(true)` when they changed and the new context is current.
    ///
    /// # Errors
    /// Why the changed files were not taken (the last good context stays current).
    pub fn reload(&self) -> Result<bool, SourceError> {
        self.loader.reload(&self.cell)
    }

    /// The files watched.
    pub fn paths(&self) -> &FilePaths {
        &self.loader.paths
    }
}

/// The watcher loop: ends when the source is dropped.
fn poll(cell: &Weak<SourceCell>, loader: &Weak<Loader>, interval: Duration) {
    let mut last_error = None;
    loop {
        std::thread::sleep(interval);
        let (Some(cell), Some(loader)) = (cell.upgrade(), loader.upgrade()) else {
            return;
        };
        match loader.reload(&cell) {
            Ok(changed) => {
                if changed {
                    tracing::info!(file = %loader.paths.svid.display(), "reloaded SVID files");
                }
                last_error = None;
            }
            Err(error) => {
                let text = error.to_string();
                if last_error.as_ref() != Some(&text) {
                    tracing::warn!(%error, "ignoring changed SVID files; keeping the last good ones");
                    last_error = Some(text);
                }
            }
        }
    }
}

impl X509Source for FileSource {
    fn x509_context(&self) -> Result<Arc<X509Context>, SourceError> {
        self.cell.read()
    }

    fn updates(&self) -> Updates {
        self.cell.updates()
    }
}
