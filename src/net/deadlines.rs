//! A deadline for a connection's first bytes after its TLS handshake.
//!
//! hyper's HTTP/1 header timeout starts once hyper reads a request head, but the automatic
//! HTTP/1-or-HTTP/2 detection that runs before it, and an HTTP/2 server waiting for the
//! client's preface, wait without limit: a client that finishes its handshake and then says
//! nothing would hold its connection, task and buffers forever. This wrapper fails the first
//! read with [`io::ErrorKind::TimedOut`] when no byte arrived in time; after the first byte it
//! is a plain pass-through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` whose first read must bring at least one byte within the deadline.
#[derive(Debug)]
pub(crate) struct FirstReadDeadline<S> {
    inner: S,
    /// `None` once a byte has arrived.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FirstReadDeadline<S> {
    /// `inner`, whose peer has `within` to send its first byte.
    pub(crate) fn new(inner: S, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstReadDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else {
            return polled;
        };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.deadline = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing after its TLS handshake",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstReadDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = FirstReadDeadline::new(server, Duration::from_millis(50));
        let mut byte = [0u8; 1];
        let error = guarded.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = FirstReadDeadline::new(server, Duration::from_millis(50));
        client.write_all(b"a").await.unwrap();
        assert_eq!(guarded.read(&mut byte).await.unwrap(), 1);
        // Past the first byte there is no deadline: a later pause is not an error.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"b").await.unwrap();
        assert_eq!(guarded.read(&mut byte).await.unwrap(), 1);
        assert_eq!(&byte, b"b");
    }
}
