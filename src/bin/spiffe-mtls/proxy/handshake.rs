//! Handshakes that say who was refused and why: the authorizer is wrapped so that a refused
//! SPIFFE ID is noted, and the future running the handshake picks the note up in the same
//! poll (the verifier runs inside it, on the same thread), so no other connection's
//! refusal can be mixed in.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use spiffe_mtls::authorize::Authorizer;
use spiffe_mtls::net::HandshakeRefusal;
use spiffe_mtls::rustls;
use spiffe_mtls::{SpiffeId, rustls::CertificateError};

thread_local! {
    static DENIED: RefCell<Option<SpiffeId>> = const { RefCell::new(None) };
}

/// `rule`, noting the IDs it refuses for [`watched`].
pub fn noting_refusals(rule: Authorizer) -> Authorizer {
    rule.on_refusal(|id| DENIED.with(|denied| *denied.borrow_mut() = Some(id.clone())))
}

/// Runs `handshake`; also returns the SPIFFE ID the rule refused during it, if any.
pub fn watched<F: Future>(handshake: F) -> Watched<F> {
    Watched {
        inner: Box::pin(handshake),
        denied: None,
    }
}

/// The future of [`watched`].
pub struct Watched<F> {
    inner: Pin<Box<F>>,
    denied: Option<SpiffeId>,
}

impl<F: Future> Future for Watched<F> {
    type Output = (F::Output, Option<SpiffeId>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        DENIED.with(|denied| denied.borrow_mut().take());
        let polled = self.inner.as_mut().poll(cx);
        if let Some(id) = DENIED.with(|denied| denied.borrow_mut().take()) {
            self.denied = Some(id);
        }
        match polled {
            Poll::Ready(output) => Poll::Ready((output, self.denied.take())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A failed handshake: the metric's reason label and a description. A refusal says what was
/// expected and what was presented (`the client is not authorized: expected the ID ..,
/// presented ..`), or what the peer's alert means for our ID.
pub fn classify(error: &io::Error, denied: bool) -> (&'static str, String) {
    let refusal = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<HandshakeRefusal>());
    if let Some(refusal) = refusal {
        let reason = match refusal {
            HandshakeRefusal::RefusedByPeer {
                alert: rustls::AlertDescription::AccessDenied,
                ..
            } => "unauthorized",
            HandshakeRefusal::RefusedByPeer { .. } => "untrusted_certificate",
            _ => "unauthorized",
        };
        return (reason, refusal.to_string());
    }
    if denied {
        return (
            "unauthorized",
            "the rule does not allow this SPIFFE ID".to_owned(),
        );
    }
    if error.kind() == io::ErrorKind::TimedOut {
        return ("handshake_timeout", "timed out".to_owned());
    }
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let reason = match tls {
        Some(rustls::Error::NoCertificatesPresented) => "no_certificate",
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )) => "unauthorized",
        Some(rustls::Error::InvalidCertificate(_)) => "untrusted_certificate",
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        )) => "untrusted_certificate",
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied)) => {
            "unauthorized"
        }
        _ => "handshake_failed",
    };
    (reason, error.to_string())
}

/// What follows a handshake on either side: the metrics and the audit record updated, and on
/// success the TLS stream (allowed to hold `TLS_SEND_BUFFER` of records for the socket) and
/// the peer; `None` when the handshake failed (the record then says why).
pub fn finish<IO>(
    handshake: io::Result<spiffe_mtls::net::MtlsStream<IO>>,
    denied: Option<SpiffeId>,
    metrics: &super::metrics::Metrics,
    started: std::time::Instant,
    record: &mut super::audit::Record,
) -> Option<(
    spiffe_mtls::tokio_rustls::TlsStream<IO>,
    spiffe_mtls::net::PeerIdentity,
)> {
    use spiffe_mtls::tokio_rustls::TlsStream;
    let stream = match handshake {
        Ok(stream) => stream,
        Err(error) => {
            let (reason, message) = classify(&error, denied.is_some());
            metrics.handshake(false, started.elapsed());
            metrics.refused(reason);
            record.peer = denied.map(|id| id.to_string());
            record.end = Some(format!("handshake: {message}"));
            return None;
        }
    };
    metrics.handshake(true, started.elapsed());
    metrics.accepted.inc();
    if stream.resumed() {
        metrics.resumed.inc();
    }
    let (mut tls, peer) = stream.into_parts();
    let limit = Some(super::serve::TLS_SEND_BUFFER);
    match &mut tls {
        TlsStream::Server(server) => server.get_mut().1.set_buffer_limit(limit),
        TlsStream::Client(client) => client.get_mut().1.set_buffer_limit(limit),
    }
    record.peer = Some(peer.spiffe_id().to_string());
    record.decision = "accepted";
    record.open = metrics
        .monitor
        .as_ref()
        .map(|monitor| monitor.connection_opened(peer.spiffe_id()));
    Some((tls, peer))
}
