//! Refused Workload API calls, said as who called (as attested) and why no entry matched.
//!
//! Every refusal is a `tracing` warning (target `spiffe_mtls::dev_server`) and a
//! [`CallerRefusal`] for the subscribers of [`DevServer::refusals`](super::DevServer::refusals),
//! which the `dev-server` command prints on stderr. The caller still gets what SPIRE answers,
//! `PermissionDenied` "no identity issued": the details stay on the server's side.

use std::fmt;
use std::path::PathBuf;

use tokio::sync::broadcast;

use super::attest::{Caller, Selector};
use super::config::Entry;
use super::peer::Peer;

/// How many entries a refusal names as not matching, nearest first.
const ENTRIES_SHOWN: usize = 3;

/// A Workload API call the dev server refused: the caller as it attested it, and why.
///
/// ```text
/// FetchX509SVID refused for uid 1000, gid 1000, pid 4242, path /usr/bin/curl: no entry
/// matches: spiffe://example.org/web needs unix:path:/srv/web/bin/web
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallerRefusal {
    /// The call (`FetchX509SVID`, `FetchJWTSVID`, ...).
    pub call: &'static str,
    /// The caller's uid, if known (a Unix socket peer, a loopback TCP peer).
    pub uid: Option<u32>,
    /// The caller's gid, if known (a Unix socket peer).
    pub gid: Option<u32>,
    /// The caller's pid, if known (a Unix socket peer).
    pub pid: Option<u32>,
    /// The caller's executable, if it could be read.
    pub path: Option<PathBuf>,
    /// Why: which entries did not match and what they need, or why the caller's connection
    /// no longer attests it.
    pub reason: String,
}

impl fmt::Display for CallerRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} refused for ", self.call)?;
        match self.uid {
            Some(uid) => write!(f, "uid {uid}")?,
            None => f.write_str("uid unknown")?,
        }
        if let Some(gid) = self.gid {
            write!(f, ", gid {gid}")?;
        }
        if let Some(pid) = self.pid {
            write!(f, ", pid {pid}")?;
        }
        match &self.path {
            Some(path) => write!(f, ", path {}", path.display())?,
            None => f.write_str(", path unknown")?,
        }
        write!(f, ": {}", self.reason)
    }
}

impl CallerRefusal {
    /// A refusal of `call` for the connection's `peer`, attested as `caller`.
    pub(crate) fn new(call: &'static str, peer: &Peer, caller: &Caller, reason: String) -> Self {
        let (mut uid, mut gid, mut pid) = (None, None, None);
        match peer {
            Peer::Unix {
                uid: u,
                gid: g,
                process,
            } => {
                uid = Some(*u);
                gid = Some(*g);
                pid = process.as_ref().map(|p| p.pid);
            }
            Peer::Tcp { uid: u, .. } => uid = *u,
            Peer::Unknown => {}
        }
        let path = caller.selectors().iter().find_map(|s| match s {
            Selector::Path(path) => Some(path.clone()),
            _ => None,
        });
        Self {
            call,
            uid,
            gid,
            pid,
            path,
            reason,
        }
    }

    /// Logs the refusal and hands it to the subscribers.
    pub(crate) fn report(self, subscribers: &broadcast::Sender<CallerRefusal>) {
        tracing::warn!(
            target: "spiffe_mtls::dev_server",
            call = self.call,
            uid = ?self.uid,
            pid = ?self.pid,
            path = ?self.path,
            reason = %self.reason,
            "Workload API caller refused"
        );
        // No subscriber is fine.
        let _ = subscribers.send(self);
    }
}

/// Why no entry of `entries` matches `caller` (those whose SPIFFE ID is `wanted`, when the
/// call asked for one): the nearest entries and the selectors the caller lacks for each.
pub(crate) fn why_no_entry<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    caller: &Caller,
    wanted: Option<&str>,
) -> String {
    let mut misses: Vec<(usize, &Entry, Vec<&Selector>)> = entries
        .into_iter()
        .filter(|entry| wanted.is_none_or(|id| entry.spiffe_id.to_string() == id))
        .enumerate()
        .map(|(index, entry)| {
            let missing = entry
                .selectors
                .iter()
                .filter(|s| !caller.selectors().contains(s))
                .collect();
            (index, entry, missing)
        })
        .collect();
    if misses.is_empty() {
        return match wanted {
            Some(id) => format!("no registration entry gives {id}"),
            None => "the server has no registration entries".to_owned(),
        };
    }
    misses.sort_by_key(|(index, _, missing)| (missing.len(), *index));
    let mut text = String::from("no entry matches: ");
    for (i, (_, entry, missing)) in misses.iter().take(ENTRIES_SHOWN).enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let needs: Vec<String> = missing.iter().map(ToString::to_string).collect();
        text.push_str(&format!("{} needs {}", entry.spiffe_id, needs.join(", ")));
    }
    if misses.len() > ENTRIES_SHOWN {
        text.push_str(&format!(
            "; and {} more entries",
            misses.len() - ENTRIES_SHOWN
        ));
    }
    if caller.selectors().is_empty() {
        text.push_str(" (the caller has no selectors: a TCP peer not on loopback, or unknown)");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(id: &str, selectors: &[&str]) -> Entry {
        let mut selectors = selectors.iter().map(|s| s.parse::<Selector>().unwrap());
        let first = selectors.next().unwrap();
        Entry::new(id.parse().unwrap(), first, Duration::from_secs(60))
            .with_selectors(selectors.collect::<Vec<_>>())
    }

    #[test]
    fn names_the_nearest_entries_and_what_they_need() {
        let caller = Caller::with_selectors(vec![
            Selector::Uid(1000),
            Selector::Gid(1000),
            Selector::Path("/usr/bin/curl".into()),
        ]);
        let entries = [
            entry(
                "spiffe://example.org/root",
                &["unix:uid:0", "unix:path:/sbin/x"],
            ),
            entry(
                "spiffe://example.org/web",
                &["unix:uid:1000", "unix:path:/srv/web"],
            ),
        ];
        assert_eq!(
            why_no_entry(&entries, &caller, None),
            "no entry matches: spiffe://example.org/web needs unix:path:/srv/web; \
             spiffe://example.org/root needs unix:uid:0, unix:path:/sbin/x"
        );
        assert_eq!(
            why_no_entry(&entries, &caller, Some("spiffe://example.org/other")),
            "no registration entry gives spiffe://example.org/other"
        );
        assert_eq!(
            why_no_entry(&[], &caller, None),
            "the server has no registration entries"
        );
    }

    #[test]
    fn a_refusal_names_the_caller() {
        let refusal = CallerRefusal {
            call: "FetchX509SVID",
            uid: Some(1000),
            gid: Some(100),
            pid: Some(42),
            path: Some("/usr/bin/curl".into()),
            reason: "no entry matches: x needs y".into(),
        };
        assert_eq!(
            refusal.to_string(),
            "FetchX509SVID refused for uid 1000, gid 100, pid 42, path /usr/bin/curl: no entry \
             matches: x needs y"
        );
    }
}
