//! Accepted connections as the gRPC server sees them: each carries the [`Peer`] recorded at
//! accept time (tonic hands it to every request as an extension), and each Unix connection
//! runs through the `:authority` shim ([`super::authority`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tonic::transport::server::Connected;

use super::authority::{ClientRewriter, RewriteError};
use super::peer::Peer;

/// How much is read from a client at once.
const READ_CHUNK: usize = 16 * 1024;

/// A connection with the peer recorded when it was accepted.
pub(crate) struct AttestedStream<S> {
    inner: S,
    peer: Arc<Peer>,
}

impl<S> Connected for AttestedStream<S> {
    type ConnectInfo = Arc<Peer>;

    fn connect_info(&self) -> Arc<Peer> {
        Arc::clone(&self.peer)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AttestedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AttestedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP connection with its peer recorded.
pub(crate) fn tcp(stream: TcpStream) -> AttestedStream<TcpStream> {
    AttestedStream {
        peer: Arc::new(Peer::of_tcp(&stream)),
        inner: stream,
    }
}

/// Puts a Unix connection behind the shim, with its peer recorded; the server reads and writes
/// the returned stream instead of the socket.
pub(crate) fn unix(client: UnixStream) -> AttestedStream<DuplexStream> {
    let peer = Arc::new(Peer::of_unix(&client));
    let (server_side, shim_side) = tokio::io::duplex(64 * 1024);
    tokio::spawn(run_shim(client, shim_side, Arc::clone(&peer)));
    AttestedStream {
        inner: server_side,
        peer,
    }
}

/// Why the client-to-server half stopped.
enum Stop {
    Io(io::Error),
    Rewrite(RewriteError),
}

/// Copies both ways until either side is done. A malformed client stream drops everything at
/// once: the client's socket closes, and the server sees its end of the pipe close.
async fn run_shim(client: UnixStream, shim_side: DuplexStream, peer: Arc<Peer>) {
    let (client_read, mut client_write) = client.into_split();
    let (mut shim_read, mut shim_write) = tokio::io::split(shim_side);
    let upstream = async move {
        let result = forward_client(client_read, &mut shim_write).await;
        let _ = shim_write.shutdown().await;
        result
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut shim_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        result = &mut upstream => match result {
            Ok(()) => downstream.await,
            Err(Stop::Rewrite(error)) if error.is_malformed() => {
                tracing::warn!(%error, ?peer, "closing a Workload API connection: the client sent malformed or oversized HTTP/2");
            }
            Err(Stop::Rewrite(error)) => {
                tracing::debug!(%error, "Workload API connection closed");
            }
            Err(Stop::Io(error)) => tracing::debug!(%error, "Workload API connection closed"),
        },
        () = &mut downstream => {}
    }
}

/// Feeds what the client sends through the rewriter to the server.
async fn forward_client(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> Result<(), Stop> {
    let mut rewriter = ClientRewriter::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut out = Vec::new();
    loop {
        let read = from.read(&mut chunk).await.map_err(Stop::Io)?;
        if read == 0 {
            return rewriter.finish().map_err(Stop::Rewrite);
        }
        rewriter
            .feed(&chunk[..read], &mut out)
            .map_err(Stop::Rewrite)?;
        to.write_all(&out).await.map_err(Stop::Io)?;
        out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_forwarder_writes_what_the_rewriter_yields() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        let mut output = Vec::new();
        assert!(forward_client(input.as_slice(), &mut output).await.is_ok());
        assert_eq!(
            output,
            super::super::authority::rewrite_client_bytes(&input).unwrap()
        );
        // truncated input: an error, not merely an end
        let result = forward_client(&input[..30], &mut Vec::new()).await;
        assert!(matches!(
            result,
            Err(Stop::Rewrite(RewriteError::Truncated))
        ));
    }

    #[tokio::test]
    async fn a_malformed_client_gets_its_socket_closed() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let stream = unix(server);
        assert!(matches!(*stream.connect_info(), Peer::Unix { .. }));
        // the preface, then a HEADERS frame holding the one byte 0x3f
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x01\x01\x04\0\0\0\x01\x3f")
            .await
            .unwrap();
        let mut rest = Vec::new();
        // closed (end of file, or reset as unread bytes were dropped), within 5 s
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut rest),
        )
        .await;
        assert!(closed.is_ok(), "the shim kept the connection open");
        assert!(rest.is_empty());
    }
}
