//! Where SVIDs and bundles come from, and the context they form.

mod context;

pub use context::{ContextError, X509Context};
