//! rustls verifiers that check the peer's chain as an X.509-SVID against the current bundle
//! of the peer's trust domain, then authorize its SPIFFE ID.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::audit::{self, Side};
use super::cache::VerificationCache;
use crate::authorize::Authorizer;
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
}

impl PeerCheck {
    pub(crate) fn new(
        source: Arc<dyn X509Source>,
        authorizer: Authorizer,
        provider: &CryptoProvider,
        side: Side,
        cache: bool,
    ) -> Self {
        Self {
            source,
            authorizer,
            verifier: SvidVerifier::with_provider(provider),
            algorithms: provider.signature_verification_algorithms,
            side,
            cache: cache.then(VerificationCache::new),
        }
    }

    /// Verifies the chain, authorizes its ID, and records the decision.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let context = self.source.x509_context().map_err(|error| {
            audit::unverified(self.side, &format_args!("no trust bundles: {error}"));
            rustls::Error::General(format!("no trust bundles to verify the peer: {error}"))
        })?;
        let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if let Some(hit) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.get(&context, end_entity, intermediates, seconds))
        {
            return self.authorize(hit.verified.spiffe_id());
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
            .map_err(|error| {
                audit::unverified(self.side, &error);
                certificate_error(error)
            })?;
        let decision = self.authorize(verified.spiffe_id());
        if let Some(cache) = &self.cache {
            cache.insert(&context, verified);
        }
        decision
    }

    /// Applies the authorizer to a verified ID and records the decision.
    fn authorize(&self, id: &SpiffeId) -> Result<(), rustls::Error> {
        if self.authorizer.is_allowed(id) {
            audit::accepted(self.side, id, &self.authorizer);
            Ok(())
        } else {
            audit::refused(self.side, id, &self.authorizer);
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
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
pub(crate) struct SpiffeServerVerifier(pub(crate) PeerCheck);

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

/// Verifies clients for a server; a client certificate is required.
#[derive(Debug)]
pub(crate) struct SpiffeClientVerifier(pub(crate) PeerCheck);

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
        self.0.check(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
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
