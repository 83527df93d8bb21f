//! The peers a workload has seen: one row per SPIFFE ID, the most recent
//! [`MAX_PEERS`](super::MAX_PEERS) kept, each with its counts over the last minute and a
//! moving average of its calls to measure a spike against.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

/// The width of one bucket of a peer's minute.
const BUCKET: Duration = Duration::from_secs(10);

/// Buckets per minute.
const BUCKETS: usize = 6;

/// The weight of each minute of calls that leaves the window in the moving average (a time
/// constant of about five minutes).
const AVERAGE_WEIGHT: f64 = 1.0 / 30.0;

/// Counts of one peer over the last minute, in [`BUCKET`]s.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// The bucket number (Unix time / [`BUCKET`]) of the newest bucket.
    newest: u64,
    /// The bucket number of the first bucket.
    first: u64,
    calls: [u32; BUCKETS],
    denials: [u32; BUCKETS],
    /// The moving average of calls per minute, over the buckets that left the window.
    average: f64,
    /// Whether a bucket has left the window (the average means something).
    warmed_up: bool,
}

impl Window {
    /// Moves the window to `now` (on the monotonic clock: see [`Tick`]), folding the buckets
    /// that leave it into the average.
    fn advance(&mut self, now: Tick) {
        let bucket = bucket_of(now);
        if bucket <= self.newest {
            return;
        }
        if self.newest == 0 {
            (self.newest, self.first) = (bucket, bucket);
            return;
        }
        // At most a window's worth of steps: the buckets older than that are all empty.
        let steps = (bucket - self.newest).min(BUCKETS as u64 * 30);
        for _ in 0..steps {
            self.newest += 1;
            let slot = slot_of(self.newest);
            // The bucket leaving the window; before the first one, there was none.
            if self.newest >= self.first + BUCKETS as u64 {
                let leaving = f64::from(self.calls[slot]) * BUCKETS as f64;
                self.average += AVERAGE_WEIGHT * (leaving - self.average);
                self.warmed_up = true;
            }
            self.calls[slot] = 0;
            self.denials[slot] = 0;
        }
        self.newest = bucket;
    }

    /// Calls in the last minute.
    pub(crate) fn calls(&self) -> u32 {
        self.calls.iter().sum()
    }

    /// Denials in the last minute.
    pub(crate) fn denials(&self) -> u32 {
        self.denials.iter().sum()
    }

    /// The moving average of calls per minute before the last minute, once there is one.
    pub(crate) fn average(&self) -> Option<f64> {
        self.warmed_up.then_some(self.average)
    }
}

/// A moment on the monotonic clock, as the time since the process's first look at it: the
/// windows do not move when the wall clock is stepped (a step back would otherwise pile an
/// hour of calls into one minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(pub(crate) Duration);

impl Tick {
    /// Now.
    pub(crate) fn now() -> Self {
        static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
        Self(ORIGIN.elapsed())
    }
}

/// The bucket of `tick`, counted from 1.
fn bucket_of(tick: Tick) -> u64 {
    tick.0.as_secs() / BUCKET.as_secs() + 1
}

fn slot_of(bucket: u64) -> usize {
    usize::try_from(bucket % BUCKETS as u64).unwrap_or(0)
}

/// One peer's row.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) trust_domain: String,
    pub(crate) open: u64,
    pub(crate) accepted: u64,
    pub(crate) denied: u64,
    pub(crate) last_deny_reason: Option<String>,
    pub(crate) last_seen: SystemTime,
    /// When it was last seen on the monotonic clock (the order of eviction and of rows).
    pub(crate) seen: Tick,
    pub(crate) window: Window,
}

/// The peer table, bounded.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    rows: HashMap<String, Peer>,
}

impl Peers {
    /// The row of `id` (created, pushing out the least recently seen peer without open
    /// connections when the table is full: `evicted` gets its ID).
    fn row(
        &mut self,
        id: &str,
        trust_domain: &str,
        now: Tick,
        evicted: &mut Option<String>,
    ) -> &mut Peer {
        if !self.rows.contains_key(id) && self.rows.len() >= super::MAX_PEERS {
            let oldest = self
                .rows
                .iter()
                .min_by_key(|(_, peer)| (peer.open > 0, peer.seen))
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.rows.remove(&oldest);
                *evicted = Some(oldest);
            }
        }
        let peer = self.rows.entry(id.to_owned()).or_insert_with(|| Peer {
            trust_domain: trust_domain.to_owned(),
            open: 0,
            accepted: 0,
            denied: 0,
            last_deny_reason: None,
            last_seen: SystemTime::now(),
            seen: now,
            window: Window::default(),
        });
        peer.window.advance(now);
        peer.last_seen = SystemTime::now();
        peer.seen = now;
        peer
    }

    /// A decision about `id`: a call when accepted, a denial (with its reason) when not.
    /// Returns the ID pushed out of the table, if any.
    pub(crate) fn decided(
        &mut self,
        id: &str,
        trust_domain: &str,
        accepted: bool,
        reason: Option<&str>,
        now: Tick,
    ) -> Option<String> {
        let mut evicted = None;
        let peer = self.row(id, trust_domain, now, &mut evicted);
        let slot = slot_of(peer.window.newest);
        if accepted {
            peer.accepted += 1;
            peer.window.calls[slot] = peer.window.calls[slot].saturating_add(1);
        } else {
            peer.denied += 1;
            peer.window.denials[slot] = peer.window.denials[slot].saturating_add(1);
            peer.last_deny_reason = reason.map(str::to_owned);
        }
        evicted
    }

    /// A connection of `id` opened (`+1`) or closed (`-1`); its open connections now, and
    /// the ID pushed out of the table, if any.
    pub(crate) fn connection(
        &mut self,
        id: &str,
        trust_domain: &str,
        opened: bool,
        now: Tick,
    ) -> (u64, Option<String>) {
        let mut evicted = None;
        let peer = self.row(id, trust_domain, now, &mut evicted);
        if opened {
            peer.open += 1;
        } else {
            peer.open = peer.open.saturating_sub(1);
        }
        (peer.open, evicted)
    }

    /// Every row, most recently seen first, windows moved to `now`.
    pub(crate) fn rows(&mut self, now: Tick) -> Vec<(String, Peer)> {
        let mut rows: Vec<(String, Peer)> = self
            .rows
            .iter_mut()
            .map(|(id, peer)| {
                peer.window.advance(now);
                (id.clone(), peer.clone())
            })
            .collect();
        rows.sort_by(|a, b| b.1.seen.cmp(&a.1.seen).then(a.0.cmp(&b.0)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Tick {
        Tick(Duration::from_secs(secs))
    }

    #[test]
    fn the_minute_slides_and_the_average_learns_from_what_left_it() {
        let mut peers = Peers::default();
        for second in 0..60 {
            peers.decided("a", "td", true, None, at(second));
        }
        peers.decided("a", "td", false, Some("no"), at(59));
        let rows = peers.rows(at(59));
        let a = &rows[0].1;
        assert_eq!((a.window.calls(), a.window.denials()), (60, 1));
        assert_eq!(a.window.average(), None, "nothing left the window yet");
        assert_eq!(a.last_deny_reason.as_deref(), Some("no"));

        let rows = peers.rows(at(125));
        let a = &rows[0].1;
        assert_eq!(a.window.calls(), 0);
        let average = a.window.average().unwrap();
        assert!(average > 0.0 && average < 60.0, "{average}");
    }

    #[test]
    fn a_full_table_pushes_out_the_least_recent_peer_without_open_connections() {
        let mut peers = Peers::default();
        let _ = peers.connection("busy", "td", true, at(0));
        for n in 1..super::super::MAX_PEERS {
            assert_eq!(
                peers.decided(&format!("p{n}"), "td", true, None, at(n as u64)),
                None
            );
        }
        let evicted = peers.decided("new", "td", true, None, at(5000));
        assert_eq!(
            evicted.as_deref(),
            Some("p1"),
            "not the busy one, though older"
        );
        assert_eq!(peers.rows(at(5000)).len(), super::super::MAX_PEERS);
    }
}
