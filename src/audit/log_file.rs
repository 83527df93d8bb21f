//! The JSON-lines audit log: one [`AuditEvent`] per line, appended by a writer thread,
//! optionally hash-chained (each line carries the SHA-256 of the line before it).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use super::event::sha256_hex;
use super::{AuditEvent, AuditSink};

/// Events queued for the writer thread at most. A decision never waits for the file (a
/// stalled disk must not stall handshakes): past the bound, events are counted as lost, and
/// the log says so in a line of its own (`{"time":...,"lost_events":N}`) as soon as it can
/// write again.
pub const AUDIT_QUEUE: usize = 4096;

/// The longest line read back (to continue a chain) or checked, in bytes.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// What the writer thread is asked to do.
enum Job {
    /// Append the event.
    Write(Box<AuditEvent>),
    /// Flush, then answer.
    Flush(SyncSender<()>),
}

/// Appends every event it records to a file as one JSON line (see
/// [`AuditEvent::to_json_line`]); with [`AuditLog::open`]'s `chained`, each line also
/// carries `prev_sha256`, the SHA-256 of the line before it (`null` on the first line of a
/// file), which `spiffe-mtls audit verify` checks.
///
/// Lines are written by a thread of the log's own, in the order events were recorded,
/// and flushed whenever the queue runs empty. An I/O error stops the log: it is reported on
/// `tracing` and by [`AuditLog::failure`] (the proxy prints it), and later events are
/// counted as lost ([`AuditLog::lost`]).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    queue: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    state: Arc<LogState>,
}

/// What the writer shares with the log's handle.
#[derive(Debug, Default)]
struct LogState {
    /// Events not written since the last loss line (the queue was full, or the log failed).
    unwritten: AtomicU64,
    /// Events lost in all.
    lost: AtomicU64,
    /// The error that stopped the log.
    failure: Mutex<Option<String>>,
}

impl AuditLog {
    /// Opens `path` for appending (created with mode 0600 on Unix); with `chained`, a chain
    /// already in the file is continued from its last line.
    ///
    /// # Errors
    /// When the file cannot be opened or its last line read.
    pub fn open(path: impl AsRef<Path>, chained: bool) -> io::Result<Self> {
        let path = path.as_ref().to_owned();
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        let previous = if chained {
            Some(last_line_digest(&mut file)?)
        } else {
            None
        };
        let (queue, jobs) = sync_channel(AUDIT_QUEUE);
        let shown = path.display().to_string();
        let state = Arc::new(LogState::default());
        let shared = Arc::clone(&state);
        let writer = std::thread::Builder::new()
            .name("spiffe-mtls-audit".into())
            .spawn(move || {
                Writer {
                    out: BufWriter::new(file),
                    previous,
                    state: shared,
                    path: shown,
                    failed: false,
                    buffered: 0,
                }
                .run(&jobs);
            })?;
        Ok(Self {
            path,
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(writer)),
            state,
        })
    }

    /// The error that stopped the log, if one did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.state.failure).clone()
    }

    /// How many events were not written: recorded while the queue was full, or after the
    /// log failed.
    pub fn lost(&self) -> u64 {
        self.state.lost.load(Ordering::Relaxed)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every event recorded so far is written and flushed.
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        let sent = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|queue| queue.send(Job::Flush(done)).is_ok());
        if sent {
            let _ = wait.recv();
        }
    }
}

impl AuditSink for AuditLog {
    /// Queues the event without waiting; a full queue (or a failed log) loses it, counted.
    fn record(&self, event: &AuditEvent) {
        let queue = lock(&self.queue).clone();
        let sent =
            queue.is_some_and(
                |queue| match queue.try_send(Job::Write(Box::new(event.clone()))) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
                },
            );
        if !sent {
            self.state.unwritten.fetch_add(1, Ordering::Relaxed);
            self.state.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A mutex's data, even after a panic elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(
            self.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(writer) = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = writer.join();
        }
    }
}

/// The chain's state after the file's last line: `None` for an empty file, else the digest
/// of that line. A last line without its newline (a write cut short) is ended first.
fn last_line_digest(file: &mut File) -> io::Result<Option<String>> {
    let length = file.seek(SeekFrom::End(0))?;
    if length == 0 {
        return Ok(None);
    }
    // The line and the newline before it.
    let window = MAX_LINE as u64 + 2;
    let start = length.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        tail.pop();
    } else {
        file.write_all(b"\n")?;
    }
    let line_start = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if line_start == 0 && start > 0 {
        return Err(io::Error::other(format!(
            "the last line of the audit log is longer than {MAX_LINE} bytes: cannot continue its chain"
        )));
    }
    sha256_hex(&tail[line_start..]).map(Some).ok_or_else(|| {
        io::Error::other("no SHA-256 to chain the audit log with: no crypto provider")
    })
}

/// The writer thread's state.
struct Writer {
    out: BufWriter<File>,
    /// The chain's last digest (`Some(None)`: at the start of a chain; `None`: not chained).
    previous: Option<Option<String>>,
    state: Arc<LogState>,
    path: String,
    failed: bool,
    /// Lines written to the buffer since the last flush that worked.
    buffered: u64,
}

impl Writer {
    /// Appends each event's line until the log is dropped.
    fn run(mut self, jobs: &Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            let mut next = Some(job);
            while let Some(job) = next.take() {
                match job {
                    Job::Write(event) => {
                        self.note_lost();
                        self.write(&event.to_json_line(self.link()));
                    }
                    Job::Flush(done) => {
                        self.flush();
                        let _ = done.send(());
                    }
                }
                next = jobs.try_recv().ok();
            }
            self.note_lost();
            self.flush();
        }
        self.flush();
    }

    /// Flushes the buffer; on an error, its lines are lost and the log stops.
    fn flush(&mut self) {
        if self.failed {
            return;
        }
        match self.out.flush() {
            Ok(()) => self.buffered = 0,
            Err(error) => {
                self.state.lost.fetch_add(self.buffered, Ordering::Relaxed);
                self.fail(&error);
            }
        }
    }

    /// The `prev_sha256` of the next line, if chained.
    fn link(&self) -> Option<Option<&str>> {
        self.previous.as_ref().map(Option::as_deref)
    }

    /// Writes a line saying how many events were lost since the last such line, if any.
    fn note_lost(&mut self) {
        let lost = self.state.unwritten.swap(0, Ordering::Relaxed);
        if lost == 0 || self.failed {
            return;
        }
        let mut line = format!(
            "{{\"time\":\"{}\",\"lost_events\":{lost}",
            super::event::rfc3339_millis(std::time::SystemTime::now())
        );
        match self.link() {
            Some(previous) => {
                let previous = serde_json::to_string(&previous).unwrap_or_default();
                line.push_str(&format!(",\"prev_sha256\":{previous}}}"));
            }
            None => line.push('}'),
        }
        self.write(&line);
    }

    /// Appends `line` and moves the chain on; after a failure, counts it lost.
    fn write(&mut self, line: &str) {
        if self.failed {
            self.state.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.previous.is_some() {
            self.previous = Some(sha256_hex(line.as_bytes()));
        }
        let written = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        match written {
            Ok(()) => self.buffered += 1,
            Err(error) => {
                self.state
                    .lost
                    .fetch_add(self.buffered + 1, Ordering::Relaxed);
                self.fail(&error);
            }
        }
    }

    /// Stops the log for `error`.
    fn fail(&mut self, error: &io::Error) {
        self.failed = true;
        let message = format!("cannot write the audit log {}: {error}", self.path);
        tracing::error!("{message}; it stops here");
        *lock(&self.state.failure) = Some(message);
    }
}
