//! Where audit events go besides `tracing`: the sinks registered in this process.
//!
//! The registry is process-wide, like a `tracing` subscriber: every config, layer and agent
//! of the process records into it. With no sink registered, a decision costs one atomic
//! load here (no digest is computed, no event built).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::AuditEvent;

/// Receives every audit event of the process while registered (see [`register`]).
///
/// `record` is called on the thread that decided, often a handshake's: keep it short
/// (hand the event to a queue, bump counters).
pub trait AuditSink: Send + Sync {
    /// One decision.
    fn record(&self, event: &AuditEvent);
}

type Entry = (u64, Arc<dyn AuditSink>);

/// The registered sinks.
static SINKS: RwLock<Vec<Entry>> = RwLock::new(Vec::new());
/// How many sinks are registered (read without the lock).
static REGISTERED: AtomicUsize = AtomicUsize::new(0);
/// The next registration's number.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A sink's registration: dropping it unregisters the sink.
#[derive(Debug)]
#[must_use = "the sink is unregistered when this is dropped"]
pub struct Registration {
    number: u64,
}

/// Registers `sink` for every audit event of the process, until the [`Registration`] is
/// dropped.
pub fn register(sink: Arc<dyn AuditSink>) -> Registration {
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut sinks = SINKS.write().unwrap_or_else(PoisonError::into_inner);
    sinks.push((number, sink));
    REGISTERED.store(sinks.len(), Ordering::Release);
    Registration { number }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut sinks = SINKS.write().unwrap_or_else(PoisonError::into_inner);
        sinks.retain(|(number, _)| *number != self.number);
        REGISTERED.store(sinks.len(), Ordering::Release);
    }
}

/// Whether any sink is registered: decisions build their events only then.
pub(crate) fn enabled() -> bool {
    REGISTERED.load(Ordering::Acquire) > 0
}

/// Hands the event `make` builds to every sink, if there is any.
pub(crate) fn dispatch(make: impl FnOnce() -> AuditEvent) {
    if !enabled() {
        return;
    }
    let event = make().bounded();
    let sinks: Vec<Arc<dyn AuditSink>> = SINKS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, sink)| Arc::clone(sink))
        .collect();
    for sink in sinks {
        sink.record(&event);
    }
}
