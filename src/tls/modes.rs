//! The modes beyond mutual TLS between SPIFFE workloads, after go-spiffe's `tlsconfig`:
//!
//! | builder                    | presents                 | verifies the peer by                    | go-spiffe             |
//! |----------------------------|--------------------------|-----------------------------------------|-----------------------|
//! | [`tls_client_config`]      | nothing                  | SVID + authorizer                       | `TLSClientConfig`     |
//! | [`tls_server_config`]      | its SVID                 | nothing: no client certificate asked    | `TLSServerConfig`     |
//! | [`mtls_web_server_config`] | a web-PKI certificate    | client SVID + authorizer (required)     | `MTLSWebServerConfig` |
//! | [`mtls_web_client_config`] | its SVID                 | web PKI: the given roots and the name   | `MTLSWebClientConfig` |
//!
//! Every mode keeps session resumption off and records one audit event per decision it makes
//! (see [`AUDIT_TARGET`](super::AUDIT_TARGET)).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::ResolvesServerCert;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::verifier::{SpiffeClientVerifier, SpiffeServerVerifier};
use super::web::WebServerVerifier;
use super::{Settings, Side, TlsConfigError};
use crate::authorize::Authorizer;
use crate::source::X509Source;

/// Builds a TLS-only [`ClientConfig`]: no client certificate, the server's SVID verified and
/// authorized; see [`tls_client_config`].
#[derive(Debug)]
pub struct TlsClientConfigBuilder {
    settings: Settings,
    authorizer: Authorizer,
}

impl TlsClientConfigBuilder {
    connection_setters!();
    cache_setter!();

    /// The config. It offers no client certificate: a server that requires one refuses it.
    /// Resumption is off.
    ///
    /// # Errors
    /// [`TlsConfigError`] without a crypto provider or with versions it cannot do.
    pub fn build(self) -> Result<ClientConfig, TlsConfigError> {
        let provider = self.settings.provider()?;
        let check = self
            .settings
            .check(&provider, Side::Client, &self.authorizer);
        let config = self
            .settings
            .client_builder(provider)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier(check)))
            .with_no_client_auth();
        Ok(self.settings.finish_client(config))
    }
}

/// A TLS-only client config (go-spiffe's `TLSClientConfig`): presents no certificate, and
/// accepts a server whose SVID verifies against its trust domain bundle in `source` and whose
/// ID `authorizer` allows. The server name given to rustls is used for SNI only.
///
/// `source` supplies the bundles only: its SVIDs are not used (a source with an SVID is what
/// the Workload API and the static and file sources give; any one will do).
///
/// # Example
/// ```
/// # #[cfg(all(unix, feature = "dev-server"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use spiffe_mtls::{authorize, tls};
/// # use spiffe_mtls::dev_server::{DevCa, SvidRequest};
/// # use spiffe_mtls::source::{StaticSource, X509Context};
/// # let ca = DevCa::new("example.org".parse()?, std::time::Duration::from_secs(3600))?;
/// # let svid = ca.issue(&SvidRequest::new("spiffe://example.org/client".parse()?, std::time::Duration::from_secs(600)))?;
/// # let source = StaticSource::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect())?);
/// let config = tls::tls_client_config(source, authorize::id("spiffe://example.org/db".parse()?))
///     .build()?;
/// assert!(!config.client_auth_cert_resolver.has_certs());
/// # Ok(())
/// # }
/// # #[cfg(not(all(unix, feature = "dev-server")))]
/// # fn main() {}
/// ```
pub fn tls_client_config(
    source: impl X509Source + 'static,
    authorizer: Authorizer,
) -> TlsClientConfigBuilder {
    TlsClientConfigBuilder {
        settings: Settings::new(Arc::new(source)),
        authorizer,
    }
}

/// Builds a TLS-only [`ServerConfig`]: presents the SVID, asks for no client certificate; see
/// [`tls_server_config`].
#[derive(Debug)]
pub struct TlsServerConfigBuilder {
    settings: Settings,
}

impl TlsServerConfigBuilder {
    connection_setters!();
    hint_setter!();

    /// The config. Resumption is off: no session cache, no tickets.
    ///
    /// # Errors
    /// [`TlsConfigError`] without a crypto provider or with versions it cannot do.
    pub fn build(self) -> Result<ServerConfig, TlsConfigError> {
        let provider = self.settings.provider()?;
        let config = self
            .settings
            .server_builder(provider)?
            .with_no_client_auth()
            .with_cert_resolver(self.settings.resolver());
        Ok(self.settings.finish_server(config))
    }
}

/// A TLS-only server config (go-spiffe's `TLSServerConfig`): presents `source`'s current SVID
/// and sends no certificate request, so clients stay anonymous.
///
/// A client that has a certificate (an mTLS client config) does not send it, as it was not
/// asked: the handshake succeeds and the connection has no peer certificate, so there is no
/// peer identity and `net::accept` (which requires one) does not fit this mode; use
/// `tokio_rustls::TlsAcceptor` directly. No authentication decision is made, so nothing is
/// audited.
///
/// # Example
/// ```
/// # #[cfg(all(unix, feature = "dev-server"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use spiffe_mtls::tls;
/// # use spiffe_mtls::dev_server::{DevCa, SvidRequest};
/// # use spiffe_mtls::source::{StaticSource, X509Context};
/// # let ca = DevCa::new("example.org".parse()?, std::time::Duration::from_secs(3600))?;
/// # let svid = ca.issue(&SvidRequest::new("spiffe://example.org/db".parse()?, std::time::Duration::from_secs(600)))?;
/// # let source = StaticSource::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect())?);
/// let config = tls::tls_server_config(source).build()?;
/// # Ok(())
/// # }
/// # #[cfg(not(all(unix, feature = "dev-server")))]
/// # fn main() {}
/// ```
pub fn tls_server_config(source: impl X509Source + 'static) -> TlsServerConfigBuilder {
    TlsServerConfigBuilder {
        settings: Settings::new(Arc::new(source)),
    }
}

/// The web-PKI certificate a [`mtls_web_server_config`] presents: one certified key, or a
/// resolver (for several names, or a certificate that is renewed).
#[derive(Debug, Clone)]
pub struct WebCertificate(Arc<dyn ResolvesServerCert>);

impl WebCertificate {
    /// The certificate chosen by `resolver` at each handshake.
    pub fn resolver(resolver: Arc<dyn ResolvesServerCert>) -> Self {
        Self(resolver)
    }
}

impl From<CertifiedKey> for WebCertificate {
    fn from(key: CertifiedKey) -> Self {
        Self(Arc::new(SingleCertAndKey::from(key)))
    }
}

impl From<Arc<CertifiedKey>> for WebCertificate {
    fn from(key: Arc<CertifiedKey>) -> Self {
        Self(Arc::new(SingleCertAndKey::from(key)))
    }
}

impl From<Arc<dyn ResolvesServerCert>> for WebCertificate {
    fn from(resolver: Arc<dyn ResolvesServerCert>) -> Self {
        Self(resolver)
    }
}

/// Builds a [`ServerConfig`] that presents a web-PKI certificate and requires client SVIDs;
/// see [`mtls_web_server_config`].
#[derive(Debug)]
pub struct MtlsWebServerConfigBuilder {
    settings: Settings,
    authorizer: Authorizer,
    certificate: WebCertificate,
}

impl MtlsWebServerConfigBuilder {
    connection_setters!();
    cache_setter!();

    /// The config. Resumption is off: no session cache, no tickets.
    ///
    /// # Errors
    /// [`TlsConfigError`] without a crypto provider or with versions it cannot do.
    pub fn build(self) -> Result<ServerConfig, TlsConfigError> {
        let provider = self.settings.provider()?;
        let check = self
            .settings
            .check(&provider, Side::Server, &self.authorizer);
        let config = self
            .settings
            .server_builder(provider)?
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier {
                check,
                mandatory: true,
            }))
            .with_cert_resolver(self.certificate.0);
        Ok(self.settings.finish_server(config))
    }
}

/// A server config for web-PKI clients that carry SVIDs (go-spiffe's `MTLSWebServerConfig`):
/// presents `certificate` (a web-PKI chain and key: a [`CertifiedKey`] or a resolver),
/// requires a client SVID that verifies against the client's trust domain bundle in `source`,
/// and lets in the IDs `authorizer` allows. `source`'s own SVIDs are not presented.
///
/// # Example
/// ```
/// use spiffe_mtls::rustls::sign::CertifiedKey;
/// use spiffe_mtls::source::StaticSource;
/// use spiffe_mtls::{authorize, tls};
///
/// /// `web_certificate`: the chain and key of a certificate for the server's DNS name;
/// /// `source`: the bundles client SVIDs are verified against.
/// fn config(
///     web_certificate: CertifiedKey,
///     source: StaticSource,
/// ) -> Result<spiffe_mtls::rustls::ServerConfig, Box<dyn std::error::Error>> {
///     let config = tls::mtls_web_server_config(
///         web_certificate,
///         source,
///         authorize::member_of(["example.org".parse()?]),
///     )
///     .build()?;
///     Ok(config)
/// }
/// ```
pub fn mtls_web_server_config(
    certificate: impl Into<WebCertificate>,
    source: impl X509Source + 'static,
    authorizer: Authorizer,
) -> MtlsWebServerConfigBuilder {
    MtlsWebServerConfigBuilder {
        settings: Settings::new(Arc::new(source)),
        authorizer,
        certificate: certificate.into(),
    }
}

/// Builds a [`ClientConfig`] that presents an SVID and verifies the server by web PKI; see
/// [`mtls_web_client_config`].
#[derive(Debug)]
pub struct MtlsWebClientConfigBuilder {
    settings: Settings,
    roots: Arc<RootCertStore>,
}

impl MtlsWebClientConfigBuilder {
    connection_setters!();
    hint_setter!();

    /// The config. Resumption is off.
    ///
    /// # Errors
    /// [`TlsConfigError`] without a crypto provider, with versions it cannot do, or with an
    /// empty root store ([`TlsConfigError::WebPki`]).
    pub fn build(self) -> Result<ClientConfig, TlsConfigError> {
        let provider = self.settings.provider()?;
        let web = WebPkiServerVerifier::builder_with_provider(self.roots, Arc::clone(&provider))
            .build()?;
        let config = self
            .settings
            .client_builder(provider)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(WebServerVerifier::new(web)))
            .with_client_cert_resolver(self.settings.resolver());
        Ok(self.settings.finish_client(config))
    }
}

/// A client config for web-PKI servers that want SVIDs (go-spiffe's `MTLSWebClientConfig`):
/// presents `source`'s current SVID and verifies the server with rustls'
/// [`WebPkiServerVerifier`] over `web_roots`: the chain must end at one of them and the
/// certificate must be valid for the server name given to rustls (it is checked: this is web
/// PKI, not SPIFFE). `source`'s bundles are not used.
///
/// The server has no SPIFFE ID here: its identity is the server name.
/// [`PeerIdentity`](super::PeerIdentity) is not meant for these connections, and
/// [`net::connect`](crate::net) (which requires a SPIFFE ID) does not fit this mode; use
/// `tokio_rustls::TlsConnector` directly.
///
/// # Example
/// ```
/// # #[cfg(all(unix, feature = "dev-server"))]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use spiffe_mtls::rustls::RootCertStore;
/// use spiffe_mtls::tls;
/// # use spiffe_mtls::dev_server::{DevCa, SvidRequest};
/// # use spiffe_mtls::source::{StaticSource, X509Context};
/// # let ca = DevCa::new("example.org".parse()?, std::time::Duration::from_secs(3600))?;
/// # let svid = ca.issue(&SvidRequest::new("spiffe://example.org/client".parse()?, std::time::Duration::from_secs(600)))?;
/// # let source = StaticSource::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect())?);
/// # let web_ca = DevCa::new("web.example".parse()?, std::time::Duration::from_secs(3600))?;
/// let mut roots = RootCertStore::empty();
/// # let web_root = web_ca.root().clone();
/// roots.add(web_root)?; // the web PKI roots this client trusts
/// let config = tls::mtls_web_client_config(source, roots).build()?;
/// # Ok(())
/// # }
/// # #[cfg(not(all(unix, feature = "dev-server")))]
/// # fn main() {}
/// ```
pub fn mtls_web_client_config(
    source: impl X509Source + 'static,
    web_roots: RootCertStore,
) -> MtlsWebClientConfigBuilder {
    MtlsWebClientConfigBuilder {
        settings: Settings::new(Arc::new(source)),
        roots: Arc::new(web_roots),
    }
}
