//! A policy file that is watched and reloaded while servers use it.
//!
//! Servers decide every handshake and every request by the policy in force now, not the one
//! they started with: [`WatchedPolicy::connect`] is an [`Authorizer`] that follows the file,
//! [`WatchedPolicy::current`] the whole policy, and [`WatchedPolicy::changes`] tells a
//! server when to check its live connections again
//! ([`LiveConnections::recheck`](crate::net::LiveConnections::recheck)). An invalid new file
//! is logged once and ignored: the last good policy stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::{Authorizer, Policy, PolicyError};

/// How often [`WatchedPolicy::open`] looks at the file: an edit is in force, and the live
/// connections it stops allowing are closed, within about this long.
pub const POLICY_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A policy file, reloaded when its content changes. Cheap to clone: clones share it; the
/// watcher thread ends when the last clone (and the last authorizer from
/// [`connect`](Self::connect)) is dropped.
///
/// ```no_run
/// use spiffe_mtls::authorize::WatchedPolicy;
///
/// let policy = WatchedPolicy::open("policy.toml")?;
/// // The TLS config's rule: the file's [connect] and revoked list, as they are now.
/// let rule = policy.connect();
/// // A route decided by the policy in force at this request.
/// let id = "spiffe://example.org/agent/client".parse()?;
/// let allowed = policy.current().authorize_route("/api", &id).is_ok();
/// # let _ = (rule, allowed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct WatchedPolicy {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    current: RwLock<Arc<Policy>>,
    /// The text last read, valid or not: an unchanged file is not parsed (nor its error
    /// logged) again.
    last_text: Mutex<String>,
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for WatchedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedPolicy")
            .field("path", &self.shared.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl WatchedPolicy {
    /// Loads the policy file and looks at it again every [`POLICY_POLL_INTERVAL`].
    ///
    /// # Errors
    /// [`PolicyError`] when the file is unreadable or invalid now, or the watcher thread
    /// cannot start.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        Self::open_with_interval(path, POLICY_POLL_INTERVAL)
    }

    /// As [`open`](Self::open), looking at the file every `interval`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_interval(
        path: impl AsRef<Path>,
        interval: Duration,
    ) -> Result<Self, PolicyError> {
        let path = path.as_ref().to_owned();
        let text = read(&path)?;
        let policy = Policy::from_toml(&text)?;
        let watched = Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(policy)),
                last_text: Mutex::new(text),
                generation: watch::Sender::new(0),
                path,
            }),
        };
        let weak = Arc::downgrade(&watched.shared);
        crate::source::poller::spawn(
            "spiffe-mtls-policy",
            format!("policy file {}", watched.shared.path.display()),
            interval,
            move || {
                let shared = weak.upgrade()?;
                Some(Self { shared }.reload())
            },
        )
        .map_err(|e| PolicyError::Read {
            path: watched.shared.path.display().to_string(),
            source: e,
        })?;
        Ok(watched)
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(
            &self
                .shared
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Who may connect, by the policy in force at each decision: its `[connect]` rule and
    /// its `revoked` list. Give it to [`tls::server_config`](crate::tls::server_config) and a
    /// reload applies to the next handshake.
    pub fn connect(&self) -> Authorizer {
        let watched = self.clone();
        let counted = self.clone();
        Authorizer::following(
            move || watched.current().connect().clone(),
            move || counted.generation(),
        )
    }

    /// How many times the policy changed since it was opened (0 at first).
    pub fn generation(&self) -> u64 {
        *self.shared.generation.borrow()
    }

    /// A receiver of the [`generation`](Self::generation): `changed().await` resolves after
    /// each reload that changed the policy.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Looks at the file now: `Ok(true)` when its content changed and the new policy is in
    /// force, `Ok(false)` when it is unchanged.
    ///
    /// # Errors
    /// Why a changed file was not taken (unreadable, or invalid: the error names the line);
    /// the last good policy stays in force.
    pub fn reload(&self) -> Result<bool, PolicyError> {
        let text = read(&self.shared.path)?;
        let mut last = self
            .shared
            .last_text
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *last == text {
            return Ok(false);
        }
        let parsed = Policy::from_toml(&text);
        *last = text;
        let policy = parsed?;
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        self.shared
            .generation
            .send_modify(|generation| *generation += 1);
        Ok(true)
    }
}

/// The policy a layer or interceptor decides by: one given once, or a watched file's as it
/// is at each decision.
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub(crate) enum PolicyRef {
    Fixed(Arc<Policy>),
    Watched(WatchedPolicy),
}

#[cfg(feature = "http")]
impl PolicyRef {
    /// The policy in force now.
    pub(crate) fn current(&self) -> Arc<Policy> {
        match self {
            PolicyRef::Fixed(policy) => Arc::clone(policy),
            PolicyRef::Watched(watched) => watched.current(),
        }
    }
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> crate::SpiffeId {
        s.parse().unwrap()
    }

    const A: &str = "spiffe://example.org/a";
    const B: &str = "spiffe://example.org/b";

    fn policy_allowing(ids: &[&str], revoked: &[&str]) -> String {
        let quoted = |ids: &[&str]| {
            ids.iter()
                .map(|id| format!("{id:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "revoked = [{}]\n[connect]\nids = [{}]\n",
            quoted(revoked),
            quoted(ids)
        )
    }

    fn world(text: &str) -> (tempfile::TempDir, PathBuf, WatchedPolicy) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        // A long interval: the test drives reloads itself.
        let watched = WatchedPolicy::open_with_interval(&path, Duration::from_secs(3600)).unwrap();
        (dir, path, watched)
    }

    #[test]
    fn an_edit_changes_the_connect_rule_already_handed_out() {
        let (_dir, path, watched) = world(&policy_allowing(&[A, B], &[]));
        let rule = watched.connect();
        let mut changes = watched.changes();
        assert!(rule.is_allowed(&sid(A)) && rule.is_allowed(&sid(B)));
        assert!(!watched.reload().unwrap(), "an unchanged file is no reload");

        std::fs::write(&path, policy_allowing(&[A], &[])).unwrap();
        assert!(watched.reload().unwrap());
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 1);
        assert!(rule.is_allowed(&sid(A)), "the good twin stays allowed");
        assert!(!rule.is_allowed(&sid(B)));
        assert_eq!(
            rule.authorize(&sid(B)).unwrap_err().to_string(),
            format!("expected the ID {A}, presented {B}")
        );
    }

    /// A rule wrapped by `on_refusal` decides, describes itself and counts reloads as the
    /// rule it wraps (session tickets are bound to that count), and notes only refusals.
    #[test]
    fn a_noted_rule_follows_the_policy_it_wraps() {
        let (_dir, path, watched) = world(&policy_allowing(&[A, B], &[]));
        let noted = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&noted);
        let rule = watched
            .connect()
            .on_refusal(move |id| sink.lock().unwrap().push(id.to_string()));
        assert_eq!(rule.generation(), 0);
        assert!(rule.is_allowed(&sid(B)));
        std::fs::write(&path, policy_allowing(&[A], &[])).unwrap();
        assert!(watched.reload().unwrap());
        assert_eq!(rule.generation(), 1);
        assert!(!rule.is_allowed(&sid(B)));
        assert!(rule.is_allowed(&sid(A)));
        assert_eq!(*noted.lock().unwrap(), vec![B.to_owned()]);
        assert_eq!(rule.to_string(), watched.connect().to_string());
    }

    #[test]
    fn a_revoked_id_is_refused_by_the_connect_rule_and_every_route() {
        let (_dir, path, watched) = world(&policy_allowing(&[A, B], &[]));
        let rule = watched.connect();
        std::fs::write(
            &path,
            format!(
                "{}[routes.echo]\nids = [{A:?}, {B:?}]\n",
                policy_allowing(&[A, B], &[B])
            ),
        )
        .unwrap();
        assert!(watched.reload().unwrap());
        assert!(!rule.is_allowed(&sid(B)));
        assert!(rule.is_allowed(&sid(A)));
        assert_eq!(watched.current().revoked(), [sid(B)]);
        assert!(watched.current().authorize_route("echo", &sid(B)).is_err());
        assert!(watched.current().authorize_route("echo", &sid(A)).is_ok());
    }

    #[test]
    fn an_invalid_or_missing_file_keeps_the_last_good_policy() {
        let (_dir, path, watched) = world(&policy_allowing(&[A], &[]));
        let rule = watched.connect();
        std::fs::write(&path, "[connect]\nids = [\"not an id\"]\n").unwrap();
        let error = watched.reload().unwrap_err();
        assert!(error.to_string().starts_with("policy line 2:"), "{error}");
        assert!(rule.is_allowed(&sid(A)));
        assert_eq!(watched.generation(), 0);
        // The same invalid text again is not parsed again.
        assert!(!watched.reload().unwrap());

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(watched.reload(), Err(PolicyError::Read { .. })));
        assert!(rule.is_allowed(&sid(A)));

        std::fs::write(&path, policy_allowing(&[B], &[])).unwrap();
        assert!(watched.reload().unwrap());
        assert!(rule.is_allowed(&sid(B)) && !rule.is_allowed(&sid(A)));
        assert_eq!(watched.generation(), 1);
    }

    #[test]
    fn the_watcher_thread_reloads_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, policy_allowing(&[A], &[])).unwrap();
        let watched = WatchedPolicy::open_with_interval(&path, Duration::from_millis(20)).unwrap();
        std::fs::write(&path, policy_allowing(&[B], &[])).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while watched.generation() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(watched.generation(), 1);
        assert!(watched.connect().is_allowed(&sid(B)));
    }
}
