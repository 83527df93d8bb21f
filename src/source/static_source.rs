//! A source whose material is given in memory.

use std::sync::Arc;

use super::cell::SourceCell;
use super::{SourceError, Updates, X509Context, X509Source};

/// An [`X509Source`] over a context held in memory, replaced by hand.
///
/// For material that does not come from a Workload API: certificates issued by your own
/// tooling, tests, benchmarks. Expiry still applies: once the default SVID is past its
/// notAfter, [`X509Source::x509_context`] fails.
///
/// ```
/// # #[cfg(all(unix, feature = "dev-server"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use spiffe_mtls::dev_server::{DevCa, SvidRequest};
/// use spiffe_mtls::source::{StaticSource, X509Context, X509Source};
///
/// let ca = DevCa::new("example.org".parse()?, Duration::from_secs(3600))?;
/// let svid = ca.issue(&SvidRequest::new("spiffe://example.org/app".parse()?, Duration::from_secs(600)))?;
/// let source = StaticSource::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect())?);
/// assert_eq!(
///     source.x509_context()?.default_svid().spiffe_id().to_string(),
///     "spiffe://example.org/app"
/// );
/// # Ok(())
/// # }
/// # #[cfg(not(all(unix, feature = "dev-server")))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct StaticSource {
    cell: Arc<SourceCell>,
}

impl StaticSource {
    /// A source holding `context`.
    pub fn new(context: X509Context) -> Self {
        Self {
            cell: Arc::new(SourceCell::new(context)),
        }
    }

    /// Makes `context` current: the next read (and handshake) uses it.
    pub fn replace(&self, context: X509Context) {
        self.cell.publish(context);
    }
}

impl X509Source for StaticSource {
    fn x509_context(&self) -> Result<Arc<X509Context>, SourceError> {
        self.cell.read()
    }

    fn updates(&self) -> Updates {
        self.cell.updates()
    }
}
