//! The certificate resolver: presents the source's current SVID at every handshake.

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::source::X509Source;

/// Hands rustls the current SVID's certified key (loaded once per update, not per handshake).
#[derive(Debug)]
pub(crate) struct SvidResolver {
    source: Arc<dyn X509Source>,
    hint: Option<String>,
}

impl SvidResolver {
    pub(crate) fn new(source: Arc<dyn X509Source>, hint: Option<String>) -> Self {
        Self { source, hint }
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let context = match self.source.x509_context() {
            Ok(context) => context,
            Err(error) => {
                tracing::warn!(%error, "no SVID to present; the handshake fails");
                return None;
            }
        };
        let svid = match &self.hint {
            None => context.default_svid(),
            Some(hint) => {
                let Some(svid) = context.svid_by_hint(hint) else {
                    tracing::warn!(
                        hint,
                        "no SVID with this hint to present; the handshake fails"
                    );
                    return None;
                };
                svid
            }
        };
        Some(Arc::clone(svid.certified_key()))
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
