//! rustls verifiers that check the peer's chain as an X.509-SVID against the current bundle
//! of the peer's trust domain, then authorize its SPIFFE ID; the decision is recorded once the
//! peer's handshake signature verified (see [`super::audit`]).
//!
//! rustls 0.23 calls, on both sides and in both versions, the certificate check first and the
//! signature check next with the same leaf (`cert` is the end-entity certificate of the chain
//! just checked): TLS 1.3 client `client/tls13.rs` (`verify_server_cert`, then
//! `verify_tls13_signature` on the server's CertificateVerify, in the same call), TLS 1.3
//! server `server/tls13.rs` (`verify_client_cert` on the client's Certificate,
//! `verify_tls13_signature` on its CertificateVerify), TLS 1.2 client `client/tls12.rs`
//! (`verify_server_cert`, then `verify_tls12_signature` on the ServerKeyExchange), TLS 1.2
//! server `server/tls12.rs` (`verify_client_cert` on the Certificate, `verify_tls12_signature`
//! on the CertificateVerify after the ClientKeyExchange). rustls calls the signature methods
//! for nothing else, and skips them after a passed certificate only when the handshake fails
//! anyway (a TLS 1.2 ServerKeyExchange signed with an algorithm its cipher suite does not
//! allow; a message other than the expected one) or with a resumed session, which skips the
//! certificate check too: resumption is off in our configs unless turned on, and then
//! `super::resumption` re-checks the stored chain.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::audit::{self, RootMemo, Side};
use super::authorized::AuthorizedLeaves;
use super::cache::VerificationCache;
use super::identity::leaf_spiffe_id;
use crate::audit::{AuditEvent, sha256_hex};
use crate::authorize::{Authorizer, ServerNotAuthorized};
use crate::source::X509Source;
use crate::spiffe_id::SpiffeId;
use crate::verify::{ErrorKind, SvidVerifier, VerifyError};

/// The shared check of both verifiers.
#[derive(Debug)]
pub(crate) struct PeerCheck {
    source: Arc<dyn X509Source>,
    authorizer: Authorizer,
    verifier: SvidVerifier,
    algorithms: WebPkiSupportedAlgorithms,
    side: Side,
    cache: Option<VerificationCache>,
    /// The leaves that passed the certificate check, for the signature check that follows.
    authorized: AuthorizedLeaves,
    /// The roots their chains ended at, for the audit event of the signature check (kept
    /// only while an audit sink is registered).
    roots: RootMemo,
}

impl PeerCheck {
    pub(crate) fn new(
        source: Arc<dyn X509Source>,
        authorizer: Authorizer,
        provider: &CryptoProvider,
        side: Side,
        cache: bool,
        entries: usize,
    ) -> Self {
        Self {
            source,
            authorizer,
            verifier: SvidVerifier::with_provider(provider),
            algorithms: provider.signature_verification_algorithms,
            side,
            cache: cache.then(|| VerificationCache::new(entries)),
            authorized: AuthorizedLeaves::new(entries),
            roots: RootMemo::default(),
        }
    }

    /// Verifies the chain and authorizes its ID. A refusal is recorded here; an acceptance
    /// only by [`Self::signature`], once the peer proved its key.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        match self.verify(end_entity, intermediates, now, |id, root| {
            self.authorize(end_entity, id, root)
        }) {
            Ok(decision) => decision,
            Err(Unverified::NoBundles(error)) => {
                audit::unverified(
                    self.side,
                    &format_args!("no trust bundles: {error}"),
                    &|event| self.evidence(event, end_entity, None),
                );
                Err(rustls::Error::General(format!(
                    "no trust bundles to verify the peer: {error}"
                )))
            }
            Err(Unverified::Chain(error)) => {
                audit::unverified(self.side, &error, &|event| {
                    self.evidence(event, end_entity, None)
                });
                Err(certificate_error(error))
            }
        }
    }

    /// Checks a chain stored in a session ticket, as a full handshake would check it now:
    /// against the current bundle of its trust domain, at `now`, then by the authorizer.
    /// Records nothing: the caller records the outcome (see `tls::resumption`).
    pub(crate) fn recheck_stored(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<SpiffeId, String> {
        let (end_entity, intermediates) = chain
            .split_first()
            .ok_or("the session holds no certificate")?;
        self.verify(end_entity, intermediates, now, |id, _| {
            self.authorizer
                .authorize(id)
                .map(|()| id.clone())
                .map_err(|error| error.to_string())
        })
        .map_err(|failure| match failure {
            Unverified::NoBundles(error) => format!("no trust bundles: {error}"),
            Unverified::Chain(error) => error.to_string(),
        })?
    }

    /// `event` with what the check decided on: the digests of the peer's `leaf` and of the
    /// `root` its chain ended at (a digest), the source's generation and the `spiffe_sequence`
    /// of the peer's trust-domain bundle, the policy's digest.
    pub(crate) fn evidence(
        &self,
        event: AuditEvent,
        leaf: &[u8],
        root: Option<String>,
    ) -> AuditEvent {
        let mut event = event.leaf(leaf);
        event.root_sha256 = root;
        event.bundle_generation = Some(self.source.updates().generation());
        event.spiffe_sequence = event
            .trust_domain
            .as_deref()
            .and_then(|name| name.parse::<crate::TrustDomain>().ok())
            .zip(self.source.x509_context().ok())
            .and_then(|(domain, context)| context.bundles().get(&domain)?.spiffe_sequence());
        event.policy_sha256 = self
            .authorizer
            .policy_sha256()
            .map(|digest| digest.to_string());
        event
    }

    /// The authorizer of the check.
    pub(crate) fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// The source the check verifies by.
    pub(crate) fn source(&self) -> &Arc<dyn X509Source> {
        &self.source
    }

    /// The side the check decides on.
    pub(crate) fn side(&self) -> Side {
        self.side
    }

    /// Verifies the chain against the current bundle of its trust domain (or takes it from
    /// the cache), then hands its SPIFFE ID and the root it ended at to `then` (borrowed:
    /// no copy on the handshake path); records nothing.
    fn verify<R>(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        then: impl FnOnce(&SpiffeId, Option<&[u8]>) -> R,
    ) -> Result<R, Unverified> {
        let context = self
            .source
            .x509_context()
            .map_err(|error| Unverified::NoBundles(error.to_string()))?;
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if let Some(hit) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.get(&context, end_entity, intermediates, seconds))
        {
            // The root is only evidence for the audit sinks: looked up only when one listens.
            let root = crate::audit::enabled()
                .then(|| context.bundles().get(hit.spiffe_id().trust_domain()))
                .flatten()
                .and_then(|bundle| bundle.roots().nth(hit.root_index()));
            return Ok(then(hit.spiffe_id(), root.map(AsRef::as_ref)));
        }
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(CertificateDer::from(end_entity.as_ref()));
        chain.extend(
            intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_ref())),
        );
        let verified = self
            .verifier
            .verify(&chain, context.bundles(), now)
            .map_err(Unverified::Chain)?;
        if let Some(cache) = &self.cache {
            cache.insert(&context, &verified, seconds);
        }
        Ok(then(verified.spiffe_id(), Some(verified.root().as_ref())))
    }

    /// Applies the authorizer to the verified ID of `end_entity`; records a refusal, and
    /// hands an allowed ID to the signature check.
    ///
    /// A refused server (we are the client) fails with
    /// `InvalidCertificate(Other(`[`ServerNotAuthorized`]`))`, so the client's error says what
    /// was expected and what was presented (the server hears the alert `certificate_unknown`). A
    /// refused client fails with `ApplicationVerificationFailure`, which sends the client the
    /// alert `access_denied`; the [`AuthorizeError`](crate::authorize::AuthorizeError) is
    /// noted for the server's own error (see
    /// [`take_refusal`]).
    fn authorize(
        &self,
        end_entity: &[u8],
        id: &SpiffeId,
        root: Option<&[u8]>,
    ) -> Result<(), rustls::Error> {
        let Err(error) = self.authorizer.authorize(id) else {
            self.authorized.insert(end_entity, id);
            if let Some(root) = root
                && crate::audit::enabled()
            {
                self.roots.note(end_entity, root);
            }
            return Ok(());
        };
        audit::refused(self.side, id, &self.authorizer, &|event| {
            self.evidence(event, end_entity, root.and_then(sha256_hex))
        });
        let certificate = match self.side {
            Side::Client => {
                CertificateError::Other(rustls::OtherError(Arc::new(ServerNotAuthorized(error))))
            }
            Side::Server => {
                #[cfg(feature = "net")]
                REFUSAL.with(|refusal| *refusal.borrow_mut() = Some(error));
                #[cfg(not(feature = "net"))]
                drop(error);
                CertificateError::ApplicationVerificationFailure
            }
        };
        Err(rustls::Error::InvalidCertificate(certificate))
    }

    fn tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let result = rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms);
        self.signature(cert, result)
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let result = rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms);
        self.signature(cert, result)
    }

    /// Records the decision that takes effect with the peer's handshake signature over `cert`,
    /// the leaf [`Self::check`] passed a moment before in the same handshake: `accepted` if
    /// the signature verified, else `denied`.
    ///
    /// The ID comes from the table the check filled (a hash and a comparison of the leaf),
    /// else from the leaf itself (an X.509 parse); see [`AuthorizedLeaves`] for the costs.
    fn signature(
        &self,
        cert: &CertificateDer<'_>,
        result: Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let memo = self.authorized.get(cert);
        let read;
        let id = match &memo {
            Some(entry) => Some(entry.id()),
            None => {
                read = leaf_spiffe_id(cert);
                read.as_ref()
            }
        };
        let evidence = |event| {
            let root = sha256_hex(cert).and_then(|leaf| self.roots.root_of(&leaf));
            self.evidence(event, cert, root)
        };
        match (result, id) {
            (Ok(valid), Some(id)) => {
                audit::accepted(self.side, id, &self.authorizer, &evidence);
                Ok(valid)
            }
            // Not after a passed certificate check; fail closed all the same.
            (Ok(_), None) => {
                audit::unverified(
                    self.side,
                    &"the signing certificate has no SPIFFE ID",
                    &evidence,
                );
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::BadEncoding,
                ))
            }
            (Err(error), id) => {
                audit::unproven(self.side, id, &error, &evidence);
                Err(error)
            }
        }
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(feature = "net")]
thread_local! {
    /// The last client this thread's server verifiers refused, for the handshake that polls
    /// them: rustls calls the verifier inside the poll of the handshake future, on the
    /// thread that polls it.
    static REFUSAL: std::cell::RefCell<Option<crate::authorize::AuthorizeError>> =
        const { std::cell::RefCell::new(None) };
}

/// Takes the refusal a server verifier noted on this thread (see [`PeerCheck::authorize`]):
/// call it right after polling a server handshake, on the same thread, and after clearing it
/// before the poll, so that no other handshake's refusal is picked up.
#[cfg(feature = "net")]
pub(crate) fn take_refusal() -> Option<crate::authorize::AuthorizeError> {
    REFUSAL.with(|refusal| refusal.borrow_mut().take())
}

/// Why a chain did not verify.
enum Unverified {
    /// The source has no bundles (the message says why).
    NoBundles(String),
    /// The chain failed verification.
    Chain(VerifyError),
}

/// The rustls error (and so the TLS alert) for a chain that failed verification.
fn certificate_error(error: VerifyError) -> rustls::Error {
    let certificate = match error.kind() {
        ErrorKind::Expired => CertificateError::Expired,
        ErrorKind::UnknownIssuer => CertificateError::UnknownIssuer,
        ErrorKind::BadSignature => CertificateError::BadSignature,
        ErrorKind::Malformed => CertificateError::BadEncoding,
        _ => CertificateError::Other(rustls::OtherError(Arc::new(error))),
    };
    rustls::Error::InvalidCertificate(certificate)
}

/// Verifies servers for a client: the server name is not checked (it is used for SNI only);
/// the server's SPIFFE ID is authorized instead, so URI-only SVIDs dialed by IP work.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier(pub(crate) Arc<PeerCheck>);

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.check(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// Verifies clients for a server; a client certificate is required unless `mandatory` is
/// off (then a client that presents none is anonymous; one that presents a certificate is
/// verified and authorized all the same).
#[derive(Debug)]
pub(crate) struct SpiffeClientVerifier {
    pub(crate) check: Arc<PeerCheck>,
    pub(crate) mandatory: bool,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check.check(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.schemes()
    }
}

#[cfg(all(test, unix, feature = "dev-server"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::authorize;
    use crate::dev_server::{DevCa, SvidRequest};
    use crate::source::{StaticSource, X509Context};

    #[test]
    fn a_signature_check_without_the_table_entry_reads_the_id_from_the_leaf() {
        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let request = SvidRequest::new(
            "spiffe://example.org/peer".parse().unwrap(),
            Duration::from_secs(600),
        );
        let peer = ca.issue(&request).unwrap();
        let context = X509Context::new(vec![peer.clone()], [ca.bundle()].into_iter().collect());
        let check = PeerCheck::new(
            Arc::new(StaticSource::new(context.unwrap())),
            authorize::any(),
            &crate::crypto::default_provider().unwrap(),
            Side::Server,
            true,
            crate::tls::DEFAULT_VERIFICATION_CACHE_ENTRIES,
        );
        let valid = || Ok(HandshakeSignatureValid::assertion());

        // Filled by the certificate check; then found.
        check.check(peer.leaf(), &[], UnixTime::now()).unwrap();
        assert!(check.authorized.get(peer.leaf()).is_some());
        assert!(check.signature(peer.leaf(), valid()).is_ok());

        // Not in the table (a slot taken in between): the leaf is read again.
        let other = ca.issue(&request).unwrap();
        assert!(check.authorized.get(other.leaf()).is_none());
        assert!(check.signature(other.leaf(), valid()).is_ok());

        // Nothing to read an ID from: fails closed even with a valid signature.
        let junk = CertificateDer::from(&b"not a certificate"[..]);
        assert!(check.signature(&junk, valid()).is_err());

        // A failed signature stays failed.
        let bad = Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ));
        assert!(check.signature(peer.leaf(), bad).is_err());
    }
}
