//! A source that reads PEM files and reloads them when they change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::cell::SourceCell;
use super::file_bundles::BoundRoots;
use super::file_paths::{Binding, FilePaths};
use super::{SourceError, Updates, X509Context, X509Source};
use crate::svid::X509Svid;

/// The default time between two looks at the files.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The bytes of every file, read in one pass: what a load is built from.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    svid: Vec<u8>,
    key: Vec<u8>,
    /// Every bundle file, the local one first, with its binding.
    bundles: Vec<(PathBuf, Binding, Vec<u8>)>,
}

fn read(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|e| SourceError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Snapshot {
    fn read(paths: &FilePaths) -> Result<Self, SourceError> {
        let svid = read(&paths.svid)?;
        let key = read(&paths.key)?;
        let bundles = paths
            .bundle_files()?
            .into_iter()
            .map(|(path, binding)| {
                let bytes = read(&path)?;
                Ok((path, binding, bytes))
            })
            .collect::<Result<_, SourceError>>()?;
        Ok(Self { svid, key, bundles })
    }

    fn context(&self, paths: &FilePaths) -> Result<X509Context, SourceError> {
        let svid = X509Svid::from_pem(&self.svid, &self.key).map_err(|e| SourceError::File {
            path: paths.svid.clone(),
            reason: format!("with key {}: {e}", paths.key.display()),
        })?;
        let local = svid.spiffe_id().trust_domain().clone();
        let files = self
            .bundles
            .iter()
            .map(|(path, binding, bytes)| (path.as_path(), binding, bytes.as_slice()));
        let bundles = BoundRoots::bind(&local, files)?.into_bundles()?;
        Ok(X509Context::new(vec![svid], bundles)?)
    }
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
        let (cell_ref, loader_ref) = (Arc::downgrade(&cell), Arc::downgrade(&loader));
        super::poller::spawn(
            "spiffe-mtls-file-source",
            format!("SVID files ({})", loader.paths.svid.display()),
            interval,
            move || {
                let (cell, loader) = (cell_ref.upgrade()?, loader_ref.upgrade()?);
                Some(loader.reload(&cell))
            },
        )
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

impl X509Source for FileSource {
    fn x509_context(&self) -> Result<Arc<X509Context>, SourceError> {
        self.cell.read()
    }

    fn updates(&self) -> Updates {
        self.cell.updates()
    }
}
