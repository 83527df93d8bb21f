//! Accepting gRPC clients that send a socket path as the HTTP/2 `:authority`.
//!
//! grpc-core 1.57 and newer (Python `grpcio`, hence py-spiffe) and grpc-java put the
//! percent-encoded socket path in `:authority` when they dial a Unix socket. The HTTP/2 stack
//! under tonic (h2) rejects that with `PROTOCOL_ERROR` before any handler runs, while SPIRE
//! accepts it. Each Unix connection therefore passes through a shim: it decodes the client's
//! HPACK header blocks and re-encodes them, with `:authority: localhost` where the value is not
//! a valid authority. Everything else is forwarded byte for byte.
//!
//! This file is the shim's logic without I/O: [`ClientRewriter`] is fed the bytes the client
//! sends and yields what the server receives. The connection code drives it, and so does
//! [`rewrite_client_bytes`] for fuzzing, so both run exactly the same parsing, caps and
//! rewriting. The client controls all of it, so everything is capped before it is buffered:
//! - a frame is at most 16 KiB ([`MAX_FRAME`], the `SETTINGS_MAX_FRAME_SIZE` the server
//!   advertises; larger frames are refused as soon as their header arrives);
//! - a header block (HEADERS and its CONTINUATION frames) is at most [`MAX_BLOCK`] encoded
//!   bytes in at most [`MAX_CONTINUATIONS`] CONTINUATION frames;
//! - its decoding is bounded as [`super::hpack`] describes (4096-byte dynamic table, 16 KiB
//!   header list).
//!
//! Anything malformed or over a cap is an error, and the connection that sent it is closed.

use std::io;

use super::hpack::{BoundedDecoder, HpackError, MAX_HEADER_LIST_SIZE};

/// The client connection preface (RFC 7540 §3.5).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame a client may send: the HTTP/2 default `SETTINGS_MAX_FRAME_SIZE`, which
/// the server behind the shim (hyper, under tonic) advertises and never raises here.
pub(crate) const MAX_FRAME: usize = 16_384;
/// The largest encoded header block: twice the decoded list cap leaves room for any honest
/// encoding of a list that fits the cap.
pub(crate) const MAX_BLOCK: usize = 2 * MAX_HEADER_LIST_SIZE;
/// The most CONTINUATION frames after one HEADERS frame (a flood of empty ones costs nothing to
/// send and is refused).
pub(crate) const MAX_CONTINUATIONS: usize = 16;
/// What replaces an invalid `:authority`.
const LOCALHOST: &[u8] = b"localhost";

/// Why the shim closed a connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RewriteError {
    /// The first 24 bytes were not the HTTP/2 client preface.
    #[error("the client did not send the HTTP/2 connection preface")]
    Preface,
    /// A frame longer than the server accepts.
    #[error("HTTP/2 frame of {0} bytes exceeds the {MAX_FRAME} advertised")]
    FrameTooLarge(usize),
    /// A HEADERS frame whose padding or priority fields do not fit.
    #[error("malformed HEADERS frame on stream {0}")]
    MalformedHeaders(u32),
    /// Another frame inside a header block.
    #[error("frame of type {kind:#x} on stream {stream} inside the header block of stream {block}")]
    Interleaved {
        /// The frame type.
        kind: u8,
        /// The frame's stream.
        stream: u32,
        /// The stream of the open header block.
        block: u32,
    },
    /// CONTINUATION with no header block open.
    #[error("CONTINUATION frame on stream {0} without an open header block")]
    StrayContinuation(u32),
    /// A header block over [`MAX_BLOCK`].
    #[error("header block of stream {0} exceeds {MAX_BLOCK} bytes")]
    BlockTooLarge(u32),
    /// A header block in too many frames.
    #[error("header block of stream {0} has more than {MAX_CONTINUATIONS} CONTINUATION frames")]
    TooManyContinuations(u32),
    /// A header block that does not decode, or decodes over a cap.
    #[error("header block of stream {stream}: {source}")]
    Hpack {
        /// The stream.
        stream: u32,
        /// What was wrong.
        source: HpackError,
    },
    /// The client stopped sending inside the preface, a frame or a header block.
    #[error("the client stopped sending in the middle of a frame or header block")]
    Truncated,
}

impl RewriteError {
    /// Whether the client sent something malformed or hostile (not merely left early).
    pub(crate) fn is_malformed(&self) -> bool {
        !matches!(self, Self::Truncated)
    }
}

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    continuations: usize,
}

/// The client-to-server half of the shim, without I/O: feed it what the client sends, forward
/// what it yields. After an error it must not be fed again (the connection closes).
pub(crate) struct ClientRewriter {
    preface_done: bool,
    /// Bytes received and not yet forwarded: at most an incomplete preface or frame.
    buffer: Vec<u8>,
    decoder: BoundedDecoder,
    encoder: fluke_hpack::Encoder<'static>,
    pending: Option<PendingBlock>,
}

impl ClientRewriter {
    /// A rewriter at the start of a connection.
    pub(crate) fn new() -> Self {
        Self {
            preface_done: false,
            buffer: Vec::new(),
            decoder: BoundedDecoder::new(),
            encoder: fluke_hpack::Encoder::new(),
            pending: None,
        }
    }

    /// Takes the next bytes from the client and appends to `out` what the server must receive.
    ///
    /// # Errors
    /// [`RewriteError`] when the client sent something malformed or over a cap.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        self.buffer.extend_from_slice(input);
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = self.process(&buffer, out);
        if let Ok(consumed) = result {
            buffer.drain(..consumed);
        }
        self.buffer = buffer;
        result.map(|_| ())
    }

    /// The client closed its side: fine at a frame boundary outside a header block.
    ///
    /// # Errors
    /// [`RewriteError::Truncated`] otherwise.
    pub(crate) fn finish(&self) -> Result<(), RewriteError> {
        if self.buffer.is_empty() && self.pending.is_none() {
            Ok(())
        } else {
            Err(RewriteError::Truncated)
        }
    }

    /// Forwards every complete part of `input`; returns how many bytes that used.
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RewriteError> {
        let mut at = 0;
        if !self.preface_done {
            let seen = input.len().min(PREFACE.len());
            if input[..seen] != PREFACE[..seen] {
                return Err(RewriteError::Preface);
            }
            if seen < PREFACE.len() {
                return Ok(0);
            }
            out.extend_from_slice(PREFACE);
            self.preface_done = true;
            at = PREFACE.len();
        }
        while let Some(header) = input.get(at..at + FRAME_HEADER_LEN) {
            let len =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            if len > MAX_FRAME {
                return Err(RewriteError::FrameTooLarge(len));
            }
            let end = at + FRAME_HEADER_LEN + len;
            let Some(payload) = input.get(at + FRAME_HEADER_LEN..end) else {
                break;
            };
            self.frame(header, payload, out)?;
            at = end;
        }
        Ok(at)
    }

    /// One complete frame: forwarded as is, or gathered into a header block.
    fn frame(
        &mut self,
        header: &[u8],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let (kind, flags) = (header[3], header[4]);
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let block = match (kind, self.pending.take()) {
            (HEADERS, None) => {
                let (priority, fragment) = headers_payload(flags, payload)
                    .ok_or(RewriteError::MalformedHeaders(stream_id))?;
                PendingBlock {
                    stream_id,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                    continuations: 0,
                }
            }
            (CONTINUATION, Some(mut block)) if block.stream_id == stream_id => {
                block.continuations += 1;
                if block.continuations > MAX_CONTINUATIONS {
                    return Err(RewriteError::TooManyContinuations(stream_id));
                }
                if block.fragment.len() + payload.len() > MAX_BLOCK {
                    return Err(RewriteError::BlockTooLarge(stream_id));
                }
                block.fragment.extend_from_slice(payload);
                block
            }
            (CONTINUATION, None) => return Err(RewriteError::StrayContinuation(stream_id)),
            (kind, Some(block)) => {
                return Err(RewriteError::Interleaved {
                    kind,
                    stream: stream_id,
                    block: block.stream_id,
                });
            }
            (_, None) => {
                out.extend_from_slice(header);
                out.extend_from_slice(payload);
                return Ok(());
            }
        };
        if flags & END_HEADERS == 0 {
            self.pending = Some(block);
            return Ok(());
        }
        let headers =
            self.decoder
                .decode(&block.fragment)
                .map_err(|source| RewriteError::Hpack {
                    stream: block.stream_id,
                    source,
                })?;
        let encoded = self.encoder.encode(headers.iter().map(|(name, value)| {
            let value: &[u8] = if name.as_slice() == b":authority" && !is_valid_authority(value) {
                LOCALHOST
            } else {
                value
            };
            (name.as_slice(), value)
        }));
        header_frames(&block, &encoded, out);
        Ok(())
    }
}

/// For fuzzing: runs the shim's client-to-server rewriting over a whole byte stream (preface included).
///
/// It feeds `input` to the same state machine that each live Unix connection goes through and
/// returns what the server would receive.
///
/// # Errors
/// `InvalidData` when the live shim would close the connection.
#[doc(hidden)]
pub fn rewrite_client_bytes(input: &[u8]) -> Result<Vec<u8>, io::Error> {
    let mut rewriter = ClientRewriter::new();
    let mut out = Vec::new();
    rewriter
        .feed(input, &mut out)
        .and_then(|()| rewriter.finish())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(out)
}

/// Splits a HEADERS payload into its priority fields and the header block fragment.
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&length, after) = rest.split_first()?;
        pad = usize::from(length);
        rest = after;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (fields, after) = rest.split_at_checked(5)?;
        priority = Some(fields.try_into().ok()?);
        rest = after;
    }
    let end = rest.len().checked_sub(pad)?;
    Some((priority, &rest[..end]))
}

/// Appends a HEADERS frame (and CONTINUATION frames when needed) carrying `encoded`.
fn header_frames(block: &PendingBlock, encoded: &[u8], out: &mut Vec<u8>) {
    let mut first = Vec::with_capacity(5 + encoded.len().min(MAX_FRAME));
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if let Some(priority) = block.priority {
        first.extend_from_slice(&priority);
        flags |= PRIORITY;
    }
    let room = MAX_FRAME - first.len();
    let (head, mut tail) = encoded.split_at(encoded.len().min(room));
    first.extend_from_slice(head);
    let mut push = |kind: u8, flags: u8, payload: &[u8]| {
        let len = payload.len();
        out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        out.extend_from_slice(&block.stream_id.to_be_bytes());
        out.extend_from_slice(payload);
    };
    push(
        HEADERS,
        flags | if tail.is_empty() { END_HEADERS } else { 0 },
        &first,
    );
    while !tail.is_empty() {
        let (chunk, rest) = tail.split_at(tail.len().min(MAX_FRAME));
        tail = rest;
        push(
            CONTINUATION,
            if tail.is_empty() { END_HEADERS } else { 0 },
            chunk,
        );
    }
}

fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One frame.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn run(input: &[u8]) -> Vec<u8> {
        rewrite_client_bytes(input).unwrap()
    }

    /// What the rewriter refuses `input` with.
    fn refusal(input: &[u8]) -> RewriteError {
        let mut rewriter = ClientRewriter::new();
        let mut out = Vec::new();
        match rewriter
            .feed(input, &mut out)
            .and_then(|()| rewriter.finish())
        {
            Ok(()) => panic!("accepted"),
            Err(e) => e,
        }
    }

    fn decode_headers(output: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut at = PREFACE.len();
        let mut block = Vec::new();
        while at < output.len() {
            let len = usize::from(output[at]) << 16
                | usize::from(output[at + 1]) << 8
                | usize::from(output[at + 2]);
            if output[at + 3] == HEADERS || output[at + 3] == CONTINUATION {
                block
                    .extend_from_slice(&output[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len]);
            }
            at += FRAME_HEADER_LEN + len;
        }
        fluke_hpack::Decoder::new().decode(&block).unwrap()
    }

    fn preface() -> Vec<u8> {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, b""));
        input
    }

    fn request_with_authority(authority: &[u8], flags: u8, prefix: &[u8]) -> Vec<u8> {
        let mut block = fluke_hpack::Encoder::new().encode([
            (&b":method"[..], &b"POST"[..]),
            (b":authority", authority),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
        ]);
        let mut payload = prefix.to_vec();
        payload.append(&mut block);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, flags | END_HEADERS, 1, &payload));
        input
    }

    #[test]
    fn replaces_a_socket_path_authority() {
        let output = run(&request_with_authority(b"tmp%2Fagent.sock", 0, b""));
        let headers = decode_headers(&output);
        assert!(
            headers.contains(&(b":authority".to_vec(), b"localhost".to_vec())),
            "{headers:?}"
        );
        assert!(headers.contains(&(
            b":path".to_vec(),
            b"/SpiffeWorkloadAPI/FetchX509SVID".to_vec()
        )));
    }

    #[test]
    fn keeps_a_valid_authority_and_other_frames() {
        let mut input = request_with_authority(b"localhost:8081", 0, b"");
        let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\0");
        input.extend_from_slice(&data);
        let output = run(&input);
        assert!(
            decode_headers(&output).contains(&(b":authority".to_vec(), b"localhost:8081".to_vec()))
        );
        assert!(output.ends_with(&data));
    }

    #[test]
    fn strips_padding_and_keeps_priority() {
        // pad length 2, then 5 priority bytes, then the block, then 2 bytes of padding
        let mut input =
            request_with_authority(b"%2Fa.sock", PADDED | PRIORITY, &[2, 0, 0, 0, 3, 15]);
        input.extend_from_slice(&[0, 0]);
        let len = input.len() - PREFACE.len() - FRAME_HEADER_LEN;
        input[PREFACE.len()..PREFACE.len() + 3].copy_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
        ]);
        let output = run(&input);
        let at = PREFACE.len();
        assert_eq!(output[at + 4] & PRIORITY, PRIORITY);
        assert_eq!(output[at + 4] & PADDED, 0);
        assert_eq!(
            &output[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + 5],
            &[0, 0, 0, 3, 15]
        );
    }

    #[test]
    fn splits_large_blocks_into_continuations() {
        let block = PendingBlock {
            stream_id: 3,
            end_stream: true,
            priority: None,
            fragment: Vec::new(),
            continuations: 0,
        };
        let encoded = vec![7u8; MAX_FRAME * 2 + 10];
        let mut out = Vec::new();
        header_frames(&block, &encoded, &mut out);
        assert_eq!(out[3], HEADERS);
        assert_eq!(out[4], END_STREAM);
        let second = FRAME_HEADER_LEN + MAX_FRAME;
        assert_eq!(out[second + 3], CONTINUATION);
        assert_eq!(out[second + 4], 0);
        let third = second + FRAME_HEADER_LEN + MAX_FRAME;
        assert_eq!(
            (out[third + 3], out[third + 4]),
            (CONTINUATION, END_HEADERS)
        );
        assert_eq!(out.len(), 3 * FRAME_HEADER_LEN + encoded.len());
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_output() {
        let mut input = request_with_authority(b"%2Fa.sock", 0, b"");
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        let whole = run(&input);
        let mut rewriter = ClientRewriter::new();
        let mut out = Vec::new();
        for byte in &input {
            rewriter.feed(&[*byte], &mut out).unwrap();
        }
        rewriter.finish().unwrap();
        assert_eq!(out, whole);
    }

    #[test]
    fn the_incomplete_size_update_block_is_refused_without_a_panic() {
        let mut input = preface();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0x3f]));
        let error = refusal(&input);
        assert!(
            matches!(
                error,
                RewriteError::Hpack {
                    stream: 1,
                    source: HpackError::TruncatedInteger(0)
                }
            ),
            "{error}"
        );
        assert!(error.is_malformed());
        assert_eq!(
            rewrite_client_bytes(&input).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn the_hpack_bomb_is_refused() {
        // a size update to 1 MiB, then a 1 MiB literal: the first frame is already too large
        let mut block = vec![0x3f, 0xe1, 0xff, 0x3f, 0x40, 0x01, b'x'];
        block.extend(fluke_hpack::encoder::encode_integer(1 << 20, 7));
        block.extend(vec![b'a'; 1 << 20]);
        let mut input = preface();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        assert!(matches!(refusal(&input), RewriteError::FrameTooLarge(_)));
        // spread over CONTINUATION frames of legal size: the block cap stops it
        let mut input = preface();
        let mut chunks = block.chunks(MAX_FRAME);
        input.extend(frame(HEADERS, 0, 1, chunks.next().unwrap()));
        for chunk in chunks {
            input.extend(frame(CONTINUATION, 0, 1, chunk));
        }
        assert!(matches!(refusal(&input), RewriteError::BlockTooLarge(1)));
        // the largest entry the table holds, then thousands of references to it
        let mut input = preface();
        let mut entry = vec![0x40, 0x05];
        entry.extend_from_slice(b"x-big");
        entry.extend(fluke_hpack::encoder::encode_integer(4000, 7));
        entry.extend(vec![b'a'; 4000]);
        input.extend(frame(HEADERS, END_HEADERS, 1, &entry));
        input.extend(frame(HEADERS, END_HEADERS, 3, &[0x80 | 62; 3000]));
        let error = refusal(&input);
        assert!(
            matches!(
                error,
                RewriteError::Hpack {
                    stream: 3,
                    source: HpackError::TooManyFields
                }
            ),
            "{error}"
        );
        // and a few hundred: the list cap
        let mut input = preface();
        input.extend(frame(HEADERS, END_HEADERS, 1, &entry));
        input.extend(frame(HEADERS, END_HEADERS, 3, &[0x80 | 62; 300]));
        assert!(matches!(
            refusal(&input),
            RewriteError::Hpack {
                source: HpackError::ListTooLarge(_),
                ..
            }
        ));
    }

    #[test]
    fn a_block_in_legal_continuations_passes() {
        let value = vec![b'v'; 6000];
        let block = fluke_hpack::Encoder::new().encode([
            (&b":method"[..], &b"POST"[..]),
            (b"x-long", value.as_slice()),
        ]);
        let mut input = preface();
        let mut chunks = block.chunks(1000);
        let first = chunks.next().unwrap();
        input.extend(frame(HEADERS, 0, 1, first));
        let rest: Vec<&[u8]> = chunks.collect();
        for (i, chunk) in rest.iter().enumerate() {
            let flags = if i + 1 == rest.len() { END_HEADERS } else { 0 };
            input.extend(frame(CONTINUATION, flags, 1, chunk));
        }
        assert!(rest.len() <= MAX_CONTINUATIONS);
        let headers = decode_headers(&run(&input));
        assert!(headers.contains(&(b"x-long".to_vec(), value)));
    }

    #[test]
    fn continuation_floods_and_interleaving_are_refused() {
        let mut input = preface();
        input.extend(frame(HEADERS, 0, 1, &[0x82]));
        for _ in 0..=MAX_CONTINUATIONS {
            input.extend(frame(CONTINUATION, 0, 1, b""));
        }
        assert!(matches!(
            refusal(&input),
            RewriteError::TooManyContinuations(1)
        ));
        let mut input = preface();
        input.extend(frame(HEADERS, 0, 1, &[0x82]));
        input.extend(frame(0x0, 0, 1, b""));
        assert!(matches!(
            refusal(&input),
            RewriteError::Interleaved { kind: 0, .. }
        ));
        let mut input = preface();
        input.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
        assert!(matches!(
            refusal(&input),
            RewriteError::StrayContinuation(1)
        ));
    }

    #[test]
    fn bad_prefaces_oversized_frames_and_truncation() {
        assert!(matches!(
            refusal(b"GET / HTTP/1.1\r\n"),
            RewriteError::Preface
        ));
        let mut input = preface();
        input.extend_from_slice(&[0x00, 0x40, 0x01, 0x0, 0, 0, 0, 0, 1]);
        assert!(matches!(
            refusal(&input),
            RewriteError::FrameTooLarge(16_385)
        ));
        let truncated = &preface()[..30];
        let error = refusal(truncated);
        assert!(matches!(error, RewriteError::Truncated));
        assert!(!error.is_malformed());
        // a preface alone is a valid (if short) connection
        assert_eq!(run(PREFACE), PREFACE);
    }

    #[test]
    fn malformed_headers_frames() {
        let mut input = preface();
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82]));
        assert!(matches!(refusal(&input), RewriteError::MalformedHeaders(1)));
        let mut input = preface();
        input.extend(frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0]));
        assert!(matches!(refusal(&input), RewriteError::MalformedHeaders(1)));
    }

    /// A small, bounded, deterministic stand-in for the fuzz target: mutated valid streams never
    /// panic, and whatever is accepted is a stream of whole frames.
    #[test]
    fn mutated_streams_never_panic() {
        let mut seeds = vec![
            request_with_authority(b"tmp%2Fagent.sock", 0, b""),
            request_with_authority(b"%2Fa.sock", PADDED | PRIORITY, &[2, 0, 0, 0, 3, 15, 0, 0]),
        ];
        let mut with_table = preface();
        with_table.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &[0x3f, 0xe1, 0x1f, 0x40, 1, b'x', 1, b'y'],
        ));
        with_table.extend(frame(HEADERS, 0, 3, &[0xbe, 0xbe]));
        with_table.extend(frame(CONTINUATION, END_HEADERS, 3, &[0x82]));
        seeds.push(with_table);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for round in 0..20_000 {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..=(random() % 4) {
                let at = (random() as usize) % input.len();
                match random() % 3 {
                    0 => input[at] = random() as u8,
                    1 => input.truncate(at.max(1)),
                    _ => input.insert(at, random() as u8),
                }
            }
            if let Ok(out) = rewrite_client_bytes(&input) {
                accepted += 1;
                let mut at = PREFACE.len();
                while at < out.len() {
                    let len = usize::from(out[at]) << 16
                        | usize::from(out[at + 1]) << 8
                        | usize::from(out[at + 2]);
                    at += FRAME_HEADER_LEN + len;
                }
                assert_eq!(at, out.len(), "round {round}");
            }
        }
        assert!(
            accepted > 100,
            "the mutations still reach the rewriting: {accepted}"
        );
    }
}
