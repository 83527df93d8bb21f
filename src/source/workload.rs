//! The Workload API source: a stream on this crate's own client (or a `spiffe` crate
//! `X509Source` the caller runs), checked by this crate's rules and held behind the
//! lock-free [`SourceCell`].

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::cell::SourceCell;
use super::workload_stream::{MIN_BACKOFF, StreamSettings, first_context, follow as stream_follow};
use super::{SourceError, UpdateLimits, Updates, X509Context, X509Source};
use crate::workload::EndpointAddress;

/// How long [`WorkloadApiSourceBuilder::build`] waits for the first update by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two reconnection attempts by default.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Settings of a [`WorkloadApiSource`].
#[derive(Debug, Clone)]
pub struct WorkloadApiSourceBuilder {
    address: Option<EndpointAddress>,
    timeout: Duration,
    max_backoff: Duration,
    limits: UpdateLimits,
}

impl Default for WorkloadApiSourceBuilder {
    fn default() -> Self {
        Self {
            address: None,
            timeout: DEFAULT_START_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            limits: UpdateLimits::default(),
        }
    }
}

impl WorkloadApiSourceBuilder {
    /// The Workload API endpoint (default: `SPIFFE_ENDPOINT_SOCKET`).
    #[must_use]
    pub fn address(mut self, address: EndpointAddress) -> Self {
        self.address = Some(address);
        self
    }

    /// How long to wait for the first usable update (default 10 s).
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest pause between reconnection attempts (default 1 s).
    #[must_use]
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff.max(MIN_BACKOFF);
        self
    }

    /// Bounds on each update (default [`UpdateLimits::default`]); an update past them is
    /// dropped with a logged reason and the last good context stays.
    #[must_use]
    pub fn limits(mut self, limits: UpdateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Connects and waits for the first update that passes this crate's checks.
    ///
    /// # Errors
    /// Why no context arrived: [`SourceError::Address`], [`SourceError::NoSocket`],
    /// [`SourceError::Unreachable`], [`SourceError::NoIdentity`], [`SourceError::Refused`],
    /// [`SourceError::Invalid`] or [`SourceError::Timeout`].
    pub async fn build(self) -> Result<WorkloadApiSource, SourceError> {
        let address = match self.address {
            Some(address) => address,
            None => EndpointAddress::from_env()?,
        };
        let settings = StreamSettings {
            address,
            limits: self.limits,
            max_backoff: self.max_backoff,
        };
        let (first, responses) = first_context(&settings, self.timeout).await?;
        let cell = Arc::new(SourceCell::new(first));
        let address = settings.address.clone();
        let task = tokio::spawn(stream_follow(responses, Arc::clone(&cell), settings));
        Ok(WorkloadApiSource {
            cell,
            inner: None,
            address: Some(address),
            task,
        })
    }
}

/// An [`X509Source`] streaming from a SPIFFE Workload API (a SPIRE agent, the dev server).
///
/// Keeps a `FetchX509SVID` stream open on this crate's client, reconnecting with backoff
/// (capped at 1 s by default). Each update is checked once, by this crate's X.509-SVID
/// profile rules within [`UpdateLimits`], on the task that reads the stream; what it left
/// byte for byte unchanged is taken from the context it replaces. An update that fails is
/// dropped and the last good context stays current. When the Workload API goes away the last
/// context stays in use until its default SVID expires, then reads fail closed. A PermissionDenied from the
/// Workload API (the workload's registration was removed) withdraws the identity at once,
/// until an identity is issued again.
///
/// ```no_run
/// use spiffe_mtls::source::{WorkloadApiSource, X509Source};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // SPIFFE_ENDPOINT_SOCKET, e.g. unix:///run/spire/agent.sock
/// let source = WorkloadApiSource::builder().build().await?;
/// println!("I am {}", source.x509_context()?.default_svid().spiffe_id());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct WorkloadApiSource {
    cell: Arc<SourceCell>,
    /// The `spiffe` crate's source of [`WorkloadApiSource::from_spiffe`].
    inner: Option<spiffe::X509Source>,
    address: Option<EndpointAddress>,
    task: JoinHandle<()>,
}

impl WorkloadApiSource {
    /// A source over a `spiffe` crate `X509Source` the caller already runs: its stream,
    /// reconnection and settings stay as they are; each of its contexts is checked again by
    /// this crate's rules within `limits`, and handed to this crate's configs. Waits up to
    /// `timeout` for a context that passes. [`WorkloadApiSource::shutdown`] shuts `inner` down
    /// too (and its clones, which share its stream).
    ///
    /// # Errors
    /// [`SourceError::Withdrawn`], [`SourceError::Invalid`] or another reason the last context
    /// failed, when none passed within `timeout`.
    ///
    /// # Example
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use spiffe_mtls::source::{UpdateLimits, WorkloadApiSource};
    ///
    /// let theirs = spiffe::X509Source::new().await?; // SPIFFE_ENDPOINT_SOCKET
    /// let ours = WorkloadApiSource::from_spiffe(theirs, UpdateLimits::default(), Duration::from_secs(10)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn from_spiffe(
        inner: spiffe::X509Source,
        limits: UpdateLimits,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        let deadline = crate::deadline::after(timeout);
        Self::follow_until(inner, limits, deadline).await
    }

    /// Waits for the first context of `inner` that passes, then mirrors every change.
    async fn follow_until(
        inner: spiffe::X509Source,
        limits: UpdateLimits,
        deadline: tokio::time::Instant,
    ) -> Result<Self, SourceError> {
        let mut updates = inner.updated();
        let first = loop {
            match current(&inner, &limits, None) {
                Ok(context) => break context,
                Err(error) => {
                    let waited = tokio::time::timeout_at(deadline, updates.changed()).await;
                    if !matches!(waited, Ok(Ok(_))) {
                        inner.shutdown().await;
                        return Err(error);
                    }
                }
            }
        };
        let cell = Arc::new(SourceCell::new(first));
        let task = tokio::spawn(follow(inner.clone(), updates, Arc::clone(&cell), limits));
        Ok(Self {
            cell,
            inner: Some(inner),
            address: None,
            task,
        })
    }

    /// Settings: address, start timeout, backoff.
    pub fn builder() -> WorkloadApiSourceBuilder {
        WorkloadApiSourceBuilder::default()
    }

    /// Connects to `address` with the default settings.
    ///
    /// # Errors
    /// As [`WorkloadApiSourceBuilder::build`].
    pub async fn connect(address: EndpointAddress) -> Result<Self, SourceError> {
        Self::builder().address(address).build().await
    }

    /// The endpoint this source streams from; `None` for a source made by
    /// [`WorkloadApiSource::from_spiffe`].
    pub fn address(&self) -> Option<&EndpointAddress> {
        self.address.as_ref()
    }

    /// Closes the stream; reads fail with [`SourceError::Closed`] afterwards.
    pub async fn shutdown(&self) {
        self.task.abort();
        if let Some(inner) = &self.inner {
            inner.shutdown().await;
        }
        self.cell.close();
    }
}

impl Drop for WorkloadApiSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl X509Source for WorkloadApiSource {
    fn x509_context(&self) -> Result<Arc<X509Context>, SourceError> {
        self.cell.read()
    }

    fn updates(&self) -> Updates {
        self.cell.updates()
    }

    fn stream_state(&self) -> Option<crate::source::StreamState> {
        self.cell.stream_state()
    }
}

/// The `spiffe` source's current context, checked by this crate; what is unchanged since
/// `previous` is taken from it (see [`X509Context::from_spiffe_after`]).
fn current(
    inner: &spiffe::X509Source,
    limits: &UpdateLimits,
    previous: Option<&X509Context>,
) -> Result<X509Context, SourceError> {
    let state = inner.state();
    if let Some(reason) = state.withdrawal() {
        return Err(SourceError::Withdrawn(reason.to_string()));
    }
    let context = state
        .context()
        .map_err(|e| SourceError::Invalid(e.to_string()))?;
    Ok(X509Context::from_spiffe_after(
        context.as_ref(),
        limits,
        previous,
    )?)
}

/// Mirrors every change of the `spiffe` source into the cell, until it closes.
async fn follow(
    inner: spiffe::X509Source,
    mut updates: spiffe::x509_source::X509SourceUpdates,
    cell: Arc<SourceCell>,
    limits: UpdateLimits,
) {
    while updates.changed().await.is_ok() {
        let previous = cell.last();
        match current(&inner, &limits, Some(&previous)) {
            Ok(context) => cell.publish(context),
            Err(SourceError::Withdrawn(reason)) => {
                tracing::warn!(%reason, "the Workload API withdrew the identity");
                cell.withdraw(reason);
            }
            Err(error) => {
                tracing::warn!(%error, "dropping a Workload API update; keeping the last good context");
            }
        }
    }
    cell.close();
}

impl SourceError {
    /// The Workload API at `address` answered PermissionDenied (`reason`, its message): it
    /// has no identity for this process, which the error names as a registration entry
    /// selects it: its effective uid (`/proc/self/status`) and executable (`/proc/self/exe`).
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::source::SourceError;
    ///
    /// let error = SourceError::no_identity("unix:///tmp/agent.sock", "no identity issued");
    /// assert!(error.to_string().starts_with(
    ///     "the Workload API at unix:///tmp/agent.sock has no identity for this process (uid "
    /// ));
    /// ```
    pub fn no_identity(address: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self::NoIdentity {
            address: address.to_string(),
            process: this_process(),
            reason: reason.into(),
        }
    }
}

/// This process as a Workload API attests it: `uid 1000, path /usr/local/bin/app` (the
/// effective uid from `/proc/self/status`, the executable from `/proc/self/exe`; `unknown`
/// where they cannot be read).
pub(crate) fn this_process() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let path = std::env::current_exe()
        .map_or_else(|_| "unknown".to_owned(), |path| path.display().to_string());
    format!("uid {uid}, path {path}")
}

#[cfg(all(test, unix, feature = "dev-server"))]
mod tests {
    use super::*;
    use crate::dev_server::{DevServer, DevServerConfig, DevServerOptions};

    fn config(uid: u32) -> DevServerConfig {
        DevServerConfig::from_toml(&format!(
            r#"
            trust_domain = "example.org"
            svid_ttl = "1h"
            [[entry]]
            spiffe_id = "spiffe://example.org/a"
            selectors = ["unix:uid:{uid}"]
            hint = "a"
            [[entry]]
            spiffe_id = "spiffe://example.org/b"
            selectors = ["unix:uid:{uid}"]
            hint = "b"
            "#
        ))
        .unwrap()
    }

    /// The next context the source publishes (bounded wait).
    async fn next(source: &WorkloadApiSource, updates: &mut Updates) -> Arc<X509Context> {
        tokio::time::timeout(Duration::from_secs(10), updates.changed())
            .await
            .unwrap()
            .unwrap();
        source.x509_context().unwrap()
    }

    #[tokio::test]
    async fn an_update_keeps_what_it_left_unchanged_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let uid = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(dir.path()).unwrap().uid()
        };
        let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
        let dev = DevServer::start(config(uid), address.clone(), DevServerOptions::default())
            .await
            .unwrap();
        let source = WorkloadApiSource::connect(address.clone()).await.unwrap();
        let mut updates = source.updates();
        let first = source.x509_context().unwrap();

        // New SVIDs, the same bundle: the bundle set is shared (peer chains verified against
        // it stay verified), the SVIDs are the new ones.
        dev.rotate_svids().await;
        let rotated = next(&source, &mut updates).await;
        assert!(Arc::ptr_eq(
            first.shared_bundles(),
            rotated.shared_bundles()
        ));
        assert_ne!(first.default_svid().leaf(), rotated.default_svid().leaf());
        assert_eq!(rotated.svid_by_hint("b").unwrap().spiffe_id().path(), "/b");

        // A new root: a new bundle set.
        dev.rotate_ca().await;
        let new_root = next(&source, &mut updates).await;
        assert!(!Arc::ptr_eq(
            rotated.shared_bundles(),
            new_root.shared_bundles()
        ));
        assert_ne!(
            rotated.bundles().iter().next().unwrap().roots().len(),
            new_root.bundles().iter().next().unwrap().roots().len()
        );
        // ... and the SVIDs it left as they were, taken as they were (not parsed again).
        assert_eq!(new_root.svids().len(), 2);
        for (before, after) in rotated.svids().iter().zip(new_root.svids()) {
            assert!(Arc::ptr_eq(before.certified_key(), after.certified_key()));
        }

        // The same update converted again after itself: every SVID taken as it was (its key
        // not loaded again), the bundles shared; converted afresh: nothing shared.
        let theirs = spiffe::X509Source::builder()
            .endpoint(address.to_string())
            .build()
            .await
            .unwrap();
        let theirs_context = theirs.x509_context().unwrap();
        let limits = UpdateLimits::default();
        let ours = X509Context::from_spiffe(&theirs_context, &limits).unwrap();
        let again = X509Context::from_spiffe_after(&theirs_context, &limits, Some(&ours)).unwrap();
        assert_eq!(again.svids().len(), 2);
        for (before, after) in ours.svids().iter().zip(again.svids()) {
            assert!(Arc::ptr_eq(before.certified_key(), after.certified_key()));
            assert_eq!(before.hint(), after.hint());
        }
        assert!(Arc::ptr_eq(ours.shared_bundles(), again.shared_bundles()));
        let afresh =
            X509Context::from_spiffe_after(&theirs_context, &limits, Some(&first)).unwrap();
        assert!(!Arc::ptr_eq(
            first.shared_bundles(),
            afresh.shared_bundles()
        ));
        for (old, new) in first.svids().iter().zip(afresh.svids()) {
            assert!(!Arc::ptr_eq(old.certified_key(), new.certified_key()));
        }
        theirs.shutdown().await;
        source.shutdown().await;
        dev.shutdown().await;
    }
}
