//! Bounded HPACK decoding of a client's header blocks, for the `:authority` shim.
//!
//! A client controls every byte the shim decodes, so decoding is capped the way an HTTP/2
//! server caps it:
//! - the dynamic table never grows beyond [`MAX_TABLE_SIZE`] (4096, the HTTP/2 default that
//!   the server behind the shim advertises): a table size update above it is an error;
//! - a size update is only accepted at the start of a block, as RFC 7541 §4.2 requires;
//! - the decoded header list is at most [`MAX_HEADER_LIST_SIZE`] (16 KiB, counted as name +
//!   value + 32 per field, RFC 7540 §6.5.2, the limit hyper advertises), so a small table entry
//!   referenced thousands of times cannot expand into megabytes;
//! - nothing is copied once the list is over its cap.
//!
//! The decoder is `fluke-hpack`'s, which keeps the HPACK state between blocks and returns
//! errors for malformed input, with one exception found by reading its source (0.3.1): a
//! dynamic table size update whose integer is incomplete or too long reaches an `unwrap` and
//! panics (a one-byte block `0x3f` is enough). Every block is therefore walked first by
//! [`check_structure`], which checks each representation's integers and string lengths, so the
//! decoder only ever sees blocks whose size updates are complete and within the cap. The rest of
//! its indexing is bounds-checked or guarded (audited for 0.3.1; the fuzz target over
//! `rewrite_client_bytes` keeps checking). The crates that could replace it were no better at
//! the time: `hpack` (which `fluke-hpack` forked) has the same `unwrap`, and h2's decoder, the
//! one HTTP/2 stack under tonic, is private.

use std::borrow::Cow;

/// The largest HPACK dynamic table a client may use: the HTTP/2 default
/// (`SETTINGS_HEADER_TABLE_SIZE`), which the server behind the shim advertises.
pub(crate) const MAX_TABLE_SIZE: usize = 4096;

/// The largest decoded header list accepted: name + value + 32 bytes per field.
pub(crate) const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// The per-field overhead in the header list size (RFC 7540 §6.5.2).
const FIELD_OVERHEAD: usize = 32;

/// More fields than this cannot fit in [`MAX_HEADER_LIST_SIZE`].
const MAX_FIELDS: usize = MAX_HEADER_LIST_SIZE / FIELD_OVERHEAD;

/// An HPACK integer takes at most this many bytes (prefix byte included); longer encodings
/// are refused, as `fluke-hpack` refuses them.
const MAX_INTEGER_BYTES: usize = 5;

/// Why a header block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HpackError {
    /// An integer ran past the end of the block.
    #[error("incomplete HPACK integer at byte {0}")]
    TruncatedInteger(usize),
    /// An integer used more bytes than any valid value needs.
    #[error("HPACK integer at byte {0} is longer than {MAX_INTEGER_BYTES} bytes")]
    IntegerTooLong(usize),
    /// A string claimed more bytes than the block has.
    #[error("HPACK string at byte {at} claims {claimed} bytes, {left} left in the block")]
    TruncatedString {
        /// Where the string starts.
        at: usize,
        /// The length it claims.
        claimed: usize,
        /// The bytes left.
        left: usize,
    },
    /// A dynamic table size update above the advertised table size.
    #[error("dynamic table size update to {0} bytes exceeds the {MAX_TABLE_SIZE} advertised")]
    TableSizeTooLarge(usize),
    /// A dynamic table size update after a header field.
    #[error("dynamic table size update at byte {0} follows a header field")]
    LateTableSizeUpdate(usize),
    /// More fields than the header list cap allows.
    #[error("header block has more than {MAX_FIELDS} fields")]
    TooManyFields,
    /// The decoded header list is over its cap.
    #[error("decoded header list of {0} bytes exceeds {MAX_HEADER_LIST_SIZE}")]
    ListTooLarge(usize),
    /// The decoder refused the block.
    #[error("HPACK decoding failed: {0}")]
    Decode(String),
}

/// Reads an HPACK integer with a `prefix`-bit prefix at `at`; returns it and the bytes used.
fn integer(block: &[u8], at: usize, prefix: u32) -> Result<(usize, usize), HpackError> {
    let first = *block.get(at).ok_or(HpackError::TruncatedInteger(at))?;
    let max_prefix = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value < max_prefix {
        return Ok((value, 1));
    }
    for used in 1..MAX_INTEGER_BYTES {
        let byte = *block
            .get(at + used)
            .ok_or(HpackError::TruncatedInteger(at))?;
        value += usize::from(byte & 0x7f) << (7 * (used - 1));
        if byte & 0x80 == 0 {
            return Ok((value, used + 1));
        }
    }
    Err(HpackError::IntegerTooLong(at))
}

/// Skips a string literal at `at`; returns the bytes it takes.
fn string(block: &[u8], at: usize) -> Result<usize, HpackError> {
    let (claimed, used) = integer(block, at, 7)?;
    let left = block.len() - (at + used);
    if claimed > left {
        return Err(HpackError::TruncatedString { at, claimed, left });
    }
    Ok(used + claimed)
}

/// Skips a literal field with a `prefix`-bit name index at `at`; returns the bytes it takes.
fn literal(block: &[u8], at: usize, prefix: u32) -> Result<usize, HpackError> {
    let (name_index, mut used) = integer(block, at, prefix)?;
    if name_index == 0 {
        used += string(block, at + used)?;
    }
    Ok(used + string(block, at + used)?)
}

/// Walks the representations of a block (RFC 7541 §6) without decoding them: every integer
/// complete and short, every string within the block, size updates only first and at most
/// [`MAX_TABLE_SIZE`], at most as many fields as the list cap can hold.
pub(crate) fn check_structure(block: &[u8]) -> Result<(), HpackError> {
    let mut at = 0;
    let mut fields = 0;
    while let Some(&first) = block.get(at) {
        let used = if first & 0x80 != 0 {
            integer(block, at, 7)?.1
        } else if first & 0x40 != 0 {
            literal(block, at, 6)?
        } else if first & 0x20 != 0 {
            if fields > 0 {
                return Err(HpackError::LateTableSizeUpdate(at));
            }
            let (size, used) = integer(block, at, 5)?;
            if size > MAX_TABLE_SIZE {
                return Err(HpackError::TableSizeTooLarge(size));
            }
            at += used;
            continue;
        } else {
            // literal without indexing (0000) or never indexed (0001): 4-bit name index
            literal(block, at, 4)?
        };
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(HpackError::TooManyFields);
        }
        at += used;
    }
    Ok(())
}

/// A decoded header field: name and value.
pub(crate) type Field = (Vec<u8>, Vec<u8>);

/// The decoder of one connection's client header blocks; its dynamic table lives as long as
/// the connection. After an error its state is undefined: the connection must close.
pub(crate) struct BoundedDecoder {
    decoder: fluke_hpack::Decoder<'static>,
}

impl BoundedDecoder {
    /// A decoder with an empty dynamic table of at most [`MAX_TABLE_SIZE`] bytes.
    pub(crate) fn new() -> Self {
        let mut decoder = fluke_hpack::Decoder::new();
        // the decoder starts at 4096 already; this makes it refuse any update above it
        decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
        Self { decoder }
    }

    /// Decodes one complete header block into its fields.
    ///
    /// # Errors
    /// [`HpackError`] when the block is malformed or over a cap.
    pub(crate) fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, HpackError> {
        check_structure(block)?;
        let mut fields = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(block, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                size = size.saturating_add(name.len() + value.len() + FIELD_OVERHEAD);
                if size <= MAX_HEADER_LIST_SIZE {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| HpackError::Decode(format!("{e:?}")))?;
        if size > MAX_HEADER_LIST_SIZE {
            return Err(HpackError::ListTooLarge(size));
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal with incremental indexing and a literal name.
    fn indexed_literal(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x40];
        for text in [name, value] {
            out.extend(fluke_hpack::encoder::encode_integer(text.len(), 7));
            out.extend_from_slice(text);
        }
        out
    }

    /// The first dynamic table entry (index 62), referenced `count` times.
    fn references(count: usize) -> Vec<u8> {
        vec![0x80 | 62; count]
    }

    #[test]
    fn integers() {
        assert_eq!(integer(&[10], 0, 5), Ok((10, 1)));
        assert_eq!(integer(&[31, 154, 10], 0, 5), Ok((1337, 3)));
        assert_eq!(integer(&[0x3f], 0, 5), Err(HpackError::TruncatedInteger(0)));
        assert_eq!(
            integer(&[0x3f, 0xff, 0xff, 0xff, 0xff, 0x01], 0, 5),
            Err(HpackError::IntegerTooLong(0))
        );
    }

    #[test]
    fn an_incomplete_size_update_is_an_error_not_a_panic() {
        for block in [
            &[0x3f][..],
            &[0x3f, 0xe1],
            &[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            let result = BoundedDecoder::new().decode(block);
            assert!(
                matches!(
                    result,
                    Err(HpackError::TruncatedInteger(0) | HpackError::IntegerTooLong(0))
                ),
                "{block:?}: {result:?}"
            );
        }
    }

    #[test]
    fn the_table_cannot_grow_beyond_4096() {
        // 0x3f 0xe1 0x1f: size update to 4096; 0x3f 0xe2 0x1f: to 4097
        let mut decoder = BoundedDecoder::new();
        assert_eq!(decoder.decode(&[0x3f, 0xe1, 0x1f, 0x82]).unwrap().len(), 1);
        assert_eq!(
            BoundedDecoder::new().decode(&[0x3f, 0xe2, 0x1f, 0x82]),
            Err(HpackError::TableSizeTooLarge(4097))
        );
        // one megabyte
        assert_eq!(
            BoundedDecoder::new().decode(&[0x3f, 0xe1, 0xff, 0x3f, 0x82]),
            Err(HpackError::TableSizeTooLarge(1 << 20))
        );
    }

    #[test]
    fn a_size_update_after_a_field_is_refused() {
        assert_eq!(
            BoundedDecoder::new().decode(&[0x82, 0x20]),
            Err(HpackError::LateTableSizeUpdate(1))
        );
    }

    #[test]
    fn a_referenced_entry_cannot_expand_past_the_list_cap() {
        let mut decoder = BoundedDecoder::new();
        let value = vec![b'a'; 4000];
        // good twin: the entry alone and then three references fit in 16 KiB
        assert_eq!(
            decoder.decode(&indexed_literal(b"x-big", &value)).unwrap()[0].1,
            value
        );
        assert_eq!(decoder.decode(&references(3)).unwrap().len(), 3);
        // the bomb: thousands of references
        let result = decoder.decode(&references(3000));
        assert!(
            matches!(result, Err(HpackError::TooManyFields)),
            "{result:?}"
        );
        let result = BoundedDecoder::new().decode(&{
            let mut block = indexed_literal(b"x-big", &value);
            block.extend(references(5));
            block
        });
        assert_eq!(result, Err(HpackError::ListTooLarge(6 * (5 + 4000 + 32))));
    }

    #[test]
    fn truncated_strings_are_refused() {
        assert_eq!(
            check_structure(&[0x40, 0x05, b'a']),
            Err(HpackError::TruncatedString {
                at: 1,
                claimed: 5,
                left: 1
            })
        );
        assert_eq!(
            check_structure(&[0x0f]),
            Err(HpackError::TruncatedInteger(0))
        );
    }

    #[test]
    fn a_normal_request_decodes() {
        let block = fluke_hpack::Encoder::new().encode([
            (&b":method"[..], &b"POST"[..]),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b"workload.spiffe.io", b"true"),
        ]);
        let fields = BoundedDecoder::new().decode(&block).unwrap();
        assert_eq!(fields.len(), 3);
        assert_eq!(
            fields[2],
            (b"workload.spiffe.io".to_vec(), b"true".to_vec())
        );
    }

    /// Why the walk exists: the decoder alone panics on the one-byte block, and lets a client
    /// grow the table to a megabyte and expand one entry many times.
    #[test]
    fn the_plain_decoder_is_what_the_caps_protect_against() {
        let panicked = std::panic::catch_unwind(|| {
            let _ = fluke_hpack::Decoder::new().decode(&[0x3f]);
        });
        assert!(panicked.is_err(), "fluke-hpack no longer panics on 0x3f");
        // a size update to 2 MiB
        let mut block = fluke_hpack::encoder::encode_integer(2 << 20, 5);
        block[0] |= 0x20;
        block.extend(indexed_literal(b"x", &vec![b'a'; 1 << 20]));
        block.extend(references(20));
        let expanded: usize = fluke_hpack::Decoder::new()
            .decode(&block)
            .unwrap()
            .iter()
            .map(|(_, value)| value.len())
            .sum();
        assert_eq!(expanded, 21 << 20, "a 1 MiB block expands to 21 MiB");
        assert_eq!(
            BoundedDecoder::new().decode(&block),
            Err(HpackError::TableSizeTooLarge(2 << 20))
        );
    }
}
