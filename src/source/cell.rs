//! The state every source shares: the last good context behind an atomic pointer, and a
//! change counter that wakes subscribers.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::{SourceError, X509Context};

/// Why a source has no context to hand out, besides expiry.
#[derive(Debug, Clone)]
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
}

impl SourceCell {
    /// A cell holding `context`.
    pub(crate) fn new(context: X509Context) -> Self {
        Self {
            state: ArcSwap::from_pointee(State::new(Arc::new(context), None)),
            changes: watch::Sender::new(0),
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
        state.context.unexpired_at(now).map(Arc::new)
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
    pub(crate) fn withdraw(&self, reason: String) {
        self.set_unavailable(Unavailable::Withdrawn(reason));
    }

    /// Stops handing out the context for good.
    pub(crate) fn close(&self) {
        self.set_unavailable(Unavailable::Closed);
    }

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
