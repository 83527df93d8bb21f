//! The signer of the cards an agent serves: the SVID its TLS server presents, as it rotates.

use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use serde_json::Value;

use super::CardSignatureError;
use crate::source::X509Source;
use crate::spiffe_id::SpiffeId;

/// The most documents kept signed for one SVID (an agent serves three: v1.0, v0.3, both).
const MAX_SIGNED: usize = 8;

/// Signs agent cards with the current X.509-SVID of a source (the one with a hint, if set:
/// the SVID the agent's TLS server presents), so that a card is always signed by the identity
/// a client meets in the handshake. Give it to [`MtlsAgentCard::signed_by`](super::MtlsAgentCard::signed_by)
/// and [`agent_router`](super::agent_router) serves every card dialect signed.
///
/// Signed documents are kept until the SVID rotates: the first request after a rotation
/// signs again, with the new SVID.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::a2a::{CardDialect, CardSigner, MtlsAgentCard};
/// use spiffe_mtls::source::WorkloadApiSource;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = WorkloadApiSource::builder().build().await?;
/// let card = MtlsAgentCard::new("echo agent", "https://127.0.0.1:8443/a2a")
///     .signed_by(CardSigner::new(source));
/// let signed = card.document(CardDialect::V1_0)?;
/// assert!(signed["signatures"][0]["protected"].is_string());
/// # Ok(())
/// # }
/// ```
pub struct CardSigner {
    source: Arc<dyn X509Source>,
    svid_hint: Option<String>,
    signed: Mutex<Signed>,
}

/// Documents signed with one SVID: (unsigned, signed) pairs.
#[derive(Default)]
struct Signed {
    leaf: Option<CertificateDer<'static>>,
    documents: Vec<(Value, Value)>,
}

impl std::fmt::Debug for CardSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardSigner")
            .field("source", &self.source)
            .field("svid_hint", &self.svid_hint)
            .finish_non_exhaustive()
    }
}

impl CardSigner {
    /// A signer with `source`'s default SVID.
    ///
    /// # Example
    /// See [`CardSigner`].
    pub fn new(source: impl X509Source + 'static) -> Self {
        Self {
            source: Arc::new(source),
            svid_hint: None,
            signed: Mutex::new(Signed::default()),
        }
    }

    /// Signs with the SVID that has this hint (the TLS server's `svid_hint`).
    ///
    /// # Example
    /// ```no_run
    /// # fn f(source: spiffe_mtls::source::StaticSource) {
    /// let signer = spiffe_mtls::a2a::CardSigner::new(source).svid_hint("server");
    /// # }
    /// ```
    #[must_use]
    pub fn svid_hint(mut self, hint: impl Into<String>) -> Self {
        self.svid_hint = Some(hint.into());
        self
    }

    /// The SPIFFE ID cards are signed by now.
    ///
    /// # Errors
    /// [`CardSignatureError::NoSvid`] when the source has no SVID to sign with.
    pub fn spiffe_id(&self) -> Result<SpiffeId, CardSignatureError> {
        self.with_svid(|svid| Ok(svid.spiffe_id().clone()))
    }

    /// `card` signed by the current SVID (see [`sign_card`](super::sign_card)).
    ///
    /// # Errors
    /// [`CardSignatureError`] when the source has no SVID or the card cannot be signed.
    pub fn sign(&self, card: &Value) -> Result<Value, CardSignatureError> {
        self.sign_built(|_| card.clone())
    }

    /// The document `build` makes for the signing SVID's ID, signed by that SVID.
    pub(crate) fn sign_built(
        &self,
        build: impl FnOnce(&SpiffeId) -> Value,
    ) -> Result<Value, CardSignatureError> {
        self.with_svid(|svid| {
            let unsigned = build(svid.spiffe_id());
            let mut signed = self.signed.lock().unwrap_or_else(|e| e.into_inner());
            if signed.leaf.as_ref() != Some(svid.leaf()) {
                signed.leaf = Some(svid.leaf().clone());
                signed.documents.clear();
            }
            if let Some((_, document)) = signed.documents.iter().find(|(u, _)| *u == unsigned) {
                return Ok(document.clone());
            }
            let document = super::sign_card(&unsigned, svid)?;
            if signed.documents.len() == MAX_SIGNED {
                signed.documents.remove(0);
            }
            signed.documents.push((unsigned, document.clone()));
            Ok(document)
        })
    }

    fn with_svid<T>(
        &self,
        f: impl FnOnce(&crate::svid::X509Svid) -> Result<T, CardSignatureError>,
    ) -> Result<T, CardSignatureError> {
        let context = self
            .source
            .x509_context()
            .map_err(|e| CardSignatureError::NoSvid(e.to_string()))?;
        let svid = match &self.svid_hint {
            Some(hint) => context
                .svid_by_hint(hint)
                .ok_or_else(|| CardSignatureError::NoSvid(format!("no SVID with hint {hint:?}")))?,
            None => context.default_svid(),
        };
        f(svid)
    }
}
