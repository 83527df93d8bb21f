//! A tracing subscriber for tests: hands the target and fields of every event to a sink.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// An event's fields by name, values as text.
pub type Fields = BTreeMap<String, String>;

/// What receives each event: its target and fields.
type Sink = Arc<dyn Fn(&str, Fields) + Send + Sync>;

/// A subscriber that calls `sink(target, fields)` for every event.
#[derive(Clone)]
pub struct Capture {
    sink: Sink,
}

impl Capture {
    pub fn new(sink: impl Fn(&str, Fields) + Send + Sync + 'static) -> Self {
        Self {
            sink: Arc::new(sink),
        }
    }

    /// A capture to install for one thread (`set_default`, `with_default`) in a test binary
    /// whose other tests run at the same time: see [`keep_callsites_alive`].
    pub fn for_this_thread(sink: impl Fn(&str, Fields) + Send + Sync + 'static) -> Self {
        keep_callsites_alive();
        Self::new(sink)
    }
}

/// tracing caches, per callsite, whether any subscriber wants its events; when another
/// test's thread-local subscriber is dropped while no other is installed, a callsite can be
/// cached as wanted by nobody, and this test's events from it are lost. A global subscriber
/// that wants to be asked every time (and records nothing) keeps every callsite asking the
/// thread's own subscriber. Installed once per process; a test binary that installs a global
/// capture of its own does not call this.
pub fn keep_callsites_alive() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(AskEveryTime);
    });
}

struct AskEveryTime;

impl Subscriber for AskEveryTime {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        (self.sink)(event.metadata().target(), fields);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
