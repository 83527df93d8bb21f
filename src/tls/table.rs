//! A fixed-size table of shared entries for the handshake path: the verification cache and
//! the authorized leaves are built on it.
//!
//! Set-associative with two choices: a key (a keyed hash of the bytes the entry is found by)
//! names two sets of [`WAYS`] ways; an entry goes into the emptier of the two, so a table
//! holds about as many keys as it has ways before two keys compete for a way (1,000 keys in
//! the default 4,096 ways never do in practice, against a few sets overflowing with one
//! choice). Each way is an atomic pointer to its entry plus an atomic tag (the key's hash),
//! so a lookup reads at most 16 tags and loads only the entry whose tag matches: no lock,
//! no allocation. Tags are hints; a hit is decided by the caller comparing the entry itself,
//! so a torn race between two inserts costs a miss, never a wrong answer.
//!
//! Full sets evict by CLOCK (second chance): a hit marks its way, an insert moves the set's
//! hand on, clearing marks, until it finds an unmarked way. An entry that keeps being hit survives a flood of keys
//! that are inserted once and never come back. The number of ways never changes: memory is
//! bounded by the ways times the largest entry, whatever peers send.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

/// Ways per set.
pub(crate) const WAYS: usize = 8;

/// The most ways a table may have (2^20): a larger request is cut to this.
pub(crate) const MAX_WAYS: usize = 1 << 20;

/// Bit 0 of a tag: the way was hit since an insert last passed it.
const MARK: u64 = 1;

/// A key: a keyed hash of the bytes an entry is found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key(u64);

impl Key {
    fn tag(self) -> u64 {
        self.0 & !MARK
    }
}

/// A fixed number of ways holding `Arc<T>`.
#[derive(Debug)]
pub(crate) struct Table<T> {
    tags: Box<[AtomicU64]>,
    entries: Box<[ArcSwapOption<T>]>,
    /// Each set's CLOCK hand: the way its next eviction looks at first.
    hands: Box<[AtomicU8]>,
    sets: u64,
    hasher: RandomState,
}

impl<T> Table<T> {
    /// A table of at least `ways` ways (rounded up to whole sets, at least one set, at most
    /// [`MAX_WAYS`]).
    pub(crate) fn new(ways: usize) -> Self {
        let sets = ways.clamp(WAYS, MAX_WAYS).div_ceil(WAYS);
        let ways = sets * WAYS;
        Self {
            tags: (0..ways).map(|_| AtomicU64::new(0)).collect(),
            entries: (0..ways).map(|_| ArcSwapOption::empty()).collect(),
            hands: (0..sets).map(|_| AtomicU8::new(0)).collect(),
            sets: sets as u64,
            hasher: RandomState::new(),
        }
    }

    /// How many entries the table can hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// The key of `bytes`.
    pub(crate) fn key(&self, bytes: &[u8]) -> Key {
        Key(self.hasher.hash_one(bytes))
    }

    /// The first way of each of the key's two sets (the same set twice in a one-set table).
    fn sets(&self, key: Key) -> [usize; 2] {
        // multiply-shift maps 32 hash bits onto 0..sets without a division
        let first = ((key.0 & 0xffff_ffff) * self.sets) >> 32;
        let second = ((key.0 >> 32) * self.sets) >> 32;
        // both < sets <= MAX_WAYS / WAYS
        [first as usize * WAYS, second as usize * WAYS]
    }

    /// The ways a key may be in: its first set, then its second if that is another one.
    fn ways(&self, key: Key) -> impl Iterator<Item = usize> {
        let [first, second] = self.sets(key);
        let second = if second == first {
            0..0
        } else {
            second..second + WAYS
        };
        (first..first + WAYS).chain(second)
    }

    /// The entry under `key` that `matches`, marked as used.
    pub(crate) fn get(&self, key: Key, matches: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        self.lookup(key, matches, Arc::clone)
    }

    /// Whether an entry under `key` `matches`; marks it as used.
    pub(crate) fn contains(&self, key: Key, matches: impl Fn(&T) -> bool) -> bool {
        self.lookup(key, matches, |_| ()).is_some()
    }

    fn lookup<R>(
        &self,
        key: Key,
        matches: impl Fn(&T) -> bool,
        found: impl FnOnce(&Arc<T>) -> R,
    ) -> Option<R> {
        for way in self.ways(key) {
            let tag = self.tags[way].load(Ordering::Relaxed);
            if tag & !MARK != key.tag() {
                continue;
            }
            let guard = self.entries[way].load();
            if let Some(entry) = guard.as_ref().filter(|entry| matches(entry)) {
                if tag & MARK == 0 {
                    self.tags[way].fetch_or(MARK, Ordering::Relaxed);
                }
                return Some(found(entry));
            }
        }
        None
    }

    /// Puts `entry` under `key`: in place of an entry for the same bytes (`same`) if there
    /// is one, else in a free or `stale` way of the emptier set, else in place of an entry
    /// not used since the last insert passed it.
    pub(crate) fn insert(
        &self,
        key: Key,
        entry: T,
        same: impl Fn(&T) -> bool,
        stale: impl Fn(&T) -> bool,
    ) {
        let way = self
            .find(key, |held| held.is_some_and(&same))
            .or_else(|| self.free(key, &stale))
            .unwrap_or_else(|| self.victim(key));
        self.entries[way].store(Some(Arc::new(entry)));
        self.tags[way].store(key.tag(), Ordering::Relaxed);
    }

    /// The first of the key's ways whose entry passes `test`.
    fn find(&self, key: Key, test: impl Fn(Option<&T>) -> bool) -> Option<usize> {
        self.ways(key)
            .find(|&way| test(self.entries[way].load().as_deref()))
    }

    /// A free or stale way in the emptier of the key's sets.
    fn free(&self, key: Key, stale: &impl Fn(&T) -> bool) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None; // (live entries in the set, free way)
        for set in self.sets(key) {
            let mut live = 0;
            let mut free = None;
            for way in set..set + WAYS {
                match self.entries[way].load().as_deref() {
                    Some(held) if !stale(held) => live += 1,
                    _ => {
                        free.get_or_insert(way);
                    }
                }
            }
            if let Some(way) = free
                && best.is_none_or(|(fewest, _)| live < fewest)
            {
                best = Some((live, way));
            }
        }
        best.map(|(_, way)| way)
    }

    /// CLOCK in one of the key's sets (which one, the key picks): from the set's hand on,
    /// clears marks until an unmarked way, at most one round plus one way; the hand stops
    /// past the victim, so a way just filled is the last its set gives up again.
    fn victim(&self, key: Key) -> usize {
        let [first, second] = self.sets(key);
        let set = if key.0 & (1 << 16) == 0 {
            first
        } else {
            second
        };
        let hand = &self.hands[set / WAYS];
        let start = usize::from(hand.load(Ordering::Relaxed));
        let mut victim = set + start % WAYS;
        for step in 0..WAYS {
            let way = set + (start + step) % WAYS;
            if self.tags[way].fetch_and(!MARK, Ordering::Relaxed) & MARK == 0 {
                victim = way;
                break;
            }
        }
        // < WAYS
        hand.store(
            u8::try_from((victim - set + 1) % WAYS).unwrap_or(0),
            Ordering::Relaxed,
        );
        victim
    }

    /// How many ways hold an entry (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| entry.load().is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(table: &Table<String>, value: &str) {
        let key = table.key(value.as_bytes());
        table.insert(key, value.to_string(), |held| held == value, |_| false);
    }

    fn get(table: &Table<String>, value: &str) -> Option<Arc<String>> {
        table.get(table.key(value.as_bytes()), |held| held == value)
    }

    #[test]
    fn sizes_are_whole_sets_within_the_bounds() {
        assert_eq!(Table::<String>::new(0).capacity(), WAYS);
        assert_eq!(Table::<String>::new(1).capacity(), WAYS);
        assert_eq!(Table::<String>::new(4096).capacity(), 4096);
        assert_eq!(Table::<String>::new(4097).capacity(), 4096 + WAYS);
        assert_eq!(Table::<String>::new(usize::MAX).capacity(), MAX_WAYS);
    }

    #[test]
    fn a_one_set_table_keeps_the_last_entries() {
        let table = Table::new(1);
        for n in 0..100 {
            insert(&table, &n.to_string());
            assert_eq!(*get(&table, &n.to_string()).unwrap(), n.to_string());
        }
        assert_eq!(table.len(), WAYS);
    }

    #[test]
    fn the_same_bytes_replace_their_entry() {
        let table = Table::new(64);
        insert(&table, "a");
        let first = get(&table, "a").unwrap();
        insert(&table, "a");
        assert!(!Arc::ptr_eq(&first, &get(&table, "a").unwrap()));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn stale_entries_are_replaced_before_live_ones() {
        let table: Table<String> = Table::new(1);
        for n in 0..WAYS {
            insert(&table, &format!("live {n}"));
        }
        // every way full; the odd ones stale: new entries take only those
        for n in 0..WAYS / 2 {
            let value = format!("new {n}");
            let key = table.key(value.as_bytes());
            let stale = |held: &String| {
                held.strip_prefix("live ")
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n % 2 == 1)
            };
            table.insert(key, value.clone(), |held| *held == value, stale);
        }
        for n in 0..WAYS {
            assert_eq!(get(&table, &format!("live {n}")).is_some(), n % 2 == 0);
        }
    }

    #[test]
    fn entries_in_use_mostly_survive_a_flood_of_new_keys() {
        // 100 peers that keep coming back, and between two of their rounds 400 keys seen
        // once (40,000 over 100 rounds, 40 times the table): a peer missed is inserted again.
        const FLOOD: usize = 400;
        let table = Table::new(1024);
        let kept: Vec<String> = (0..100).map(|n| format!("kept {n}")).collect();
        let mut misses = 0;
        for round in 0..100 {
            for value in &kept {
                if get(&table, value).is_none() {
                    misses += 1;
                    insert(&table, value);
                }
            }
            for n in 0..FLOOD {
                insert(&table, &format!("flood {round} {n}"));
            }
            assert!(table.len() <= table.capacity());
        }
        // the first round misses all 100; later ones hardly any (about 60 of 9,900 seen)
        assert!(misses < 100 + 200, "{misses} misses in 10,000 lookups");
    }
}
