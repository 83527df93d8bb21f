//! Accepting gRPC clients that send a socket path as the HTTP/2 `:authority`.
//!
//! grpc-core 1.57 and newer (Python `grpcio`, hence py-spiffe) and grpc-java put the
//! percent-encoded socket path in `:authority` when they dial a Unix socket. The HTTP/2 stack
//! under tonic (h2) rejects that with `PROTOCOL_ERROR` before any handler runs, while SPIRE
//! accepts it. Each Unix connection therefore passes through this shim: it decodes the
//! client's HPACK header blocks and re-encodes them, with `:authority: localhost` where the
//! value is not a valid authority. Everything else is forwarded byte for byte; the socket's
//! peer credentials stay available to the service for attestation.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts.
const MAX_FRAME: usize = 16_384;
/// Refuse frames larger than this (h2's own limit is far lower by default).
const LARGEST_ACCEPTED_FRAME: usize = 1 << 20;
/// What replaces an invalid `:authority`.
const LOCALHOST: &[u8] = b"localhost";

/// A Unix connection seen through the shim; tonic serves it like the socket itself.
pub(crate) struct ShimmedStream {
    inner: DuplexStream,
    info: UdsConnectInfo,
}

impl Connected for ShimmedStream {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for ShimmedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ShimmedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Puts `client` behind the shim and returns what the server reads and writes instead.
pub(crate) fn shim(client: UnixStream) -> ShimmedStream {
    let info = UdsConnectInfo {
        peer_addr: client.peer_addr().ok().map(Arc::new),
        peer_cred: client.peer_cred().ok(),
    };
    let (server_side, shim_side) = tokio::io::duplex(64 * 1024);
    let (client_read, mut client_write) = client.into_split();
    let (mut shim_read, shim_write) = tokio::io::split(shim_side);
    tokio::spawn(async move {
        if let Err(error) = forward_client(client_read, shim_write).await {
            tracing::debug!(%error, "Workload API connection closed");
        }
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut shim_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    ShimmedStream {
        inner: server_side,
        info,
    }
}

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// Copies the client's preface and frames to the server, re-encoding header blocks.
async fn forward_client(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> io::Result<()> {
    let mut preface = [0u8; PREFACE_LEN];
    from.read_exact(&mut preface).await?;
    to.write_all(&preface).await?;
    let mut decoder = fluke_hpack::Decoder::new();
    let mut encoder = fluke_hpack::Encoder::new();
    let mut pending: Option<PendingBlock> = None;
    loop {
        let mut header = [0u8; FRAME_HEADER_LEN];
        match from.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        if len > LARGEST_ACCEPTED_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP/2 frame too large",
            ));
        }
        let (kind, flags) = (header[3], header[4]);
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        let block = match (kind, pending.take()) {
            (HEADERS, None) => {
                let (priority, fragment) = headers_payload(flags, &payload)?;
                PendingBlock {
                    stream_id,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    fragment: fragment.to_vec(),
                }
            }
            (CONTINUATION, Some(mut block)) if block.stream_id == stream_id => {
                block.fragment.extend_from_slice(&payload);
                block
            }
            (_, Some(_)) | (CONTINUATION, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "interleaved header block",
                ));
            }
            _ => {
                to.write_all(&header).await?;
                to.write_all(&payload).await?;
                continue;
            }
        };
        if flags & END_HEADERS == 0 {
            pending = Some(block);
            continue;
        }
        let headers = decoder
            .decode(&block.fragment)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("HPACK: {e:?}")))?;
        let encoded = encoder.encode(headers.iter().map(|(name, value)| {
            let value: &[u8] = if name.as_slice() == b":authority" && !is_valid_authority(value) {
                LOCALHOST
            } else {
                value
            };
            (name.as_slice(), value)
        }));
        to.write_all(&header_frames(&block, &encoded)).await?;
    }
}

/// Splits a HEADERS payload into its priority fields and the header block fragment.
fn headers_payload(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; 5]>, &[u8])> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "malformed HEADERS frame");
    let mut rest = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&length, after) = rest.split_first().ok_or_else(invalid)?;
        pad = usize::from(length);
        rest = after;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields: [u8; 5] = rest
            .get(..5)
            .and_then(|f| f.try_into().ok())
            .ok_or_else(invalid)?;
        priority = Some(fields);
        rest = &rest[5..];
    }
    let end = rest.len().checked_sub(pad).ok_or_else(invalid)?;
    Ok((priority, &rest[..end]))
}

/// A HEADERS frame (and CONTINUATION frames when needed) carrying `encoded`.
fn header_frames(block: &PendingBlock, encoded: &[u8]) -> Vec<u8> {
    let mut first = Vec::with_capacity(5 + encoded.len());
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if let Some(priority) = block.priority {
        first.extend_from_slice(&priority);
        flags |= PRIORITY;
    }
    let room = MAX_FRAME - first.len();
    let (head, mut tail) = encoded.split_at(encoded.len().min(room));
    first.extend_from_slice(head);
    let mut out = Vec::with_capacity(encoded.len() + 64);
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
    out
}

fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let block = PendingBlock {
            stream_id: stream,
            end_stream: false,
            priority: None,
            fragment: Vec::new(),
        };
        let mut out = header_frames(&block, payload);
        out[3] = kind;
        out[4] = flags;
        out
    }

    async fn run(input: Vec<u8>) -> Vec<u8> {
        let mut output = Vec::new();
        forward_client(input.as_slice(), &mut output).await.unwrap();
        output
    }

    fn decode_headers(output: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut at = PREFACE_LEN;
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

    fn request_with_authority(authority: &[u8], flags: u8, prefix: &[u8]) -> Vec<u8> {
        let mut block = fluke_hpack::Encoder::new().encode([
            (&b":method"[..], &b"POST"[..]),
            (b":authority", authority),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
        ]);
        let mut payload = prefix.to_vec();
        payload.append(&mut block);
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(frame(HEADERS, flags | END_HEADERS, 1, &payload));
        input
    }

    #[tokio::test]
    async fn replaces_a_socket_path_authority() {
        let output = run(request_with_authority(b"tmp%2Fagent.sock", 0, b"")).await;
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

    #[tokio::test]
    async fn keeps_a_valid_authority_and_other_frames() {
        let mut input = request_with_authority(b"localhost:8081", 0, b"");
        let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\0");
        input.extend_from_slice(&data);
        let output = run(input).await;
        assert!(
            decode_headers(&output).contains(&(b":authority".to_vec(), b"localhost:8081".to_vec()))
        );
        assert!(output.ends_with(&data));
    }

    #[tokio::test]
    async fn strips_padding_and_keeps_priority() {
        // pad length 2, then 5 priority bytes, then the block, then 2 bytes of padding
        let mut input =
            request_with_authority(b"%2Fa.sock", PADDED | PRIORITY, &[2, 0, 0, 0, 3, 15]);
        input.extend_from_slice(&[0, 0]);
        let len = input.len() - PREFACE_LEN - FRAME_HEADER_LEN;
        input[PREFACE_LEN..PREFACE_LEN + 3].copy_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
        ]);
        let output = run(input).await;
        assert_eq!(output[PREFACE_LEN + 4] & PRIORITY, PRIORITY);
        assert_eq!(output[PREFACE_LEN + 4] & PADDED, 0);
        assert_eq!(
            &output[PREFACE_LEN + FRAME_HEADER_LEN..PREFACE_LEN + FRAME_HEADER_LEN + 5],
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
        };
        let encoded = vec![7u8; MAX_FRAME * 2 + 10];
        let out = header_frames(&block, &encoded);
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
}
