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
//! The same set-associative [`Table`] as the verification cache, of the same size: no lock on
//! the handshake path, and a peer that reconnects finds its entry in place (no allocation),
//! also among 1,000 peers taking turns. Memory is bounded: one leaf and its ID per entry, at
//! most [`MAX_CACHED_ENTRY_BYTES`] of them (a larger leaf is not kept: its signature check
//! reads the ID from the leaf) plus a header of at most [`ENTRY_HEADER_BYTES`]; only leaves
//! that verified and were authorized get in. An entry holds the exact leaf bytes, so a lookup
//! never returns the ID of another certificate. A miss (the entry evicted in between) costs
//! the parse, nothing else.

use std::sync::Arc;

use super::cache::{ENTRY_HEADER_BYTES, MAX_CACHED_ENTRY_BYTES, id_bytes};
use super::table::Table;
use crate::spiffe_id::SpiffeId;

/// What a leaf was authorized as: a SPIFFE ID, or the server name the web-PKI verifier
/// checked; its text counts against the entry's bound.
pub(crate) trait AuthorizedId: Clone + PartialEq {
    /// The bytes of text the ID holds.
    fn text_bytes(&self) -> usize;
}

impl AuthorizedId for SpiffeId {
    fn text_bytes(&self) -> usize {
        id_bytes(self)
    }
}

impl AuthorizedId for String {
    fn text_bytes(&self) -> usize {
        self.len()
    }
}

/// A leaf that verified, and the ID it was authorized as (a SPIFFE ID; the server name for the
/// web-PKI verifier).
#[derive(Debug)]
pub(crate) struct Authorized<T = SpiffeId> {
    leaf: Box<[u8]>,
    id: T,
}

const _: () = assert!(2 * size_of::<usize>() + size_of::<Authorized>() <= ENTRY_HEADER_BYTES);
const _: () =
    assert!(2 * size_of::<usize>() + size_of::<Authorized<String>>() <= ENTRY_HEADER_BYTES);

impl<T> Authorized<T> {
    /// The authorized ID.
    pub(crate) fn id(&self) -> &T {
        &self.id
    }
}

/// The last authorized leaves.
#[derive(Debug)]
pub(crate) struct AuthorizedLeaves<T = SpiffeId> {
    table: Table<Authorized<T>>,
}

impl<T: AuthorizedId> AuthorizedLeaves<T> {
    /// A table of `entries` leaves (rounded up to a multiple of 8).
    pub(crate) fn new(entries: usize) -> Self {
        Self {
            table: Table::new(entries),
        }
    }

    /// Remembers that `leaf` verified and was authorized as `id`. A peer that reconnects with
    /// the same leaf finds it in place: no allocation.
    pub(crate) fn insert(&self, leaf: &[u8], id: &T) {
        let key = self.table.key(leaf);
        if self
            .table
            .contains(key, |entry| *entry.leaf == *leaf && entry.id == *id)
            || leaf.len() + id.text_bytes() > MAX_CACHED_ENTRY_BYTES
        {
            return;
        }
        let entry = Authorized {
            leaf: leaf.into(),
            id: id.clone(),
        };
        self.table
            .insert(key, entry, |held| *held.leaf == *leaf, |_| false);
    }

    /// The ID `leaf` was authorized as, if the table still holds it.
    pub(crate) fn get(&self, leaf: &[u8]) -> Option<Arc<Authorized<T>>> {
        self.table
            .get(self.table.key(leaf), |entry| *entry.leaf == *leaf)
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
        let leaves = AuthorizedLeaves::new(64);
        assert!(leaves.get(b"leaf a").is_none(), "empty");
        leaves.insert(b"leaf a", &id("a"));
        assert_eq!(leaves.get(b"leaf a").unwrap().id(), &id("a"));
        assert!(leaves.get(b"leaf b").is_none());
        assert!(leaves.get(b"leaf a ").is_none());

        // The same leaf again keeps the entry; the table bounded.
        let before = leaves.get(b"leaf a").unwrap();
        leaves.insert(b"leaf a", &id("a"));
        assert!(Arc::ptr_eq(&before, &leaves.get(b"leaf a").unwrap()));
        for n in 0..256 {
            leaves.insert(format!("leaf {n}").as_bytes(), &id(&n.to_string()));
        }
        assert!(leaves.table.len() <= 64);
        for n in 0..256 {
            let leaf = format!("leaf {n}");
            if let Some(entry) = leaves.get(leaf.as_bytes()) {
                assert_eq!(entry.id(), &id(&n.to_string()), "never another leaf's ID");
            }
        }
    }

    #[test]
    fn a_thousand_peers_taking_turns_find_their_entries_in_place() {
        let leaves = AuthorizedLeaves::new(crate::tls::DEFAULT_VERIFICATION_CACHE_ENTRIES);
        let peers: Vec<(Vec<u8>, SpiffeId)> = (0..1000)
            .map(|n| (format!("leaf {n}").into_bytes(), id(&n.to_string())))
            .collect();
        for (leaf, id) in &peers {
            leaves.insert(leaf, id);
        }
        let first: Vec<_> = peers
            .iter()
            .map(|(leaf, _)| leaves.get(leaf).unwrap())
            .collect();
        for (held, (leaf, id)) in first.iter().zip(&peers) {
            leaves.insert(leaf, id);
            assert!(Arc::ptr_eq(held, &leaves.get(leaf).unwrap()), "reallocated");
        }
    }

    #[test]
    fn leaves_above_the_bound_are_not_kept() {
        let leaves = AuthorizedLeaves::new(8);
        let big = vec![0x30; MAX_CACHED_ENTRY_BYTES];
        leaves.insert(&big, &id("big"));
        assert!(leaves.get(&big).is_none());
    }
}
