//! A `reqwest` client over mutual TLS, built on this crate's rustls client config.

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;

use crate::tls::PeerIdentity;

/// A `reqwest::ClientBuilder` that speaks mutual TLS with `config` (from
/// [`crate::tls::client_config`]), for further settings (timeouts, default headers, a proxy).
///
/// The config is used as it is, so it keeps its properties: it presents the source's current
/// SVID at every handshake (hot reload), verifies the server as an X.509-SVID of its trust
/// domain and lets the config's authorizer decide on its SPIFFE ID, before any request is
/// sent. The name in the URL is dialed and sent as SNI, never trusted.
///
/// The builder is set to: HTTPS only (an `http://` URL is an error, never a request in the
/// clear); no proxy (environment variables are ignored; add one with `.proxy(..)`); TLS info
/// on responses, so [`reqwest_peer`] can name the server; and, when the config's ALPN is
/// empty, `h2` and `http/1.1` offered.
///
/// The config must come from the rustls this crate re-exports (`spiffe_mtls::rustls`), which
/// is the one reqwest 0.13 takes; another version is refused by `build()`. Session
/// resumption is turned off here, whatever the config says: reqwest offers no point after a
/// handshake where a resumed session could be checked again.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use spiffe_mtls::{authorize, net, source::WorkloadApiSource, tls};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = WorkloadApiSource::builder().build().await?;
/// let config = tls::client_config(source, authorize::id("spiffe://example.org/server".parse()?))
///     .build()?;
/// let client = net::reqwest_builder(config).timeout(Duration::from_secs(5)).build()?;
/// let text = client.get("https://127.0.0.1:8443/").send().await?.text().await?;
/// # Ok(())
/// # }
/// ```
pub fn reqwest_builder(mut config: ClientConfig) -> reqwest::ClientBuilder {
    // reqwest gives no hook after a handshake, where a resumed session's server chain would be
    // checked again (see `tls::ClientConfigBuilder::resumption`): every connection here makes
    // a full handshake, verified by the config.
    config.resumption = rustls::client::Resumption::disabled();
    if config.alpn_protocols.is_empty() {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .tls_info(true)
        // reqwest's default too; said here because a missing TCP_NODELAY costs HTTP/2 about
        // 40 ms on every new connection (delayed ACKs).
        .tcp_nodelay(true)
        .https_only(true)
        .no_proxy()
}

/// A `reqwest::Client` over mutual TLS with `config` (from [`crate::tls::client_config`]):
/// [`reqwest_builder`] with nothing more.
///
/// # Errors
/// reqwest's, if it cannot build its client.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::{authorize, net, source::WorkloadApiSource, tls};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = WorkloadApiSource::builder().build().await?;
/// let config = tls::client_config(source, authorize::id("spiffe://example.org/server".parse()?))
///     .build()?;
/// let client = net::reqwest_client(config)?;
/// let response = client.get("https://127.0.0.1:8443/").send().await?;
/// println!("{:?} answered {}", net::reqwest_peer(&response), response.status());
/// # Ok(())
/// # }
/// ```
pub fn reqwest_client(config: ClientConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest_builder(config).build()
}

/// The server that answered `response`, for a client made by [`reqwest_client`] or
/// [`reqwest_builder`]: its SPIFFE ID, and a chain of its leaf certificate alone (reqwest
/// hands out no more). `None` without TLS info or a SPIFFE ID in the leaf.
///
/// Trust it only for such clients: there the handshake verified the leaf as an X.509-SVID and
/// the config's authorizer allowed its ID before the request was sent.
///
/// # Example
/// ```no_run
/// # async fn run(client: reqwest::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let response = client.get("https://127.0.0.1:8443/").send().await?;
/// if let Some(server) = spiffe_mtls::net::reqwest_peer(&response) {
///     println!("answered by {}", server.spiffe_id());
/// }
/// # Ok(())
/// # }
/// ```
pub fn reqwest_peer(response: &reqwest::Response) -> Option<PeerIdentity> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>()?;
    let leaf = CertificateDer::from(info.peer_certificate()?.to_vec());
    PeerIdentity::from_leaf(leaf)
}
