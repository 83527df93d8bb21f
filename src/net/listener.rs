//! Accepting TCP connections under a bound on handshakes in flight and a handshake timeout:
//! what `serve_http` and `incoming` share.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[cfg(feature = "http")]
use super::stream::accept_optional_within;
use super::stream::accept_within;
use super::{HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, MtlsStream};

/// How long a handshake may take and how many may run at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandshakeLimits {
    pub(crate) timeout: Duration,
    pub(crate) max_in_flight: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            timeout: HANDSHAKE_TIMEOUT,
            max_in_flight: MAX_HANDSHAKES,
        }
    }
}

/// A listener whose connections go through a bounded number of concurrent handshakes.
///
/// A slot is taken BEFORE a connection is accepted, so when every slot is busy new
/// connections wait in the kernel's accept queue (no socket, no task, no memory of ours) until
/// a handshake finishes, fails or times out. A slot is held by a connection for at most the
/// handshake timeout, so a flood of clients that never finish their handshake delays new
/// clients by at most that long per slot; it cannot keep them out.
#[derive(Debug)]
pub(crate) struct MtlsListener {
    listener: TcpListener,
    config: Arc<ServerConfig>,
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl MtlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        limits: HandshakeLimits,
    ) -> Self {
        Self {
            listener,
            config,
            timeout: limits.timeout,
            slots: Arc::new(Semaphore::new(
                limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// Waits for a free handshake slot, then for the next TCP connection. Cancel-safe.
    ///
    /// # Errors
    /// The listener's accept error.
    pub(crate) async fn next(&self) -> io::Result<Handshake> {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                tracing::debug!("every handshake slot is busy; new connections wait");
                Arc::clone(&self.slots)
                    .acquire_owned()
                    .await
                    .map_err(|_| io::Error::other("handshake slots closed"))?
            }
        };
        let (tcp, remote_addr) = self.listener.accept().await?;
        // Without it, HTTP/2's small writes wait for delayed ACKs: about 40 ms before the
        // first response on every new connection. A socket that refuses it still works.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        Ok(Handshake {
            tcp,
            remote_addr,
            config: Arc::clone(&self.config),
            timeout: self.timeout,
            _slot: slot,
        })
    }
}

/// An accepted TCP connection holding a handshake slot.
#[derive(Debug)]
pub(crate) struct Handshake {
    tcp: TcpStream,
    remote_addr: SocketAddr,
    config: Arc<ServerConfig>,
    timeout: Duration,
    _slot: OwnedSemaphorePermit,
}

impl Handshake {
    /// The client's address.
    pub(crate) fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// Runs the handshake within the timeout; the slot is free again when this returns. A
    /// client that times out is disconnected.
    ///
    /// # Errors
    /// As [`super::accept`], with this listener's timeout.
    pub(crate) async fn finish(self) -> io::Result<MtlsStream<TcpStream>> {
        let Self {
            tcp,
            config,
            timeout,
            _slot,
            ..
        } = self;
        accept_within(config, tcp, timeout).await
    }

    /// As [`finish`](Self::finish), for a config that lets clients in without a
    /// certificate: the client's identity when it presented one.
    #[cfg(feature = "http")]
    pub(crate) async fn finish_optional(
        self,
    ) -> io::Result<(
        tokio_rustls::TlsStream<TcpStream>,
        Option<crate::tls::PeerIdentity>,
    )> {
        let Self {
            tcp,
            config,
            timeout,
            _slot,
            ..
        } = self;
        accept_optional_within(config, tcp, timeout).await
    }
}

#[cfg(feature = "http")]
/// Errors of `accept` that concern one connection or a passing shortage, not the listener.
pub(crate) fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || error
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server config with a throwaway self-signed certificate: the handshake never runs.
    fn test_server_config() -> Arc<ServerConfig> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .unwrap();
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        Arc::new(config)
    }

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let listener = MtlsListener::new(tcp, test_server_config(), HandshakeLimits::default());
        let _client = TcpStream::connect(address).await.unwrap();
        let handshake = listener.next().await.unwrap();
        assert!(handshake.tcp.nodelay().unwrap());
    }
}
