//! The state every source shares: the last good context behind an atomic pointer, and a
//! change counter that wakes subscribers.

use std::sync::Arc;
#[cfg(feature = "workload-api")]
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

#[cfg(feature = "workload-api")]
use super::StreamState;
use super::{SourceError, X509Context};

/// Why a source has no context to hand out, besides expiry (only the Workload API source
/// withdraws or closes).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "workload-api"), allow(dead_code))]
enum Unavailable {
    Withdrawn(String),
    Closed,
}

#[derive(Debug)]
struct State {
    context: Arc<X509Context>,
    /// The earliest notAfter of the context's SVIDs: until then no SVID needs filtering.
    earliest_expiry: SystemTime,
    unavailable: Option<Unavailable>,
}

impl State {
    fn new(context: Arc<X509Context>, unavailable: Option<Unavailable>) -> Self {
        let earliest_expiry = context
            .svids()
            .iter()
            .map(crate::X509Svid::expires_at)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Self {
            context,
            earliest_expiry,
            unavailable,
        }
    }
}

/// The current context of a source, read lock-free.
#[derive(Debug)]
pub(crate) struct SourceCell {
    state: ArcSwap<State>,
    changes: watch::Sender<u64>,
    /// The stream a streaming source follows (`None` for the others).
    #[cfg(feature = "workload-api")]
    stream: Mutex<Option<StreamState>>,
}

impl SourceCell {
    /// A cell holding `context`.
    pub(crate) fn new(context: X509Context) -> Self {
        Self {
            state: ArcSwap::from_pointee(State::new(Arc::new(context), None)),
            changes: watch::Sender::new(0),
            #[cfg(feature = "workload-api")]
            stream: Mutex::new(None),
        }
    }

    /// The state of the stream the source follows, if it streams.
    #[cfg(feature = "workload-api")]
    pub(crate) fn stream_state(&self) -> Option<StreamState> {
        *self.stream.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the stream is `connected` (an update arrived on it) or not (it ended or
    /// failed); a change of state starts a new `since`, a reconnection counts.
    #[cfg(feature = "workload-api")]
    pub(crate) fn set_stream(&self, connected: bool) {
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        match stream.as_mut() {
            Some(state) if state.connected == connected => {}
            Some(state) => {
                if connected {
                    state.reconnects += 1;
                }
                state.connected = connected;
                state.since = SystemTime::now();
            }
            None => {
                *stream = Some(StreamState {
                    connected,
                    since: SystemTime::now(),
                    reconnects: 0,
                });
            }
        }
    }

    /// The context at `now`: fails closed when the default SVID expired, leaves out other
    /// expired SVIDs.
    pub(crate) fn read_at(&self, now: SystemTime) -> Result<Arc<X509Context>, SourceError> {
        let state = self.state.load();
        match &state.unavailable {
            Some(Unavailable::Withdrawn(reason)) => {
                return Err(SourceError::Withdrawn(reason.clone()));
            }
            Some(Unavailable::Closed) => return Err(SourceError::Closed),
            None => {}
        }
        if now <= state.earliest_expiry {
            return Ok(Arc::clone(&state.context));
        }
        self.drop_expired(&state, now)
    }

    /// Leaves the SVIDs expired at `now` out of the current context, once: the filtered
    /// context replaces the state it came from, so later reads are pointer loads again (and
    /// the verification cache, keyed by context, keeps its entries). A state replaced
    /// meanwhile by a publish is left alone. Subscribers are not woken: an expiry is not new
    /// material.
    fn drop_expired(
        &self,
        state: &Arc<State>,
        now: SystemTime,
    ) -> Result<Arc<X509Context>, SourceError> {
        let context = Arc::new(state.context.unexpired_at(now)?);
        let filtered = Arc::new(State::new(Arc::clone(&context), None));
        let _ = self.state.compare_and_swap(state, filtered);
        Ok(context)
    }

    /// The context last published, whether handed out or not (withdrawn, closed, expired).
    #[cfg(feature = "workload-api")]
    pub(crate) fn last(&self) -> Arc<X509Context> {
        Arc::clone(&self.state.load().context)
    }

    /// The context now.
    pub(crate) fn read(&self) -> Result<Arc<X509Context>, SourceError> {
        self.read_at(SystemTime::now())
    }

    /// Makes `context` current and wakes subscribers.
    pub(crate) fn publish(&self, context: X509Context) {
        self.state
            .store(Arc::new(State::new(Arc::new(context), None)));
        self.notify();
    }

    /// Stops handing out the context until the next [`SourceCell::publish`].
    #[cfg(feature = "workload-api")]
    pub(crate) fn withdraw(&self, reason: String) {
        self.set_unavailable(Unavailable::Withdrawn(reason));
    }

    /// Stops handing out the context for good.
    #[cfg(feature = "workload-api")]
    pub(crate) fn close(&self) {
        self.set_unavailable(Unavailable::Closed);
    }

    #[cfg(feature = "workload-api")]
    fn set_unavailable(&self, unavailable: Unavailable) {
        let current = self.state.load_full();
        let context = Arc::clone(&current.context);
        self.state
            .store(Arc::new(State::new(context, Some(unavailable))));
        self.notify();
    }

    fn notify(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// A subscription to changes.
    pub(crate) fn updates(&self) -> Updates {
        Updates {
            receiver: self.changes.subscribe(),
        }
    }
}

/// Wakes on every change of a source's context or of its availability.
#[derive(Debug, Clone)]
pub struct Updates {
    receiver: watch::Receiver<u64>,
}

impl Updates {
    /// A subscription to a change counter (the JWT sources share this handle).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn from_receiver(receiver: watch::Receiver<u64>) -> Self {
        Self { receiver }
    }

    /// Waits for the next change and returns its generation (a counter starting at 0).
    ///
    /// # Errors
    /// [`SourceError::Closed`] when the source is gone.
    pub async fn changed(&mut self) -> Result<u64, SourceError> {
        self.receiver
            .changed()
            .await
            .map_err(|_| SourceError::Closed)?;
        Ok(*self.receiver.borrow_and_update())
    }

    /// The generation last seen.
    pub fn generation(&self) -> u64 {
        *self.receiver.borrow()
    }
}

#[cfg(all(test, unix, feature = "dev-server"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dev_server::{DevCa, SvidRequest};

    fn svid(ca: &DevCa, id: &str, lifetime: Duration) -> crate::X509Svid {
        ca.issue(&SvidRequest::new(id.parse().unwrap(), lifetime))
            .unwrap()
    }

    #[test]
    fn expired_svids_are_filtered_once_not_per_read() {
        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let long = svid(&ca, "spiffe://example.org/a", Duration::from_secs(3000));
        let short = svid(&ca, "spiffe://example.org/b", Duration::from_secs(60)).with_hint("short");
        let short_expiry = short.expires_at();
        let context = X509Context::new(vec![long, short], [ca.bundle()].into_iter().collect());
        let cell = SourceCell::new(context.unwrap());
        let before = cell.read_at(short_expiry).unwrap();
        assert_eq!(before.svids().len(), 2);

        let later = short_expiry + Duration::from_secs(1);
        let first = cell.read_at(later).unwrap();
        assert_eq!(first.svids().len(), 1);
        assert!(first.svid_by_hint("short").is_none());
        let second = cell.read_at(later).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the filtered context is kept");
        assert!(!Arc::ptr_eq(&before, &first));
        assert_eq!(cell.updates().generation(), 0, "no one is woken");
    }

    #[test]
    fn an_expired_default_svid_fails_closed_on_every_read() {
        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let default = svid(&ca, "spiffe://example.org/a", Duration::from_secs(60));
        let expiry = default.expires_at();
        let context = X509Context::new(vec![default], [ca.bundle()].into_iter().collect());
        let cell = SourceCell::new(context.unwrap());
        for _ in 0..2 {
            assert!(matches!(
                cell.read_at(expiry + Duration::from_secs(1)),
                Err(SourceError::Expired { .. })
            ));
        }
        assert!(cell.read_at(expiry).is_ok());
    }
}
