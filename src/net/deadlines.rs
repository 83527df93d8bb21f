//! Read deadlines for a served connection: its first bytes after the TLS handshake, and then
//! each idle spell between requests.
//!
//! hyper's HTTP/1 header timeout starts once hyper reads a request head, but the automatic
//! HTTP/1-or-HTTP/2 detection that runs before it, an HTTP/2 server waiting for the client's
//! preface, an HTTP/1 connection kept alive between requests and an HTTP/2 connection with no
//! stream open all wait without limit: a verified client that says nothing would hold its
//! connection, task, buffers and (behind a connection bound) its slot forever. [`ReadDeadlines`]
//! fails a read with [`io::ErrorKind::TimedOut`] when no byte arrived within the first-read
//! deadline, or, later, when the connection has had no request in flight ([`Activity`]) for the
//! idle timeout, counted from the first byte and then from the end of the last request. Bytes
//! read between requests do not reset it: HTTP/2 control frames (PING, SETTINGS,
//! WINDOW_UPDATE) are bytes too, and would otherwise keep a connection that never asks for
//! anything open forever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a connection is doing, shared by its stream and its requests: how many requests are in
/// flight (a request is in flight from its arrival until its response body ends or is dropped),
/// and when the last one ended or the last byte was read.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started`.
    last: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    /// Marks a request in flight until the guard is dropped.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn touch(&self) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(millis, Ordering::Relaxed);
    }

    /// When the connection may be closed for idleness, `idle` after the last sign of life;
    /// `None` while a request is in flight.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        let at = self.started.checked_add(last)?.checked_add(idle);
        // An idle timeout too long to represent never expires.
        Some(at.unwrap_or_else(|| crate::deadline::after(Duration::MAX)))
    }
}

/// A request in flight; dropping it ends the request (and restarts the idle clock).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `inner`, whose reads fail with [`io::ErrorKind::TimedOut`] when the peer sent nothing
/// within the first-read deadline, or, after that, when no request was in flight for the idle
/// timeout. Writes pass through.
#[derive(Debug)]
pub(crate) struct ReadDeadlines<S> {
    inner: S,
    activity: Arc<Activity>,
    idle: Duration,
    /// The first-read deadline until a byte arrives, then the next idle check.
    timer: Pin<Box<Sleep>>,
    first_byte_seen: bool,
}

impl<S> ReadDeadlines<S> {
    /// `inner`, whose peer has `first_read` to send its first byte and may then be idle for
    /// `idle` at most.
    pub(crate) fn new(
        inner: S,
        activity: Arc<Activity>,
        first_read: Duration,
        idle: Duration,
    ) -> Self {
        Self {
            inner,
            activity,
            idle,
            timer: Box::pin(tokio::time::sleep(first_read)),
            first_byte_seen: false,
        }
    }

    /// Polls the timer; the error when the deadline it stands for has passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if !self.first_byte_seen {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing after its TLS handshake",
                ));
            }
            let now = Instant::now();
            let next = match self.activity.idle_deadline(self.idle) {
                Some(deadline) if deadline <= now => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the connection was idle for {:?}", self.idle),
                    ));
                }
                Some(deadline) => deadline,
                // A request in flight: look again one idle timeout from now.
                None => crate::deadline::after(self.idle),
            };
            self.timer.as_mut().reset(next);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadDeadlines<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if !this.first_byte_seen {
                    this.first_byte_seen = true;
                    // From now on the timer is the idle check, counted from this first byte
                    // and then from the end of each request. Later bytes alone do not count:
                    // an HTTP/2 client sending PING or SETTINGS frames and never a request is
                    // idle all the same.
                    this.activity.touch();
                    let next = crate::deadline::after(this.idle);
                    this.timer.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.poll_timer(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadDeadlines<S> {
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

    // Real time, short spans and generous upper bounds: the tests stay quick and are not
    // thrown by a loaded machine.
    const LONG: Duration = Duration::from_secs(3600);
    const SLACK: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded =
            ReadDeadlines::new(server, Activity::new(), Duration::from_millis(50), LONG);
        let mut byte = [0u8; 1];
        let error = guarded.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            error.to_string(),
            "the client sent nothing after its TLS handshake"
        );
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded =
            ReadDeadlines::new(server, Activity::new(), Duration::from_millis(50), LONG);
        client.write_all(b"a").await.unwrap();
        assert_eq!(guarded.read(&mut byte).await.unwrap(), 1);
        // Past the first byte only the idle timeout applies.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"b").await.unwrap();
        assert_eq!(guarded.read(&mut byte).await.unwrap(), 1);
        assert_eq!(&byte, b"b");
    }

    #[tokio::test]
    async fn idle_without_a_request_in_flight_times_out() {
        let idle = Duration::from_millis(300);
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut guarded = ReadDeadlines::new(server, Arc::clone(&activity), LONG, idle);
        let mut byte = [0u8; 1];
        client.write_all(b"a").await.unwrap();
        assert_eq!(guarded.read(&mut byte).await.unwrap(), 1);
        let started = Instant::now();
        let error = guarded.read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(error.to_string(), "the connection was idle for 300ms");
        let elapsed = started.elapsed();
        assert!(elapsed >= idle && elapsed < idle + SLACK, "{elapsed:?}");
    }

    #[tokio::test]
    async fn bytes_without_a_request_do_not_keep_the_connection() {
        let idle = Duration::from_millis(300);
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = ReadDeadlines::new(server, Activity::new(), LONG, idle);
        let started = Instant::now();
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            loop {
                if let Err(error) = guarded.read(&mut byte).await {
                    return error;
                }
            }
        });
        // A byte every 50 ms, as an HTTP/2 client sending PING frames would.
        while !reader.is_finished() && started.elapsed() < idle + SLACK {
            let _ = client.write_all(b"p").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let error = reader.await.unwrap();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let elapsed = started.elapsed();
        assert!(elapsed >= idle && elapsed < idle + SLACK, "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_request_in_flight_keeps_the_connection_and_its_end_restarts_the_clock() {
        let idle = Duration::from_millis(200);
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut guarded = ReadDeadlines::new(server, Arc::clone(&activity), LONG, idle);
        let mut byte = [0u8; 1];
        client.write_all(b"a").await.unwrap();
        assert_eq!(guarded.read(&mut byte).await.unwrap(), 1);
        let request = activity.request();
        let started = Instant::now();
        let read = tokio::spawn(async move { guarded.read(&mut byte).await.unwrap_err() });
        // A slow response: four idle timeouts with nothing read.
        tokio::time::sleep(idle * 4).await;
        assert!(!read.is_finished(), "closed with a request in flight");
        drop(request);
        let error = read.await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // Closed one idle timeout after the request ended, not before.
        assert!(elapsed >= idle * 5, "{elapsed:?}");
        assert!(elapsed < idle * 5 + SLACK, "{elapsed:?}");
        drop(client);
    }
}
