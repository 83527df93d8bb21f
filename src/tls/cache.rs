//! A cache of verified peer chains, so a peer that reconnects with the same SVID costs no
//! chain signature checks.
//!
//! A hit needs the exact same certificates, the exact same bundle set (the one shared by the
//! source's contexts while an update leaves every bundle as it was, such as an SVID rotation:
//! an update that changes any bundle starts afresh) and a time inside the validity periods of
//! every certificate of the validated path, root included. The result of verification
//! depends on nothing else, so a hit gives what a full verification would. The peer's proof
//! of key possession (its handshake signature) and the authorization are never cached.
//!
//! Sized for a mesh: [`DEFAULT_VERIFICATION_CACHE_ENTRIES`] entries by default in a
//! set-associative [`Table`] (no lock, CLOCK eviction, see there), so 1,000 peers reconnecting
//! in turn all hit. An entry copies the chain and the SPIFFE ID: at most
//! [`MAX_CACHED_ENTRY_BYTES`] of them (a larger chain is verified every time, never cached)
//! plus a fixed header of at most [`ENTRY_HEADER_BYTES`] and the table's 16 bytes per entry
//! (a tag and a pointer; and one byte per set of 8, its CLOCK hand).

use std::ops::RangeInclusive;
use std::sync::{Arc, Weak};

use rustls::pki_types::CertificateDer;

use super::table::Table;
use crate::bundle::BundleSet;
use crate::source::X509Context;
use crate::spiffe_id::SpiffeId;
use crate::verify::VerifiedSvid;

/// How many verified chains a config's cache holds by default.
pub const DEFAULT_VERIFICATION_CACHE_ENTRIES: usize = 4096;

/// The most bytes of certificates and SPIFFE ID an entry of the verification cache (or of
/// the table of authorized leaves) copies: the chain's DER plus twice the ID's trust domain
/// and path. A chain above it is verified every time. X.509-SVIDs are about 0.5 to 1 KiB.
pub const MAX_CACHED_ENTRY_BYTES: usize = 4096;

/// The fixed part of an entry: the entry and its shared pointer's counts, and the shell of a
/// replaced bundle set that its weak reference may keep allocated (the bundles themselves are
/// freed with the last strong reference). Checked at compile time, here and for the
/// authorized leaves.
pub(crate) const ENTRY_HEADER_BYTES: usize = 256;

/// The longest chain cached, leaf included.
const MAX_CACHED_CERTS: usize = 8;

// certificate ends are kept as u16
const _: () = assert!(MAX_CACHED_ENTRY_BYTES <= u16::MAX as usize);

/// The bytes of `id` an entry holds: the trust domain twice (ours and the `spiffe` crate's
/// ID each own a copy) and the path.
pub(crate) fn id_bytes(id: &SpiffeId) -> usize {
    2 * id.trust_domain().as_str().len() + id.path().len()
}

/// A verified chain and the bundle set it was verified against.
#[derive(Debug)]
pub(crate) struct Entry {
    bundles: Weak<BundleSet>,
    valid_from: i64,
    valid_until: i64,
    id: SpiffeId,
    /// The chain's certificates, leaf first, one after the other.
    der: Box<[u8]>,
    /// Where each certificate ends in `der`; the first `count` are used.
    ends: [u16; MAX_CACHED_CERTS],
    count: u8,
    /// The position of the root the chain ended at among its bundle's roots.
    root_index: u16,
}

const _: () = assert!(
    2 * size_of::<usize>() + size_of::<Entry>() + 2 * size_of::<usize>() + size_of::<BundleSet>()
        <= ENTRY_HEADER_BYTES
);

impl Entry {
    /// The verified SPIFFE ID of the chain.
    pub(crate) fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The position of the root the chain ended at among the roots of its trust domain's
    /// bundle (in the bundles of the context the entry was found for).
    pub(crate) fn root_index(&self) -> usize {
        usize::from(self.root_index)
    }

    /// The chain's certificates, leaf first.
    fn certificates(&self) -> impl Iterator<Item = &[u8]> {
        let ends = &self.ends[..usize::from(self.count)];
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts.zip(ends).map(|(start, &end)| {
            self.der
                .get(usize::from(start)..usize::from(end))
                .unwrap_or(&[])
        })
    }

    /// Whether this entry holds exactly the chain `leaf` + `rest`.
    fn holds<'a>(&self, leaf: &'a [u8], rest: impl ExactSizeIterator<Item = &'a [u8]>) -> bool {
        usize::from(self.count) == 1 + rest.len()
            && self
                .certificates()
                .zip(std::iter::once(leaf).chain(rest))
                .all(|(held, presented)| held == presented)
    }

    /// Whether this entry was verified against the bundles of `context`.
    fn of(&self, context: &X509Context) -> bool {
        std::ptr::eq(self.bundles.as_ptr(), Arc::as_ptr(context.shared_bundles()))
    }

    fn valid_at(&self, now: i64) -> bool {
        (self.valid_from..=self.valid_until).contains(&now)
    }
}

#[derive(Debug)]
pub(crate) struct VerificationCache {
    table: Table<Entry>,
}

impl VerificationCache {
    /// A cache of `entries` chains (rounded up to a multiple of 8).
    pub(crate) fn new(entries: usize) -> Self {
        Self {
            table: Table::new(entries),
        }
    }

    /// The earlier verification of exactly this chain against exactly the bundles of this
    /// context, if it still holds at `now` (Unix seconds).
    pub(crate) fn get(
        &self,
        context: &Arc<X509Context>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Option<Arc<Entry>> {
        let key = self.table.key(end_entity);
        self.table.get(key, |entry| {
            entry.of(context)
                && entry.holds(end_entity, intermediates.iter().map(AsRef::as_ref))
                && entry.valid_at(now)
        })
    }

    /// Remembers a chain verified against `context` at `now`, unless it is above the size
    /// bound.
    pub(crate) fn insert(&self, context: &Arc<X509Context>, verified: &VerifiedSvid, now: i64) {
        let chain: Vec<&[u8]> = verified.chain().iter().map(AsRef::as_ref).collect();
        self.put(
            context,
            &chain,
            verified.spiffe_id(),
            verified.path_validity(),
            verified.root_index(),
            now,
        );
    }

    fn put(
        &self,
        context: &Arc<X509Context>,
        chain: &[&[u8]],
        id: &SpiffeId,
        validity: RangeInclusive<i64>,
        root_index: usize,
        now: i64,
    ) {
        let Some((&leaf, rest)) = chain.split_first() else {
            return;
        };
        let Ok(root_index) = u16::try_from(root_index) else {
            return;
        };
        let size: usize = chain.iter().map(|cert| cert.len()).sum();
        if chain.len() > MAX_CACHED_CERTS || size + id_bytes(id) > MAX_CACHED_ENTRY_BYTES {
            return;
        }
        let mut ends = [0; MAX_CACHED_CERTS];
        let mut end = 0;
        for (slot, cert) in ends.iter_mut().zip(chain) {
            end += cert.len();
            // at most MAX_CACHED_ENTRY_BYTES, checked above
            *slot = u16::try_from(end).unwrap_or(u16::MAX);
        }
        let entry = Entry {
            bundles: Arc::downgrade(context.shared_bundles()),
            valid_from: *validity.start(),
            valid_until: *validity.end(),
            id: id.clone(),
            der: chain.concat().into_boxed_slice(),
            ends,
            count: u8::try_from(chain.len()).unwrap_or(u8::MAX),
            root_index,
        };
        let key = self.table.key(leaf);
        self.table.insert(
            key,
            entry,
            |held| held.holds(leaf, rest.iter().copied()),
            // verified against other bundles (older ones: the source moved on) or no longer
            // valid: of no use
            |held| !held.of(context) || !held.valid_at(now),
        );
    }
}

#[cfg(all(test, unix, feature = "dev-server"))]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use rustls::pki_types::UnixTime;

    use super::*;
    use crate::dev_server::{DevCa, SvidRequest};
    use crate::verify::SvidVerifier;

    fn unix(time: SystemTime) -> i64 {
        i64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
    }

    #[test]
    fn hits_only_for_the_same_chain_bundles_and_a_time_inside_the_path_validity() {
        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let request = SvidRequest::new(
            "spiffe://example.org/peer".parse().unwrap(),
            Duration::from_secs(600),
        );
        let peer = ca.issue(&request).unwrap();
        let other = ca.issue(&request).unwrap();
        let bundles: crate::BundleSet = [ca.bundle()].into_iter().collect();
        let context = Arc::new(X509Context::new(vec![peer.clone()], bundles.clone()).unwrap());
        let verified = SvidVerifier::new()
            .unwrap()
            .verify(peer.chain(), &bundles, UnixTime::now())
            .unwrap();
        let cache = VerificationCache::new(DEFAULT_VERIFICATION_CACHE_ENTRIES);
        let now = unix(SystemTime::now());
        let leaf = peer.leaf();
        assert!(cache.get(&context, leaf, &[], now).is_none(), "empty");
        cache.insert(&context, &verified, now);
        let hit = cache.get(&context, leaf, &[], now).unwrap();
        assert_eq!(hit.spiffe_id(), verified.spiffe_id());

        // Another chain, extra intermediates, other bundles (even of the same content): misses.
        assert!(cache.get(&context, other.leaf(), &[], now).is_none());
        assert!(
            cache
                .get(&context, leaf, &[ca.root().clone()], now)
                .is_none()
        );
        let same_content = Arc::new(X509Context::new(vec![peer.clone()], bundles.clone()).unwrap());
        assert!(cache.get(&same_content, leaf, &[], now).is_none());
        // A context that shares the bundles (an SVID rotation, an expired SVID left out): hits.
        let rotated = Arc::new(
            X509Context::with_shared_bundles(
                vec![other.clone()],
                Arc::clone(context.shared_bundles()),
            )
            .unwrap(),
        );
        assert!(cache.get(&rotated, leaf, &[], now).is_some());

        // Past the leaf's notAfter or before its notBefore: misses.
        let expiry = unix(peer.expires_at());
        assert!(
            cache.get(&context, leaf, &[], expiry).is_some(),
            "notAfter is inclusive"
        );
        assert!(cache.get(&context, leaf, &[], expiry + 1).is_none());
        assert!(cache.get(&context, leaf, &[], now - 86_400).is_none());

        // The same chain verified against new bundles takes the old entry's place.
        cache.insert(&same_content, &verified, now);
        assert!(cache.get(&same_content, leaf, &[], now).is_some());
        assert!(cache.get(&context, leaf, &[], now).is_none());
        assert_eq!(cache.table.len(), 1);
    }

    fn context() -> Arc<X509Context> {
        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let request = SvidRequest::new(
            "spiffe://example.org/self".parse().unwrap(),
            Duration::from_secs(600),
        );
        let svid = ca.issue(&request).unwrap();
        Arc::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect()).unwrap())
    }

    /// A made-up leaf of a typical SVID's size, distinct for each `n`.
    fn leaf(n: usize) -> Vec<u8> {
        let mut leaf = vec![0x30; 533];
        leaf[..8].copy_from_slice(&(n as u64).to_be_bytes());
        leaf
    }

    fn id() -> SpiffeId {
        "spiffe://example.org/peer".parse().unwrap()
    }

    const NOW: i64 = 1_000;
    const VALIDITY: RangeInclusive<i64> = 0..=2_000;

    #[test]
    fn a_thousand_distinct_peers_all_hit_with_the_default_size() {
        let context = context();
        let cache = VerificationCache::new(DEFAULT_VERIFICATION_CACHE_ENTRIES);
        let leaves: Vec<CertificateDer<'static>> =
            (0..1000).map(|n| CertificateDer::from(leaf(n))).collect();
        for leaf in &leaves {
            cache.put(&context, &[leaf.as_ref()], &id(), VALIDITY, 0, NOW);
        }
        // in turn, several rounds: every lookup hits, none evicts another
        for _ in 0..3 {
            for leaf in &leaves {
                assert!(cache.get(&context, leaf, &[], NOW).is_some());
            }
        }
        assert_eq!(cache.table.len(), 1000);
    }

    #[test]
    fn the_bound_holds_under_100_000_distinct_inserts() {
        let context = context();
        let cache = VerificationCache::new(DEFAULT_VERIFICATION_CACHE_ENTRIES);
        for n in 0..100_000 {
            cache.put(&context, &[&leaf(n)], &id(), VALIDITY, 0, NOW);
        }
        assert_eq!(cache.table.capacity(), DEFAULT_VERIFICATION_CACHE_ENTRIES);
        assert!(cache.table.len() <= DEFAULT_VERIFICATION_CACHE_ENTRIES);
        // the latest are in
        let last = CertificateDer::from(leaf(99_999));
        assert!(cache.get(&context, &last, &[], NOW).is_some());
    }

    #[test]
    fn entries_are_within_the_stated_size() {
        let context = context();
        let cache = VerificationCache::new(8);
        let big = vec![0x30; MAX_CACHED_ENTRY_BYTES];
        cache.put(&context, &[&big], &id(), VALIDITY, 0, NOW);
        assert!(
            cache.get(&context, &big.into(), &[], NOW).is_none(),
            "too big"
        );
        let nine: Vec<Vec<u8>> = (0..9).map(leaf).collect();
        let chain: Vec<&[u8]> = nine.iter().map(Vec::as_slice).collect();
        cache.put(&context, &chain, &id(), VALIDITY, 0, NOW);
        assert_eq!(cache.table.len(), 0, "too long");
        let fits = vec![0x30; MAX_CACHED_ENTRY_BYTES - id_bytes(&id())];
        cache.put(&context, &[&fits], &id(), VALIDITY, 0, NOW);
        assert!(cache.get(&context, &fits.into(), &[], NOW).is_some());
    }

    #[test]
    fn chains_with_intermediates_hit_only_whole() {
        let context = context();
        let cache = VerificationCache::new(64);
        let (a, b, c) = (leaf(1), leaf(2), leaf(3));
        cache.put(&context, &[&a, &b, &c], &id(), VALIDITY, 0, NOW);
        fn der(bytes: &[u8]) -> CertificateDer<'_> {
            CertificateDer::from(bytes)
        }
        assert!(
            cache
                .get(&context, &der(&a), &[der(&b), der(&c)], NOW)
                .is_some()
        );
        assert!(cache.get(&context, &der(&a), &[der(&b)], NOW).is_none());
        assert!(
            cache
                .get(&context, &der(&a), &[der(&c), der(&b)], NOW)
                .is_none()
        );
        assert!(
            cache
                .get(&context, &der(&a), &[der(&b), der(&b)], NOW)
                .is_none()
        );
        assert!(cache.get(&context, &der(&a), &[], NOW).is_none());
    }

    #[test]
    fn concurrent_inserts_and_lookups_stay_consistent() {
        let context = context();
        let cache = VerificationCache::new(256);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (cache, context) = (&cache, &context);
                scope.spawn(move || {
                    for n in 0..5_000 {
                        // half the keys shared between threads, half each thread's own
                        let key = if n % 2 == 0 {
                            n % 600
                        } else {
                            1_000 * (thread + 1) + n
                        };
                        let leaf = CertificateDer::from(leaf(key));
                        match cache.get(context, &leaf, &[], NOW) {
                            Some(entry) => assert!(entry.holds(&leaf, [].into_iter())),
                            None => cache.put(context, &[&leaf], &id(), VALIDITY, 0, NOW),
                        }
                    }
                });
            }
        });
        assert!(cache.table.len() <= 256);
    }
}
