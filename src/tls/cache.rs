//! A cache of verified peer chains, so a peer that reconnects with the same SVID costs no
//! chain signature checks.
//!
//! A hit needs the exact same certificates, the exact same X.509 context (any source update,
//! a rotated bundle above all, starts afresh) and a time inside the validity periods of every
//! certificate of the validated path, root included. The result of verification depends on
//! nothing else, so a hit gives what a full verification would. The peer's proof of key
//! possession (its handshake signature) and the authorization are never cached.
//!
//! Direct-mapped slots behind atomic pointers: lookups and inserts take no lock, and the
//! memory is bounded whatever peers send.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use rustls::pki_types::CertificateDer;

use crate::source::X509Context;
use crate::verify::VerifiedSvid;

const SLOTS: usize = 64;

/// A verified chain and the context it was verified against.
#[derive(Debug)]
pub(crate) struct Entry {
    context: Weak<X509Context>,
    pub(crate) verified: VerifiedSvid,
}

#[derive(Debug)]
pub(crate) struct VerificationCache {
    slots: Box<[ArcSwapOption<Entry>]>,
    hasher: RandomState,
}

impl VerificationCache {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn slot(&self, end_entity: &[u8]) -> &ArcSwapOption<Entry> {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(end_entity);
        let index = usize::try_from(hasher.finish() % SLOTS as u64).unwrap_or(0);
        &self.slots[index]
    }

    /// The earlier verification of exactly this chain against exactly this context, if it
    /// still holds at `now` (Unix seconds).
    pub(crate) fn get(
        &self,
        context: &Arc<X509Context>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Option<Arc<Entry>> {
        let entry = self.slot(end_entity).load_full()?;
        let chain = entry.verified.chain();
        let same = std::ptr::eq(entry.context.as_ptr(), Arc::as_ptr(context))
            && chain.len() == 1 + intermediates.len()
            && chain[0].as_ref() == end_entity.as_ref()
            && chain[1..]
                .iter()
                .zip(intermediates)
                .all(|(a, b)| a.as_ref() == b.as_ref())
            && entry.verified.path_valid_at(now);
        same.then_some(entry)
    }

    /// Remembers a chain verified against `context`.
    pub(crate) fn insert(&self, context: &Arc<X509Context>, verified: VerifiedSvid) {
        let entry = Entry {
            context: Arc::downgrade(context),
            verified,
        };
        self.slot(entry.verified.chain()[0].as_ref())
            .store(Some(Arc::new(entry)));
    }
}

#[cfg(all(test, feature = "dev-server"))]
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
    fn hits_only_for_the_same_chain_context_and_a_time_inside_the_path_validity() {
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
        let cache = VerificationCache::new();
        let now = unix(SystemTime::now());
        let leaf = peer.leaf();
        assert!(cache.get(&context, leaf, &[], now).is_none(), "empty");
        cache.insert(&context, verified);
        assert!(cache.get(&context, leaf, &[], now).is_some());

        // Another chain, extra intermediates, another context: misses.
        assert!(cache.get(&context, other.leaf(), &[], now).is_none());
        assert!(
            cache
                .get(&context, leaf, &[ca.root().clone()], now)
                .is_none()
        );
        let same_content = Arc::new((*context).clone());
        assert!(cache.get(&same_content, leaf, &[], now).is_none());

        // Past the leaf's notAfter or before its notBefore: misses.
        let expiry = unix(peer.expires_at());
        assert!(
            cache.get(&context, leaf, &[], expiry).is_some(),
            "notAfter is inclusive"
        );
        assert!(cache.get(&context, leaf, &[], expiry + 1).is_none());
        assert!(cache.get(&context, leaf, &[], now - 86_400).is_none());
    }
}
