//! The web-PKI server verifier of the web client mode: rustls' [`WebPkiServerVerifier`] over
//! the roots the caller gave (chain to a root, validity, the server name checked), with the
//! audit events of the SPIFFE verifiers: a refusal when the certificate fails, `accepted`
//! only once the server's handshake signature verified (see [`super::audit`]).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::audit::{self, Side};
use super::authorized::AuthorizedLeaves;

/// Verifies a server by web PKI for a client that presents its SVID.
#[derive(Debug)]
pub(crate) struct WebServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The server name each leaf that passed was verified for, for the signature check.
    verified: AuthorizedLeaves<String>,
}

impl WebServerVerifier {
    pub(crate) fn new(inner: Arc<WebPkiServerVerifier>) -> Self {
        Self {
            inner,
            // a client talks to few servers: a small table (one set of 8 ways per 8 entries)
            verified: AuthorizedLeaves::new(64),
        }
    }

    /// Records the decision that takes effect with the server's handshake signature. The
    /// server name comes from the table the certificate check filled; on a miss (another
    /// handshake took the slot in between) the event names peer `-`: the certificate passed
    /// in this handshake all the same, as rustls checks it first.
    fn signature(
        &self,
        cert: &CertificateDer<'_>,
        result: Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let entry = self.verified.get(cert);
        let name = entry.as_ref().map_or("-", |entry| entry.id().as_str());
        match result {
            Ok(valid) => {
                audit::web_accepted(Side::Client, name, &|event| event.leaf(cert));
                Ok(valid)
            }
            Err(error) => {
                audit::web_unproven(Side::Client, name, &error, &|event| event.leaf(cert));
                Err(error)
            }
        }
    }
}

impl ServerCertVerifier for WebServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = server_name.to_str();
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => {
                self.verified.insert(end_entity, &name.into_owned());
                Ok(verified)
            }
            Err(error) => {
                audit::web_denied(Side::Client, &name, &error, &|event| event.leaf(end_entity));
                Err(error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let result = self.inner.verify_tls12_signature(message, cert, dss);
        self.signature(cert, result)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let result = self.inner.verify_tls13_signature(message, cert, dss);
        self.signature(cert, result)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
