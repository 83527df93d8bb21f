//! The JSON-lines audit log: one [`AuditEvent`] per line, appended by a writer thread,
//! optionally hash-chained (each line carries the SHA-256 of the line before it).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use super::event::sha256_hex;
use super::{AuditEvent, AuditSink};

/// Events queued for the writer thread at most; a decision waits when the queue is full
/// (the log loses nothing: it slows deciders down instead).
pub const AUDIT_QUEUE: usize = 4096;

/// The longest last line read back to continue a chain in an existing file.
const MAX_LAST_LINE: u64 = 1 << 20;

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
/// and flushed whenever the queue runs empty. An I/O error is reported once on `tracing`
/// and the log stops writing.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    queue: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
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
        let writer = std::thread::Builder::new()
            .name("spiffe-mtls-audit".into())
            .spawn(move || write_lines(&jobs, file, previous, &shown))?;
        Ok(Self {
            path,
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(writer)),
        })
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
    fn record(&self, event: &AuditEvent) {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(queue) = queue {
            let _ = queue.send(Job::Write(Box::new(event.clone())));
        }
    }
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
    let start = length.saturating_sub(MAX_LAST_LINE);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(MAX_LAST_LINE).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        tail.pop();
    } else {
        file.write_all(b"\n")?;
    }
    let line_start = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if line_start == 0 && start > 0 {
        return Err(io::Error::other(format!(
            "the last line of the audit log is longer than {MAX_LAST_LINE} bytes: cannot continue its chain"
        )));
    }
    sha256_hex(&tail[line_start..]).map(Some).ok_or_else(|| {
        io::Error::other("no SHA-256 to chain the audit log with: no crypto provider")
    })
}

/// The writer thread: appends each event's line until the log is dropped.
fn write_lines(jobs: &Receiver<Job>, file: File, mut previous: Option<Option<String>>, path: &str) {
    let mut out = BufWriter::new(file);
    let mut failed = false;
    while let Ok(job) = jobs.recv() {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            match job {
                Job::Write(event) if !failed => {
                    let line = event.to_json_line(previous.as_ref().map(Option::as_deref));
                    if previous.is_some() {
                        previous = Some(sha256_hex(line.as_bytes()));
                    }
                    if let Err(error) = out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                    {
                        tracing::error!(%error, path, "cannot write the audit log; it stops here");
                        failed = true;
                    }
                }
                Job::Write(_) => {}
                Job::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = jobs.try_recv().ok();
        }
        if !failed && let Err(error) = out.flush() {
            tracing::error!(%error, path, "cannot write the audit log; it stops here");
            failed = true;
        }
    }
    let _ = out.flush();
}
