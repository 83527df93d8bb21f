//! What the dev server knows of the other end of a connection, recorded when it accepts the
//! connection and re-checked at every call.
//!
//! A Unix socket peer: the kernel recorded its uid, gid and pid at `connect()` (SO_PEERCRED);
//! the dev server adds, at accept time, the pid's start time and its executable (path, device
//! and inode of `/proc/<pid>/exe`). At every call, and before every message of a stream, it
//! reads the start time and executable again and refuses (`PermissionDenied`) when the process
//! has exited, its pid was reused by another process (different start time), or it now runs
//! another executable than when it connected (it called `exec`). The uid and gid need no such
//! check: they belong to the connection, not to the pid.
//!
//! What this does not catch: the record is taken when the server accepts the connection, not
//! at the client's `connect()`, so an `exec` between the two goes unseen; and a process that
//! execs another program and then the original one again (or a program at the same path, same
//! file) between two checks looks unchanged. Like SPIRE's `unix` attestor, it trusts what
//! `/proc` says at the moment it looks; it is a development server.
//!
//! A TCP peer has no credentials. For a loopback connection, the uid owning the client's
//! socket is looked up in `/proc/net/tcp{,6}` at accept time, so `unix:uid:N` selectors work
//! over TCP; there is no gid, pid or executable. Any other TCP peer is anonymous and matches no
//! entry.

use std::net::SocketAddr;

use tokio::net::{TcpStream, UnixStream};

use super::procfs::{self, Executable};

/// The other end of an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A Unix socket peer.
    Unix {
        /// Its uid at `connect()`.
        uid: u32,
        /// Its gid at `connect()`.
        gid: u32,
        /// The process that connected, when `/proc` showed it at accept time.
        process: Option<ProcessRecord>,
    },
    /// A TCP peer.
    Tcp {
        /// Its address.
        remote: SocketAddr,
        /// The owner of its socket, for a loopback peer found in `/proc/net/tcp{,6}`.
        uid: Option<u32>,
    },
    /// Nothing is known (the credentials could not be read).
    Unknown,
}

/// A process as it was when its connection was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessRecord {
    /// Its pid.
    pub(crate) pid: u32,
    /// Its start time (clock ticks since boot).
    pub(crate) start_time: u64,
    /// Its executable, unless `/proc/<pid>/exe` was unreadable (another user's process).
    pub(crate) exe: Option<Executable>,
}

/// A look at a pid: start time, executable, start time again (so the executable read belongs
/// to the process whose start time was read). `None` where `/proc` had nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observation {
    pub(crate) start_before: Option<u64>,
    pub(crate) exe: Option<Executable>,
    pub(crate) start_after: Option<u64>,
}

impl Observation {
    /// Looks at `pid` now.
    pub(crate) fn of(pid: u32) -> Self {
        let start_before = procfs::start_time(pid).ok();
        let exe = procfs::executable(pid).ok();
        let start_after = procfs::start_time(pid).ok();
        Self {
            start_before,
            exe,
            start_after,
        }
    }
}

/// Why a call on a connection was refused: the process that opened it is not the one there now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BindingError {
    /// The process has exited (its connection is held by another one).
    #[error("process {pid}, which opened the connection, has exited")]
    Exited {
        /// The pid.
        pid: u32,
    },
    /// The pid now belongs to another process.
    #[error(
        "pid {pid} was reused: start time {now} is not {then}, as when the connection was opened"
    )]
    PidReused {
        /// The pid.
        pid: u32,
        /// The start time at accept.
        then: u64,
        /// The start time now.
        now: u64,
    },
    /// The process runs another executable than when it connected.
    #[error("process {pid} now runs {now}, not {then} as when it opened the connection")]
    ExecutableChanged {
        /// The pid.
        pid: u32,
        /// The executable at accept.
        then: String,
        /// The executable now.
        now: String,
    },
}

impl ProcessRecord {
    /// Records `pid` as `/proc` shows it now; `None` when it is already gone.
    pub(crate) fn capture(pid: u32) -> Option<Self> {
        Self::from_observation(pid, Observation::of(pid))
    }

    /// The record an observation makes, when it saw one process throughout.
    pub(crate) fn from_observation(pid: u32, seen: Observation) -> Option<Self> {
        match (seen.start_before, seen.start_after) {
            (Some(before), Some(after)) if before == after => Some(Self {
                pid,
                start_time: before,
                exe: seen.exe,
            }),
            _ => None,
        }
    }

    /// Whether `now` is still the process recorded.
    ///
    /// # Errors
    /// [`BindingError`] naming what changed.
    pub(crate) fn check(&self, now: &Observation) -> Result<(), BindingError> {
        let pid = self.pid;
        for start in [now.start_before, now.start_after] {
            match start {
                None => return Err(BindingError::Exited { pid }),
                Some(now) if now != self.start_time => {
                    return Err(BindingError::PidReused {
                        pid,
                        then: self.start_time,
                        now,
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(then) = &self.exe
            && now.exe.as_ref() != Some(then)
        {
            return Err(BindingError::ExecutableChanged {
                pid,
                then: describe(Some(then)),
                now: describe(now.exe.as_ref()),
            });
        }
        Ok(())
    }
}

fn describe(exe: Option<&Executable>) -> String {
    match exe {
        Some(exe) => format!(
            "{} (device {}, inode {})",
            exe.path.display(),
            exe.dev,
            exe.ino
        ),
        None => "an executable /proc does not show".to_owned(),
    }
}

impl Peer {
    /// Records a Unix socket peer.
    pub(crate) fn of_unix(stream: &UnixStream) -> Self {
        let Ok(cred) = stream.peer_cred() else {
            return Self::Unknown;
        };
        let process = cred
            .pid()
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|&pid| pid > 0)
            .and_then(ProcessRecord::capture);
        Self::Unix {
            uid: cred.uid(),
            gid: cred.gid(),
            process,
        }
    }

    /// Records a TCP peer: the owner of its socket when it is on loopback.
    pub(crate) fn of_tcp(stream: &TcpStream) -> Self {
        let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
            return Self::Unknown;
        };
        let uid = if remote.ip().to_canonical().is_loopback() {
            // the client's socket: its local address is our remote one, and the reverse
            let uid = procfs::tcp_socket_owner(remote, local);
            if uid.is_none() {
                tracing::debug!(%remote, "no owner found for a loopback TCP peer");
            }
            uid
        } else {
            None
        };
        Self::Tcp { remote, uid }
    }

    /// Whether the process that opened the connection is still the one there.
    ///
    /// # Errors
    /// [`BindingError`] when it exited, its pid was reused or it runs another executable.
    pub(crate) fn check(&self) -> Result<(), BindingError> {
        match self {
            Self::Unix {
                process: Some(process),
                ..
            } => process.check(&Observation::of(process.pid)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe(path: &str, ino: u64) -> Executable {
        Executable {
            path: path.into(),
            dev: 1,
            ino,
        }
    }

    fn seen(before: Option<u64>, exe: Option<Executable>, after: Option<u64>) -> Observation {
        Observation {
            start_before: before,
            exe,
            start_after: after,
        }
    }

    fn record() -> ProcessRecord {
        ProcessRecord {
            pid: 4242,
            start_time: 1000,
            exe: Some(exe("/usr/bin/agent", 7)),
        }
    }

    #[test]
    fn the_same_process_passes() {
        let now = seen(Some(1000), Some(exe("/usr/bin/agent", 7)), Some(1000));
        assert_eq!(record().check(&now), Ok(()));
    }

    #[test]
    fn a_reused_pid_is_refused() {
        let now = seen(Some(2000), Some(exe("/usr/bin/agent", 7)), Some(2000));
        let error = record().check(&now).unwrap_err();
        assert_eq!(
            error,
            BindingError::PidReused {
                pid: 4242,
                then: 1000,
                now: 2000
            }
        );
        assert_eq!(
            error.to_string(),
            "pid 4242 was reused: start time 2000 is not 1000, as when the connection was opened"
        );
        // reused between the two reads of one check
        let now = seen(Some(1000), Some(exe("/usr/bin/agent", 7)), Some(2000));
        assert!(matches!(
            record().check(&now),
            Err(BindingError::PidReused { now: 2000, .. })
        ));
    }

    #[test]
    fn an_exec_is_refused() {
        let now = seen(Some(1000), Some(exe("/usr/bin/other", 9)), Some(1000));
        let error = record().check(&now).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("process 4242 now runs /usr/bin/other"),
            "{error}"
        );
        // another file at the same path
        let now = seen(Some(1000), Some(exe("/usr/bin/agent", 8)), Some(1000));
        assert!(matches!(
            record().check(&now),
            Err(BindingError::ExecutableChanged { .. })
        ));
        // an executable that can no longer be read
        let now = seen(Some(1000), None, Some(1000));
        assert!(matches!(
            record().check(&now),
            Err(BindingError::ExecutableChanged { .. })
        ));
    }

    #[test]
    fn an_exited_process_is_refused() {
        assert_eq!(
            record().check(&seen(None, None, None)),
            Err(BindingError::Exited { pid: 4242 })
        );
    }

    #[test]
    fn without_a_recorded_executable_only_the_start_time_counts() {
        let record = ProcessRecord {
            exe: None,
            ..record()
        };
        assert_eq!(
            record.check(&seen(Some(1000), Some(exe("/x", 1)), Some(1000))),
            Ok(())
        );
        assert!(record.check(&seen(Some(1), None, Some(1))).is_err());
    }

    #[test]
    fn a_record_needs_one_process_throughout() {
        let e = Some(exe("/usr/bin/agent", 7));
        assert_eq!(
            ProcessRecord::from_observation(4242, seen(Some(1000), e.clone(), Some(1000))),
            Some(record())
        );
        assert_eq!(
            ProcessRecord::from_observation(4242, seen(Some(1000), e.clone(), Some(1001))),
            None
        );
        assert_eq!(
            ProcessRecord::from_observation(4242, seen(None, e, None)),
            None
        );
    }

    #[test]
    fn this_process_checks_out() {
        let record = ProcessRecord::capture(std::process::id()).unwrap();
        assert!(record.exe.is_some());
        assert_eq!(record.check(&Observation::of(std::process::id())), Ok(()));
    }
}
