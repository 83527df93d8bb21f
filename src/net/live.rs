//! Trust that keeps being checked: a registry of live connections whose peers are checked
//! again while the connections last.
//!
//! A TLS handshake decides once. A connection that lives for hours (HTTP/2, SSE, gRPC
//! streams, a proxied TCP relay) would otherwise outlive its peer's certificate, the removal
//! of its CA from the bundle, a de-federation, a policy that stops allowing it or an
//! operator's revocation. [`LiveConnections`] records each connection's peer when it is
//! accepted; [`LiveConnections::recheck`] runs a check over all of them (call it on every
//! bundle update and every policy reload), and each connection's
//! [`LiveConnection::closed`] resolves, with the [`CloseReason`], when its peer no longer
//! passes, when its leaf certificate expires, or when it reaches its maximum lifetime.
//! The server serving the connection then closes it (HTTP/2: GOAWAY, then close once the
//! requests in flight are answered; a TCP relay: both sides).
//!
//! [`check_peer`] is the check servers built by this crate use: the peer's chain verified
//! again against the current bundles (the bundle of the peer's own trust domain, as at the
//! handshake), then the current authorizer and revocation list.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls::pki_types::UnixTime;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::authorize::{Authorizer, Policy, WatchedPolicy};
use crate::bundle::BundleSet;
use crate::source::X509Source;
use crate::spiffe_id::SpiffeId;
use crate::tls::{PeerIdentity, Side, audit};
use crate::verify::{ErrorKind, SvidVerifier};

/// Why a live connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer's leaf certificate (or another certificate of its path) expired.
    Expired,
    /// The peer's chain no longer verifies against the current bundle of its trust domain
    /// (its CA left the bundle, or the trust domain was de-federated).
    Bundle,
    /// The current policy no longer allows the peer's SPIFFE ID.
    Policy,
    /// The peer's SPIFFE ID was revoked.
    Revoked,
    /// The connection reached its maximum lifetime.
    Lifetime,
}

impl CloseReason {
    /// Every reason, in the order of [`LiveConnections::closed_count`]'s counters.
    pub const ALL: [CloseReason; 5] = [
        CloseReason::Expired,
        CloseReason::Bundle,
        CloseReason::Policy,
        CloseReason::Revoked,
        CloseReason::Lifetime,
    ];

    /// The reason as written in audit lines and metric labels: `expired`, `bundle`, `policy`,
    /// `revoked` or `lifetime`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Expired => "expired",
            CloseReason::Bundle => "bundle",
            CloseReason::Policy => "policy",
            CloseReason::Revoked => "revoked",
            CloseReason::Lifetime => "lifetime",
        }
    }

    fn index(self) -> usize {
        match self {
            CloseReason::Expired => 0,
            CloseReason::Bundle => 1,
            CloseReason::Policy => 2,
            CloseReason::Revoked => 3,
            CloseReason::Lifetime => 4,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`check_peer`] checks a live peer against: the state a new handshake would be
/// decided on now.
#[derive(Debug, Clone, Copy)]
pub struct CurrentTrust<'a> {
    /// The verifier (its signature algorithms).
    pub verifier: &'a SvidVerifier,
    /// The current bundles.
    pub bundles: &'a BundleSet,
    /// The current authorizer.
    pub authorizer: &'a Authorizer,
    /// SPIFFE IDs revoked by the operator: refused whatever the authorizer says.
    pub revoked: &'a [SpiffeId],
}

/// Checks `peer` as a new handshake would be checked now: `None` when it still passes, else
/// why its connection must close. A revoked ID is [`CloseReason::Revoked`]; a chain that no
/// longer verifies is [`CloseReason::Expired`] when a certificate's validity ended, else
/// [`CloseReason::Bundle`]; an ID the authorizer refuses is [`CloseReason::Policy`].
///
/// A peer known only by a JWT-SVID (no chain) is checked by its ID alone: its token's
/// expiry is the bearer layer's to enforce per request.
pub fn check_peer(peer: &PeerIdentity, trust: CurrentTrust<'_>) -> Option<CloseReason> {
    check_peer_at(peer, trust, UnixTime::now())
}

fn check_peer_at(
    peer: &PeerIdentity,
    trust: CurrentTrust<'_>,
    now: UnixTime,
) -> Option<CloseReason> {
    if trust.revoked.contains(peer.spiffe_id()) {
        return Some(CloseReason::Revoked);
    }
    if !peer.chain().is_empty()
        && let Err(error) = trust.verifier.verify(peer.chain(), trust.bundles, now)
    {
        return Some(match error.kind() {
            ErrorKind::Expired => CloseReason::Expired,
            _ => CloseReason::Bundle,
        });
    }
    if !trust.authorizer.is_allowed(peer.spiffe_id()) {
        return Some(CloseReason::Policy);
    }
    None
}

/// The live connections of one server (or of several sharing it), each with its peer. Cheap
/// to clone: clones share the registry.
///
/// # Example
/// ```no_run
/// use std::sync::Arc;
/// use spiffe_mtls::net::{self, CloseReason, LiveConnections};
///
/// # async fn run(config: Arc<rustls::ServerConfig>, listener: tokio::net::TcpListener) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let live = LiveConnections::new();
/// let (tcp, _) = listener.accept().await?;
/// let stream = net::accept(config, tcp).await?;
/// let mut connection = live.register(stream.peer().clone());
/// tokio::spawn(async move {
///     let reason: CloseReason = connection.closed().await;
///     eprintln!("closing: {reason}"); // then shut the stream down
///     drop(stream);
/// });
/// // Elsewhere, an operator revokes an agent: only its connections close.
/// live.revoke(&"spiffe://example.org/agent/rogue".parse()?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LiveConnections {
    inner: Arc<Registry>,
}

struct Registry {
    side: Side,
    next_key: AtomicU64,
    max_lifetime: Mutex<Option<Duration>>,
    connections: Mutex<HashMap<u64, Entry>>,
    closed: [AtomicU64; 5],
}

struct Entry {
    peer: PeerIdentity,
    close: watch::Sender<Option<CloseReason>>,
}

impl std::fmt::Debug for LiveConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConnections")
            .field("open", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for LiveConnections {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveConnections {
    /// An empty registry of a server's connections (peers are clients), with no maximum
    /// lifetime.
    pub fn new() -> Self {
        Self::for_side(Side::Server)
    }

    /// An empty registry of connections whose peers are judged by `side` (a client's
    /// registry holds servers): the side its audit events name.
    pub fn for_side(side: Side) -> Self {
        Self {
            inner: Arc::new(Registry {
                side,
                next_key: AtomicU64::new(0),
                max_lifetime: Mutex::default(),
                connections: Mutex::default(),
                closed: Default::default(),
            }),
        }
    }

    /// Connections registered from now on close with [`CloseReason::Lifetime`] this long
    /// after they were registered (ghostunnel's `--max-conn-lifetime`); `None` for no limit.
    pub fn set_max_lifetime(&self, lifetime: Option<Duration>) {
        *lock(&self.inner.max_lifetime) = lifetime;
    }

    /// Records a connection with `peer`, the identity its handshake verified. The returned
    /// handle's [`closed`](LiveConnection::closed) resolves when the connection must close;
    /// dropping the handle removes the connection from the registry.
    pub fn register(&self, peer: PeerIdentity) -> LiveConnection {
        let key = self.inner.next_key.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = watch::channel(None);
        let expires_at = peer.expires_at().unwrap_or_else(far_future);
        let max_lifetime = *lock(&self.inner.max_lifetime);
        lock(&self.inner.connections).insert(
            key,
            Entry {
                peer: peer.clone(),
                close,
            },
        );
        LiveConnection {
            key,
            registry: Arc::clone(&self.inner),
            peer,
            closed,
            expires_at,
            lifetime_ends: max_lifetime.and_then(|lifetime| Instant::now().checked_add(lifetime)),
        }
    }

    /// Checks every live connection's peer with `check` (for instance [`check_peer`] with the
    /// current bundles and policy) and closes each one it gives a reason for. Returns how
    /// many were closed by this call.
    ///
    /// The check runs without the registry's lock held (on a snapshot of the open
    /// connections' peers), so it may take its time or use the registry itself; a connection
    /// registered meanwhile is checked at the next call.
    pub fn recheck(&self, check: impl Fn(&PeerIdentity) -> Option<CloseReason>) -> usize {
        let open: Vec<(u64, PeerIdentity)> = lock(&self.inner.connections)
            .iter()
            .filter(|(_, entry)| entry.close.borrow().is_none())
            .map(|(key, entry)| (*key, entry.peer.clone()))
            .collect();
        let to_close: Vec<(u64, CloseReason)> = open
            .iter()
            .filter_map(|(key, peer)| check(peer).map(|reason| (*key, reason)))
            .collect();
        if to_close.is_empty() {
            return 0;
        }
        let connections = lock(&self.inner.connections);
        to_close
            .into_iter()
            .filter(|(key, reason)| {
                connections
                    .get(key)
                    .is_some_and(|entry| close_entry(&self.inner, entry, *reason))
            })
            .count()
    }

    /// Checks every live connection's peer as a new handshake would be checked now
    /// ([`check_peer`]) and closes each that no longer passes; returns how many.
    pub fn recheck_trust(&self, trust: CurrentTrust<'_>) -> usize {
        self.recheck(|peer| check_peer(peer, trust))
    }

    /// Keeps the live connections checked, in a task: after every change of `source`'s
    /// bundles (a CA added or removed, a de-federation; an update that rotates only the
    /// source's own SVID changes nothing a peer is checked by) and every reload of `policy`, each peer is
    /// checked again by [`check_peer`] against the source's current bundles, `authorizer`
    /// and the policy's `revoked` list, with `verifier`. Give it the rule the server's TLS
    /// config decides by (a [`WatchedPolicy::connect`] follows the file). The task ends when
    /// the source is gone; abort the handle to stop it sooner.
    pub fn recheck_on_changes(
        &self,
        source: Arc<dyn X509Source>,
        verifier: SvidVerifier,
        authorizer: Authorizer,
        policy: Option<WatchedPolicy>,
    ) -> tokio::task::JoinHandle<()> {
        let live = self.clone();
        let mut updates = source.updates();
        let mut reloads = policy.as_ref().map(WatchedPolicy::changes);
        tokio::spawn(async move {
            // The bundles the connections were last checked against: an update that changes
            // only the source's own SVID changes nothing a peer's check depends on.
            let mut checked: Option<Arc<crate::BundleSet>> = source
                .x509_context()
                .ok()
                .map(|context| Arc::clone(context.shared_bundles()));
            loop {
                let policy_reloaded = async {
                    let reloaded = match reloads.as_mut() {
                        Some(reloads) => reloads.changed().await.is_ok(),
                        None => false,
                    };
                    if !reloaded {
                        std::future::pending::<()>().await;
                    }
                };
                let reloaded = tokio::select! {
                    changed = updates.changed() => if changed.is_err() { return } else { false },
                    () = policy_reloaded => true,
                };
                let Ok(context) = source.x509_context() else {
                    continue;
                };
                // A source keeps one allocation of its bundles for as long as its updates
                // leave them unchanged (what the verification cache is keyed on too).
                let bundles = context.shared_bundles();
                let unchanged = checked
                    .as_ref()
                    .is_some_and(|checked| Arc::ptr_eq(checked, bundles));
                if unchanged && !reloaded {
                    continue;
                }
                checked = Some(Arc::clone(bundles));
                let current = policy.as_ref().map(WatchedPolicy::current);
                let revoked = current.as_deref().map_or(&[][..], Policy::revoked);
                live.recheck_trust(CurrentTrust {
                    verifier: &verifier,
                    bundles: context.bundles(),
                    authorizer: &authorizer,
                    revoked,
                });
            }
        })
    }

    /// Closes every live connection whose peer is `id`, with [`CloseReason::Revoked`];
    /// returns how many. Other peers' connections stay open.
    pub fn revoke(&self, id: &SpiffeId) -> usize {
        self.recheck(|peer| (peer.spiffe_id() == id).then_some(CloseReason::Revoked))
    }

    /// How many connections are registered (closing ones included until they are dropped).
    pub fn len(&self) -> usize {
        lock(&self.inner.connections).len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many connections have closed for `reason` since the registry was made.
    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        self.inner.closed[reason.index()].load(Ordering::Relaxed)
    }
}

/// Closes `entry` for `reason` unless it is already closing; true when this call closed it.
fn close_entry(registry: &Registry, entry: &Entry, reason: CloseReason) -> bool {
    let newly = entry.close.send_if_modified(|state| {
        if state.is_some() {
            return false;
        }
        *state = Some(reason);
        true
    });
    if newly {
        registry.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
        audit::closed(
            registry.side,
            entry.peer.spiffe_id(),
            reason.as_str(),
            &|event| audit::with_peer(event, &entry.peer),
        );
    }
    newly
}

/// One registered connection: [`closed`](Self::closed) tells when it must close, and why.
/// Dropping it removes the connection from its registry.
pub struct LiveConnection {
    key: u64,
    registry: Arc<Registry>,
    peer: PeerIdentity,
    closed: watch::Receiver<Option<CloseReason>>,
    expires_at: SystemTime,
    lifetime_ends: Option<Instant>,
}

impl std::fmt::Debug for LiveConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConnection")
            .field("peer", self.peer.spiffe_id())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl LiveConnection {
    /// The connection's peer.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// Why the connection must close, if it must already (a check closed it, or its leaf has
    /// expired, or its lifetime has ended).
    pub fn close_reason(&self) -> Option<CloseReason> {
        if let Some(reason) = *self.closed.borrow() {
            return Some(reason);
        }
        if SystemTime::now() >= self.expires_at {
            return Some(CloseReason::Expired);
        }
        if self.lifetime_ends.is_some_and(|end| Instant::now() >= end) {
            return Some(CloseReason::Lifetime);
        }
        None
    }

    /// Resolves when the connection must close, with the reason: a
    /// [`recheck`](LiveConnections::recheck) or [`revoke`](LiveConnections::revoke) closed
    /// it, its leaf certificate's notAfter passed ([`CloseReason::Expired`]), or its maximum
    /// lifetime ended ([`CloseReason::Lifetime`]). Cancel-safe.
    pub async fn closed(&mut self) -> CloseReason {
        self.watch().await
    }

    /// [`closed`](Self::closed) as a future that owns what it watches (a stream can hold it
    /// beside the connection).
    pub(crate) fn watch(&self) -> impl Future<Output = CloseReason> + Send + 'static {
        // An expiry too far away for the clock (`checked_add` fails) is no deadline at all.
        let expiry = self
            .expires_at
            .duration_since(SystemTime::now())
            .map_or(Some(Instant::now()), |left| {
                Instant::now().checked_add(left)
            });
        let deadline = match (expiry, self.lifetime_ends) {
            (Some(expiry), Some(end)) if end < expiry => Some((end, CloseReason::Lifetime)),
            (None, Some(end)) => Some((end, CloseReason::Lifetime)),
            (Some(expiry), _) => Some((expiry, CloseReason::Expired)),
            (None, None) => None,
        };
        let mut closed = self.closed.clone();
        let registry = Arc::clone(&self.registry);
        let key = self.key;
        async move {
            let closed = async {
                loop {
                    if let Some(reason) = *closed.borrow_and_update() {
                        return reason;
                    }
                    if closed.changed().await.is_err() {
                        // The registry drops the sender only when the connection is dropped.
                        std::future::pending::<()>().await;
                    }
                }
            };
            let deadline_passed = async {
                match deadline {
                    Some((at, reason)) => {
                        tokio::time::sleep_until(at).await;
                        reason
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                reason = closed => reason,
                reason = deadline_passed => close_for(&registry, key, reason),
            }
        }
    }
}

/// Marks connection `key` closed for `reason` (counted once) and returns the reason it
/// closes with (an earlier one wins).
fn close_for(registry: &Registry, key: u64, reason: CloseReason) -> CloseReason {
    let connections = lock(&registry.connections);
    match connections.get(&key) {
        Some(entry) => {
            close_entry(registry, entry, reason);
            entry.close.borrow().unwrap_or(reason)
        }
        None => reason,
    }
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        lock(&self.registry.connections).remove(&self.key);
    }
}

/// A time no connection lives to: 9999-12-31, the last X.509 can write.
fn far_future() -> SystemTime {
    crate::verify::system_time_from_unix(253_402_300_799)
}

/// The registry's locks guard plain maps and counters, consistent after any panic.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(all(test, feature = "dev-server"))]
mod tests {
    use super::*;
    use crate::authorize;
    use crate::dev_server::{DevCa, SvidRequest};

    struct World {
        ca: DevCa,
        bundles: BundleSet,
        verifier: SvidVerifier,
    }

    impl World {
        fn new() -> Self {
            let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
            let bundles = [ca.bundle()].into_iter().collect();
            World {
                ca,
                bundles,
                verifier: SvidVerifier::new().unwrap(),
            }
        }

        fn peer(&self, id: &str) -> PeerIdentity {
            self.peer_until(id, SystemTime::now() + Duration::from_secs(600))
        }

        fn peer_until(&self, id: &str, not_after: SystemTime) -> PeerIdentity {
            let request = SvidRequest::new(id.parse().unwrap(), Duration::from_secs(600))
                .valid_between(SystemTime::now() - Duration::from_secs(60), not_after);
            let svid = self.ca.issue(&request).unwrap();
            PeerIdentity::for_tests(svid.chain().to_vec()).unwrap()
        }
    }

    fn id(text: &str) -> SpiffeId {
        text.parse().unwrap()
    }

    fn trust<'a>(
        world: &'a World,
        bundles: &'a BundleSet,
        authorizer: &'a Authorizer,
        revoked: &'a [SpiffeId],
    ) -> CurrentTrust<'a> {
        CurrentTrust {
            verifier: &world.verifier,
            bundles,
            authorizer,
            revoked,
        }
    }

    #[test]
    fn a_peer_that_still_passes_is_left_alone() {
        let world = World::new();
        let any = authorize::any();
        let peer = world.peer("spiffe://example.org/a");
        assert_eq!(
            check_peer(&peer, trust(&world, &world.bundles, &any, &[])),
            None
        );
    }

    #[test]
    fn each_broken_rule_names_its_reason() {
        let world = World::new();
        let peer = world.peer("spiffe://example.org/a");
        let any = authorize::any();
        // The CA left the bundle (a rotation that dropped it): bundle.
        let other = World::new();
        assert_eq!(
            check_peer(&peer, trust(&world, &other.bundles, &any, &[])),
            Some(CloseReason::Bundle)
        );
        // The trust domain was de-federated: no bundle for it at all.
        assert_eq!(
            check_peer(&peer, trust(&world, &BundleSet::default(), &any, &[])),
            Some(CloseReason::Bundle)
        );
        // The policy no longer allows the ID.
        let only_b = authorize::id(id("spiffe://example.org/b"));
        assert_eq!(
            check_peer(&peer, trust(&world, &world.bundles, &only_b, &[])),
            Some(CloseReason::Policy)
        );
        // Revoked, whatever the authorizer allows.
        assert_eq!(
            check_peer(
                &peer,
                trust(
                    &world,
                    &world.bundles,
                    &any,
                    &[id("spiffe://example.org/a")]
                )
            ),
            Some(CloseReason::Revoked)
        );
        // The leaf has expired since the handshake.
        let later = UnixTime::since_unix_epoch(
            (SystemTime::now() + Duration::from_secs(3600))
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap(),
        );
        assert_eq!(
            check_peer_at(&peer, trust(&world, &world.bundles, &any, &[]), later),
            Some(CloseReason::Expired)
        );
    }

    /// A rotation of the server's own SVID changes nothing a peer is checked by: no
    /// re-check; a change of the bundles is re-checked (seen here through a rule that changed
    /// its answer in between, which only a re-check can notice).
    #[tokio::test]
    async fn only_a_change_of_the_bundles_rechecks() {
        use crate::source::{StaticSource, X509Context};
        use std::sync::atomic::{AtomicBool, Ordering};
        let world = World::new();
        let own = |ca: &DevCa| {
            ca.issue(&SvidRequest::new(
                id("spiffe://example.org/server"),
                Duration::from_secs(600),
            ))
            .unwrap()
        };
        let source = Arc::new(StaticSource::new(
            X509Context::new(vec![own(&world.ca)], world.bundles.clone()).unwrap(),
        ));
        let allowed = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&allowed);
        let rule = authorize::custom("allowed", move |_| flag.load(Ordering::SeqCst));
        let live = LiveConnections::new();
        let task = live.recheck_on_changes(
            Arc::clone(&source) as Arc<dyn X509Source>,
            SvidVerifier::new().unwrap(),
            rule,
            None,
        );
        let mut peer = live.register(world.peer("spiffe://example.org/a"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        allowed.store(false, Ordering::SeqCst);

        // A rotation as the Workload API source makes one: the same bundles, shared.
        let bundles = Arc::clone(source.x509_context().unwrap().shared_bundles());
        source.replace(X509Context::with_shared_bundles(vec![own(&world.ca)], bundles).unwrap());
        let waiting = tokio::time::timeout(Duration::from_millis(200), peer.closed()).await;
        assert!(waiting.is_err(), "an SVID rotation re-checked the peers");

        let other = DevCa::new("other.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let mut more = world.bundles.clone();
        more.insert(other.bundle());
        source.replace(X509Context::new(vec![own(&world.ca)], more).unwrap());
        let reason = tokio::time::timeout(Duration::from_secs(2), peer.closed()).await;
        assert_eq!(reason.unwrap(), CloseReason::Policy);
        task.abort();
    }

    #[tokio::test]
    async fn recheck_closes_only_the_peers_that_fail() {
        let world = World::new();
        let live = LiveConnections::new();
        let mut a = live.register(world.peer("spiffe://example.org/a"));
        let mut b = live.register(world.peer("spiffe://example.org/b"));
        let only_b = authorize::id(id("spiffe://example.org/b"));
        let closed =
            live.recheck(|peer| check_peer(peer, trust(&world, &world.bundles, &only_b, &[])));
        assert_eq!(closed, 1);
        assert_eq!(a.closed().await, CloseReason::Policy);
        assert_eq!(b.close_reason(), None);
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.closed()).await;
        assert!(waiting.is_err(), "b must stay open");
        // A second recheck does not count a closing connection again.
        assert_eq!(
            live.recheck(|peer| check_peer(peer, trust(&world, &world.bundles, &only_b, &[]))),
            0
        );
        assert_eq!(live.closed_count(CloseReason::Policy), 1);
    }

    #[tokio::test]
    async fn revoke_closes_every_connection_of_that_id_and_no_other() {
        let world = World::new();
        let live = LiveConnections::new();
        let mut first = live.register(world.peer("spiffe://example.org/rogue"));
        let mut second = live.register(world.peer("spiffe://example.org/rogue"));
        let other = live.register(world.peer("spiffe://example.org/good"));
        assert_eq!(live.revoke(&id("spiffe://example.org/rogue")), 2);
        assert_eq!(first.closed().await, CloseReason::Revoked);
        assert_eq!(second.closed().await, CloseReason::Revoked);
        assert_eq!(other.close_reason(), None);
        assert_eq!(live.closed_count(CloseReason::Revoked), 2);
    }

    #[tokio::test]
    async fn a_connection_closes_when_its_leaf_expires() {
        let world = World::new();
        let live = LiveConnections::new();
        let not_after = SystemTime::now() + Duration::from_secs(2);
        let mut connection = live.register(world.peer_until("spiffe://example.org/a", not_after));
        assert_eq!(connection.close_reason(), None);
        let reason = tokio::time::timeout(Duration::from_secs(5), connection.closed())
            .await
            .expect("closed at the leaf's notAfter");
        assert_eq!(reason, CloseReason::Expired);
        // X.509 times are whole seconds: notAfter is at most 1 s before `not_after`.
        assert!(SystemTime::now() + Duration::from_secs(1) >= not_after);
        assert_eq!(live.closed_count(CloseReason::Expired), 1);
    }

    #[tokio::test]
    async fn a_connection_closes_at_its_maximum_lifetime() {
        let world = World::new();
        let live = LiveConnections::new();
        live.set_max_lifetime(Some(Duration::from_millis(200)));
        let started = Instant::now();
        let mut connection = live.register(world.peer("spiffe://example.org/a"));
        assert_eq!(connection.closed().await, CloseReason::Lifetime);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(connection.close_reason(), Some(CloseReason::Lifetime));
        assert_eq!(live.closed_count(CloseReason::Lifetime), 1);
    }

    #[test]
    fn dropping_a_connection_removes_it() {
        let world = World::new();
        let live = LiveConnections::new();
        let connection = live.register(world.peer("spiffe://example.org/a"));
        assert_eq!(live.len(), 1);
        drop(connection);
        assert!(live.is_empty());
        assert_eq!(live.revoke(&id("spiffe://example.org/a")), 0);
    }
}
