//! The authorization server: its issuer, token endpoint and keys, and the HTTP client that
//! talks to it.

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;

use super::OAuthError;

/// How long one exchange with the authorization server may take in all.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read from the authorization server (metadata, JWKS, token).
pub(crate) const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// An OAuth 2.0 authorization server: its issuer identifier, token endpoint and JWK Set URL
/// (RFC 8414 metadata, or OpenID Connect discovery).
///
/// # Example
/// ```
/// use spiffe_mtls::oauth::AuthorizationServer;
///
/// let server = AuthorizationServer::new(
///     "https://auth.example.org/realms/agents",
///     "https://auth.example.org/realms/agents/protocol/openid-connect/token",
///     "https://auth.example.org/realms/agents/protocol/openid-connect/certs",
/// );
/// assert_eq!(server.issuer(), "https://auth.example.org/realms/agents");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationServer {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
}

impl AuthorizationServer {
    /// A server described by hand.
    pub fn new(
        issuer: impl Into<String>,
        token_endpoint: impl Into<String>,
        jwks_uri: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            token_endpoint: token_endpoint.into(),
            jwks_uri: jwks_uri.into(),
        }
    }

    /// Reads the server's metadata at `{issuer}/.well-known/openid-configuration` (else
    /// `/.well-known/oauth-authorization-server` under the issuer), whose `issuer` must be
    /// `issuer` exactly (RFC 8414 section 3.3).
    ///
    /// # Errors
    /// [`OAuthError`]: unreachable, not JSON, members missing, or another issuer.
    pub async fn discover(
        http: &AuthorizationServerHttp,
        issuer: &str,
    ) -> Result<Self, OAuthError> {
        let base = issuer.trim_end_matches('/');
        let mut last = None;
        for path in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let url = format!("{base}{path}");
            match http.get_json(&url).await {
                Ok(metadata) => return Self::from_metadata(issuer, &url, &metadata),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| OAuthError::Http {
            url: base.to_owned(),
            reason: "no metadata".to_owned(),
        }))
    }

    fn from_metadata(issuer: &str, url: &str, metadata: &Value) -> Result<Self, OAuthError> {
        let text = |name: &str| {
            metadata
                .get(name)
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .ok_or_else(|| OAuthError::Metadata {
                    url: url.to_owned(),
                    reason: format!("no {name:?}"),
                })
        };
        let named = text("issuer")?;
        if named != issuer {
            return Err(OAuthError::Metadata {
                url: url.to_owned(),
                reason: format!("it names the issuer {named:?}, not {issuer:?}"),
            });
        }
        Ok(Self::new(
            issuer,
            text("token_endpoint")?,
            text("jwks_uri")?,
        ))
    }

    /// The issuer identifier: the audience of client assertions, the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where tokens are requested.
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }

    /// Where its token-signing keys are published.
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }
}

/// The HTTP client for an authorization server: HTTPS verified against web PKI roots (the
/// ones given), or plain HTTP to a loopback address only (a development server); no
/// redirects, no proxy, 30 s per exchange, answers up to 256 KiB.
#[derive(Debug, Clone)]
pub struct AuthorizationServerHttp {
    client: reqwest::Client,
}

impl AuthorizationServerHttp {
    /// A client trusting `roots` for HTTPS and presenting no certificate.
    ///
    /// # Errors
    /// [`OAuthError::Client`] when a root is not a certificate or no crypto provider is set.
    pub fn new(
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, OAuthError> {
        let provider = crate::crypto::default_provider()
            .ok_or_else(|| OAuthError::Client("no rustls crypto provider".to_owned()))?;
        let mut store = RootCertStore::empty();
        for root in roots {
            store
                .add(root)
                .map_err(|e| OAuthError::Client(format!("a web PKI root: {e}")))?;
        }
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OAuthError::Client(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Self::with_tls(config)
    }

    /// A client over `config`: for an authorization server that authenticates clients by
    /// their X.509-SVID over mutual TLS, a config presenting it
    /// ([`tls::mtls_web_client_config`](crate::tls::mtls_web_client_config)).
    ///
    /// # Errors
    /// [`OAuthError::Client`] when reqwest cannot build its client.
    pub fn with_tls(mut config: ClientConfig) -> Result<Self, OAuthError> {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(EXCHANGE_TIMEOUT)
            .build()
            .map_err(|e| OAuthError::Client(e.to_string()))?;
        Ok(Self { client })
    }

    /// Refuses a URL that is not `https://`, or `http://` to a loopback address.
    pub(crate) fn check_url(url: &str) -> Result<(), OAuthError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| OAuthError::Http {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let host = parsed.host_str().unwrap_or_default();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match parsed.scheme() {
            "https" => Ok(()),
            "http" if loopback => Ok(()),
            _ => Err(OAuthError::Http {
                url: url.to_owned(),
                reason: "not https:// (plain http:// only to a loopback address)".to_owned(),
            }),
        }
    }

    /// `GET url` as JSON.
    pub(crate) async fn get_json(&self, url: &str) -> Result<Value, OAuthError> {
        self.get_json_within(url, EXCHANGE_TIMEOUT).await
    }

    /// `GET url` as JSON, within `timeout`.
    pub(crate) async fn get_json_within(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<Value, OAuthError> {
        Self::check_url(url)?;
        let response = self
            .client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| http_error(url, &e))?;
        let (status, body) = read(url, response).await?;
        if status != 200 {
            return Err(OAuthError::Http {
                url: url.to_owned(),
                reason: format!("HTTP {status}"),
            });
        }
        serde_json::from_slice(&body).map_err(|e| OAuthError::Http {
            url: url.to_owned(),
            reason: format!("not JSON: {e}"),
        })
    }

    /// `POST url` with a form; the status and the JSON body (`Null` when not JSON).
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Value), OAuthError> {
        Self::check_url(url)?;
        let body = form
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let response = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| http_error(url, &e))?;
        let (status, body) = read(url, response).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value: unreserved characters
/// as they are, every other byte `%XX`.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn http_error(url: &str, error: &reqwest::Error) -> OAuthError {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    for _ in 0..6 {
        let Some(cause) = source else { break };
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    OAuthError::Http {
        url: url.to_owned(),
        reason,
    }
}

/// The status and the body, at most [`MAX_ANSWER_BYTES`].
async fn read(url: &str, mut response: reqwest::Response) -> Result<(u16, Vec<u8>), OAuthError> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http_error(url, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(OAuthError::Http {
                url: url.to_owned(),
                reason: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}
