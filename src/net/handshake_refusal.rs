//! Refusals said in words: what one end expected and what the other presented, never a TLS
//! alert's name alone.
//!
//! A handshake refused on this end (its rule does not allow the peer's verified SPIFFE ID)
//! fails with a [`HandshakeRefusal::NotAuthorized`]; a handshake the peer refused (it sent a
//! TLS alert about our certificate) with a [`HandshakeRefusal::RefusedByPeer`] that says what
//! the alert means for the ID we presented. The streams of this module carry them as the
//! inner error of their `io::Error`s (kind `PermissionDenied`), the clients built on them
//! ([`MtlsConnector`](super::MtlsConnector), [`grpc_channel`](super::grpc_channel)) in their
//! error's causes (HTTP/2 connections keep only an I/O error's kind and text, so there the
//! text is what remains); [`describe_error`] puts any error chain on one line with them in
//! words (for `reqwest`, whose TLS errors come from rustls directly).

use std::error::Error;
use std::fmt;
use std::io;

use rustls::{AlertDescription, CertificateError};

use crate::authorize::{AuthorizeError, ServerNotAuthorized};
use crate::spiffe_id::SpiffeId;
use crate::tls::Side;

/// A handshake that one end refused, said as what was expected and what was presented.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::net::HandshakeRefusal;
/// # async fn run(config: std::sync::Arc<spiffe_mtls::rustls::ClientConfig>) {
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:8443").await.unwrap();
/// let name = "127.0.0.1".try_into().unwrap();
/// if let Err(error) = spiffe_mtls::net::connect(config, name, tcp).await {
///     if let Some(refusal) = HandshakeRefusal::find(&error) {
///         // "the server is not authorized: expected the ID spiffe://example.org/server,
///         //  presented spiffe://example.org/impostor"
///         eprintln!("{refusal}");
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeRefusal {
    /// This end's rule does not allow the peer's verified SPIFFE ID.
    NotAuthorized {
        /// This end (which refused the other).
        side: Side,
        /// What the rule expects and the ID the peer presented.
        error: AuthorizeError,
    },
    /// The peer refused this end's certificate: the TLS alert it sent, and what it means.
    RefusedByPeer {
        /// This end (which the other refused).
        side: Side,
        /// The alert the peer sent.
        alert: AlertDescription,
        /// The SPIFFE ID this end presented, when known.
        own_id: Option<SpiffeId>,
    },
}

impl HandshakeRefusal {
    /// The refusal among `error` and its causes (an `io::Error`'s inner error counts), if
    /// any.
    ///
    /// # Example
    /// See [`HandshakeRefusal`].
    pub fn find<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a HandshakeRefusal> {
        causes(error).find_map(|cause| cause.downcast_ref::<HandshakeRefusal>())
    }

    /// The refusal a rustls error means on `side`: our rule refused the peer (the error our
    /// verifier returns for a refused server), or the peer sent an alert about our
    /// certificate. `None` for any other error.
    pub(crate) fn from_rustls(
        error: &rustls::Error,
        side: Side,
        own_id: impl FnOnce() -> Option<SpiffeId>,
    ) -> Option<Self> {
        match error {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                let error = other.0.downcast_ref::<ServerNotAuthorized>()?.0.clone();
                Some(Self::NotAuthorized { side, error })
            }
            rustls::Error::AlertReceived(alert) if refuses_certificate(*alert) => {
                Some(Self::RefusedByPeer {
                    side,
                    alert: *alert,
                    own_id: own_id(),
                })
            }
            _ => None,
        }
    }

    /// `error` said in words when it holds a refusal (an `io::Error` of kind
    /// `PermissionDenied` around a [`HandshakeRefusal`]); `refused`, a refusal noted by the
    /// server verifier during the handshake, comes first.
    pub(crate) fn map_io(
        error: io::Error,
        side: Side,
        refused: Option<AuthorizeError>,
        own_id: impl FnOnce() -> Option<SpiffeId>,
    ) -> io::Error {
        let refusal = match refused {
            Some(error) => Some(Self::NotAuthorized { side, error }),
            None => error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(|tls| Self::from_rustls(tls, side, own_id)),
        };
        match refusal {
            Some(refusal) => io::Error::new(io::ErrorKind::PermissionDenied, refusal),
            None => error,
        }
    }
}

/// The other end's name, seen from `side`.
fn other(side: Side) -> &'static str {
    match side {
        Side::Client => "server",
        _ => "client",
    }
}

/// The alerts that are a peer's verdict on our certificate.
const CERTIFICATE_ALERTS: [AlertDescription; 9] = [
    AlertDescription::AccessDenied,
    AlertDescription::BadCertificate,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::UnknownCA,
    AlertDescription::CertificateRequired,
    AlertDescription::CertificateUnknown,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateRevoked,
    AlertDescription::DecryptError,
];

/// Whether `alert` is a peer's verdict on our certificate.
fn refuses_certificate(alert: AlertDescription) -> bool {
    CERTIFICATE_ALERTS.contains(&alert)
}

/// The certificate alert whose rustls error reads `text`: HTTP/2 connections (h2) keep only
/// the text of an I/O error, so an alert that ends one arrives as words.
fn alert_in_text(text: &str) -> Option<AlertDescription> {
    let name = text.strip_prefix("received fatal alert: ")?;
    CERTIFICATE_ALERTS
        .into_iter()
        .find(|alert| format!("{alert:?}") == name)
}

/// The alert's name as the TLS specifications spell it: `access_denied`, `unknown_ca`.
pub(crate) fn alert_name(alert: AlertDescription) -> String {
    let debug = format!("{alert:?}");
    let mut name = String::with_capacity(debug.len() + 4);
    let mut previous_lower = false;
    for c in debug.chars() {
        if c.is_ascii_uppercase() {
            if previous_lower {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
            previous_lower = false;
        } else {
            name.push(c);
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    name
}

impl fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAuthorized { side, error } => {
                write!(f, "the {} is not authorized: {error}", other(*side))
            }
            Self::RefusedByPeer {
                side,
                alert,
                own_id,
            } => {
                let peer = other(*side);
                let ours = match own_id {
                    Some(id) => format!("{id} (our ID)"),
                    None => "our SPIFFE ID".to_owned(),
                };
                write!(
                    f,
                    "the {peer} refused our certificate (TLS alert {}): ",
                    alert_name(*alert)
                )?;
                match alert {
                    AlertDescription::AccessDenied => write!(f, "it does not authorize {ours}"),
                    AlertDescription::UnknownCA => write!(
                        f,
                        "it does not trust the CA that issued {ours} (no bundle of our trust \
                         domain there, or an old one)"
                    ),
                    AlertDescription::CertificateExpired => write!(
                        f,
                        "it finds the certificate of {ours} expired or not yet valid (compare \
                         both clocks)"
                    ),
                    AlertDescription::CertificateRevoked => {
                        write!(f, "it says the certificate of {ours} is revoked")
                    }
                    AlertDescription::CertificateRequired => {
                        write!(f, "it requires a client certificate and we presented none")
                    }
                    AlertDescription::DecryptError => {
                        write!(f, "our handshake signature did not verify there")
                    }
                    _ => write!(
                        f,
                        "it does not accept the certificate of {ours} (its rule or an SVID \
                         rule; its log says which)"
                    ),
                }
            }
        }
    }
}

impl Error for HandshakeRefusal {}

/// `error` and its causes; an `io::Error`'s inner error is its cause.
fn causes<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
            None => current.source(),
        };
        Some(current)
    })
    .take(16)
}

/// `error` and its causes on one line, joined by `: `, with a refusal said in words: a
/// [`HandshakeRefusal`], or the rustls error of one (a server our rule refused, an alert the
/// peer sent about our certificate), as seen from `side` with `own_id` the SPIFFE ID we
/// presented (when known). The chain ends there: what follows says the same in TLS terms.
/// Links that repeat the one before are left out, and so are hyper-util's client errors,
/// which name only the phase that failed (`client error (Connect)`).
///
/// # Example
/// ```no_run
/// use spiffe_mtls::{net, tls::Side};
/// # async fn run(client: reqwest::Client) {
/// if let Err(error) = client.get("https://127.0.0.1:8443/").send().await {
///     // error sending request for url (https://127.0.0.1:8443/): the server is not
///     // authorized: expected the ID spiffe://example.org/server, presented
///     // spiffe://example.org/impostor
///     eprintln!("{}", net::describe_error(&error, Side::Client, None));
/// }
/// # }
/// ```
pub fn describe_error(
    error: &(dyn Error + 'static),
    side: Side,
    own_id: Option<&SpiffeId>,
) -> String {
    let mut text = String::new();
    let mut push = |link: String| {
        if !text.ends_with(&link) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&link);
        }
    };
    for cause in causes(error) {
        if let Some(refusal) = cause.downcast_ref::<HandshakeRefusal>() {
            push(refusal.to_string());
            break;
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            match HandshakeRefusal::from_rustls(tls, side, || own_id.cloned()) {
                Some(refusal) => push(refusal.to_string()),
                None => push(describe_rustls(tls, side)),
            }
            break;
        }
        // hyper-util's own words name only the phase ("client error (Connect)"): its cause
        // says what happened.
        #[cfg(feature = "http")]
        if cause.is::<hyper_util::client::legacy::Error>() && cause.source().is_some() {
            continue;
        }
        let link = cause.to_string();
        if let Some(alert) = alert_in_text(&link) {
            let refusal = HandshakeRefusal::RefusedByPeer {
                side,
                alert,
                own_id: own_id.cloned(),
            };
            push(refusal.to_string());
            break;
        }
        // An io::Error around an inner error shows the inner one's text: said next.
        if let Some(io) = cause.downcast_ref::<io::Error>()
            && io.get_ref().is_some()
        {
            continue;
        }
        push(link);
    }
    text
}

/// A rustls error that is not a refusal, with alert names spelled as in the specifications.
fn describe_rustls(error: &rustls::Error, side: Side) -> String {
    match error {
        rustls::Error::AlertReceived(alert) => format!(
            "the {} ended the handshake (TLS alert {})",
            other(side),
            alert_name(*alert)
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize;

    fn sid(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn alert_names_as_in_the_specifications() {
        assert_eq!(alert_name(AlertDescription::AccessDenied), "access_denied");
        assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
        assert_eq!(
            alert_name(AlertDescription::CertificateUnknown),
            "certificate_unknown"
        );
    }

    #[test]
    fn refusals_say_what_was_expected_and_presented() {
        let error = authorize::id(sid("spiffe://example.org/server"))
            .authorize(&sid("spiffe://example.org/impostor"))
            .unwrap_err();
        let tls = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(ServerNotAuthorized(error)),
        )));
        let io = io::Error::new(io::ErrorKind::InvalidData, tls);
        let mapped = HandshakeRefusal::map_io(io, Side::Client, None, || None);
        assert_eq!(mapped.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            mapped.to_string(),
            "the server is not authorized: expected the ID spiffe://example.org/server, \
             presented spiffe://example.org/impostor"
        );
        assert!(HandshakeRefusal::find(&mapped).is_some());

        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::AccessDenied),
        );
        let own = sid("spiffe://example.org/client");
        assert_eq!(
            describe_error(&alert, Side::Client, Some(&own)),
            "the server refused our certificate (TLS alert access_denied): it does not \
             authorize spiffe://example.org/client (our ID)"
        );
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
        );
        assert_eq!(
            describe_error(&other, Side::Client, None),
            "the server ended the handshake (TLS alert handshake_failure)"
        );
    }
}
