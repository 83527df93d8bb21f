//! The accept loop both modes share: at most `--max-conns` connections at once (past that,
//! new ones wait in the listen backlog), one task per connection (no thread), and on SIGTERM
//! or SIGINT: stop accepting, let the open connections finish for `--drain-timeout`, then cut
//! the rest (at once on a second signal).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spiffe_mtls::net::{CloseReason, LiveConnection};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::address::{Listener, Stream};

/// The relay's buffer each way (allocated when a connection starts relaying: 256 KiB per
/// connection). TLS records are at most 16 KiB of plaintext; 128 KiB lets one read take
/// eight records and one write hand the kernel a large segment. Measured on loopback
/// (`bench/proxy/run.sh`): 64 KiB relayed about 1.39 GB/s, 128 KiB with [`TLS_SEND_BUFFER`]
/// about 1.46 GB/s at the same CPU per handshake; 256 KiB was faster in bulk but cost
/// handshake-heavy loads 0.04 to 0.1 ms of CPU per connection (zeroing the buffers).
///
/// No zero-copy path (`splice`): one side is always TLS, whose records are encrypted and
/// decrypted in user space, so the bytes pass through user memory anyway; the copy between
/// the TLS buffer and the socket is the one the cipher needs.
pub const RELAY_BUFFER: usize = 128 * 1024;

/// The read buffer under each TLS connection. rustls reads the socket 4 KiB at a time; with
/// this buffer under it, a record stream arrives in reads of up to 32 KiB (fewer system calls
/// for uploads), at 32 KiB of memory per connection.
pub const TLS_READ_BUFFER: usize = 32 * 1024;

/// How much encrypted data rustls may hold for the socket (its default is 64 KiB): a relay
/// write of [`RELAY_BUFFER`] becomes one batch of records and one `writev`, not several.
pub const TLS_SEND_BUFFER: usize = 2 * RELAY_BUFFER;

/// Copies both ways until both sides are done; a side's end of stream is passed on as a
/// shutdown (a TLS close_notify, or a TCP FIN).
pub async fn relay<A, B>(a: &mut A, b: &mut B) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, RELAY_BUFFER, RELAY_BUFFER)
        .await
        .map(|_| ())
}

/// As [`relay`], until `live` says the connection must close (its peer no longer passes
/// the trust re-check, or `--max-conn-lifetime` ended): then both sides are closed (the
/// caller drops them) and the reason returned.
pub async fn relay_live<A, B>(
    a: &mut A,
    b: &mut B,
    live: &mut LiveConnection,
) -> io::Result<Option<CloseReason>>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::select! {
        relayed = relay(a, b) => relayed.map(|()| None),
        reason = live.closed() => Ok(Some(reason)),
    }
}

/// The audit line's `end` of a connection closed for `reason`.
pub fn closed_for(reason: CloseReason) -> String {
    format!("closed ({reason})")
}

/// SIGTERM and SIGINT, watched from start (so a signal that arrives before the loop runs
/// is not lost, nor kills the process).
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Starts watching.
    pub fn watch() -> Result<Self, String> {
        let watch = |kind| signal(kind).map_err(|e| format!("cannot watch signals: {e}"));
        Ok(Self {
            term: watch(SignalKind::terminate())?,
            int: watch(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// What a connection task gets: the stream, the client's address, the local address, a
/// receiver that turns true when draining starts, and the slot it holds.
pub struct Accepted {
    /// The connection.
    pub stream: Stream,
    /// The client's address (TCP).
    pub remote: Option<SocketAddr>,
    /// The address it connected to (TCP).
    pub local: Option<SocketAddr>,
    /// True once draining started.
    pub draining: watch::Receiver<bool>,
    /// The `--max-conns` slot, freed when the task ends.
    pub _slot: OwnedSemaphorePermit,
}

/// Accepts until a signal, then drains.
pub async fn accept_loop<F, Fut>(
    listener: Listener,
    mut signals: Signals,
    max_conns: usize,
    drain_timeout: Duration,
    handle: F,
) -> Result<(), String>
where
    F: Fn(Accepted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_conns.clamp(1, Semaphore::MAX_PERMITS)));
    let (drain, draining) = watch::channel(false);
    let mut tasks = JoinSet::new();
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(|e| e.to_string())?,
            () = signals.next() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = signals.next() => break,
        };
        match accepted {
            Ok((stream, remote)) => {
                let local = stream.local_addr();
                tasks.spawn(handle(Accepted {
                    stream,
                    remote,
                    local,
                    draining: draining.clone(),
                    _slot: slot,
                }));
            }
            Err(error) if is_transient(&error) => {
                eprintln!("accept failed: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(format!("accept failed: {error}")),
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.try_join_next().is_some() {}
    let open = tasks.len();
    eprintln!(
        "stopped accepting; draining {open} connection(s) for up to {}",
        humantime::format_duration(drain_timeout)
    );
    let _ = drain.send(true);
    // A second signal cuts the drain short.
    let drained = tokio::select! {
        drained = tokio::time::timeout(drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        }) => drained.is_ok(),
        () = signals.next() => false,
    };
    if !drained {
        let cut = tasks.len();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        eprintln!("drain timeout: closed {cut} connection(s)");
    } else {
        eprintln!("drained");
    }
    Ok(())
}

/// Errors of `accept` that concern one connection or a passing shortage (EMFILE, ENFILE).
fn is_transient(error: &io::Error) -> bool {
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
