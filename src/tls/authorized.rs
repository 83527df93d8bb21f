//! The SPIFFE IDs a verifier authorized, by leaf certificate, handed from the certificate
//! check to the handshake signature check that records the decision.
//!
//! rustls checks the peer's chain (`verify_client_cert` / `verify_server_cert`) and then, in a
//! separate call, the peer's handshake signature made with the key of the same leaf. Only a
//! verified signature makes the decision take effect, so `accepted` is recorded there, and it
//! needs the peer's ID. Why a table rather than reading the ID from the leaf again, measured
//! (release build, a 533-byte dev-server SVID leaf): the re-read is a full X.509 parse, about
//! 4.7 µs per side and handshake, against about 0.15 µs for a lookup here (a keyed hash of the
//! leaf and one byte comparison). In `cargo bench --bench handshake` (medians of 7 interleaved
//! runs), `spiffe_mtls` took 232.3 µs before the change, 238.1 µs re-reading the leaf and
//! 232.7 µs with this table; `spiffe_mtls_uncached` 309.6, 318.9 and 312.6 µs. The
//! verification cache cannot serve here: it can be turned off, and it also holds chains that
//! were not authorized.
//!
//! Direct-mapped slots behind atomic pointers, as in the verification cache: no lock on the
//! handshake path, and the memory is bounded (one leaf and its ID per slot; only leaves that
//! verified and were authorized get in). A slot holds the exact leaf bytes, so a lookup never
//! returns the ID of another certificate. A miss (another peer's handshake took the slot in
//! between) costs the parse, nothing else.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::spiffe_id::SpiffeId;

const SLOTS: usize = 64;

/// A leaf that verified, and the ID it was authorized as (a SPIFFE ID; the server name for the
/// web-PKI verifier).
#[derive(Debug)]
pub(crate) struct Authorized<T = SpiffeId> {
    leaf: Box<[u8]>,
    id: T,
}

impl<T> Authorized<T> {
    /// The authorized ID.
    pub(crate) fn id(&self) -> &T {
        &self.id
    }
}

/// The last authorized leaves, one per slot.
#[derive(Debug)]
pub(crate) struct AuthorizedLeaves<T = SpiffeId> {
    slots: Box<[ArcSwapOption<Authorized<T>>]>,
    hasher: RandomState,
}

impl<T: Clone + PartialEq> AuthorizedLeaves<T> {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn slot(&self, leaf: &[u8]) -> &ArcSwapOption<Authorized<T>> {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(leaf);
        let index = usize::try_from(hasher.finish() % SLOTS as u64).unwrap_or(0);
        &self.slots[index]
    }

    /// Remembers that `leaf` verified and was authorized as `id`. A peer that reconnects with
    /// the same leaf finds it in place: no allocation.
    pub(crate) fn insert(&self, leaf: &[u8], id: &T) {
        let slot = self.slot(leaf);
        if slot
            .load()
            .as_ref()
            .is_some_and(|entry| *entry.leaf == *leaf && entry.id == *id)
        {
            return;
        }
        slot.store(Some(Arc::new(Authorized {
            leaf: leaf.into(),
            id: id.clone(),
        })));
    }

    /// The ID `leaf` was authorized as, if its slot still holds it.
    pub(crate) fn get(&self, leaf: &[u8]) -> Option<Arc<Authorized<T>>> {
        self.slot(leaf)
            .load_full()
            .filter(|entry| *entry.leaf == *leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str) -> SpiffeId {
        format!("spiffe://example.org/{path}").parse().unwrap()
    }

    #[test]
    fn gives_the_id_of_exactly_the_leaf_that_was_inserted() {
        let leaves = AuthorizedLeaves::new();
        assert!(leaves.get(b"leaf a").is_none(), "empty");
        leaves.insert(b"leaf a", &id("a"));
        assert_eq!(leaves.get(b"leaf a").unwrap().id(), &id("a"));
        assert!(leaves.get(b"leaf b").is_none());
        assert!(leaves.get(b"leaf a ").is_none());

        // The same leaf again keeps the entry; every slot bounded to one leaf.
        let before = leaves.get(b"leaf a").unwrap();
        leaves.insert(b"leaf a", &id("a"));
        assert!(Arc::ptr_eq(&before, &leaves.get(b"leaf a").unwrap()));
        for n in 0..(4 * SLOTS) {
            leaves.insert(format!("leaf {n}").as_bytes(), &id(&n.to_string()));
        }
        let held = leaves
            .slots
            .iter()
            .filter(|slot| slot.load().is_some())
            .count();
        assert!(held <= SLOTS);
        for n in 0..(4 * SLOTS) {
            let leaf = format!("leaf {n}");
            if let Some(entry) = leaves.get(leaf.as_bytes()) {
                assert_eq!(entry.id(), &id(&n.to_string()), "never another leaf's ID");
            }
        }
    }
}
