//! The PROXY protocol version 2 header sent to the target with `--proxy-protocol`
//! (<https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>).
//!
//! The header carries the command `PROXY`, the client's address and port as source and the
//! proxy's listening address as destination (`TCP over IPv4` or `TCP over IPv6`; `UNSPEC`,
//! with no addresses, when the proxy listens on a Unix socket), and one TLV:
//!
//! | Type | Value |
//! |---|---|
//! | `0xE0` ([`PP2_TYPE_SPIFFE_ID`]) | the client's verified SPIFFE ID, UTF-8, no terminator |
//!
//! `0xE0` is the first type of the range the specification keeps for custom use
//! (`PP2_TYPE_MIN_CUSTOM` .. `PP2_TYPE_MAX_CUSTOM`, 0xE0-0xEF). The header is written once,
//! before any byte of the client's.

use std::net::{IpAddr, SocketAddr};

/// The TLV type carrying the verified SPIFFE ID.
pub const PP2_TYPE_SPIFFE_ID: u8 = 0xE0;

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a client at `source` connected to `destination`, with the SPIFFE ID TLV.
pub fn header(
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    spiffe_id: &str,
) -> Vec<u8> {
    let mut addresses = Vec::with_capacity(36);
    let family = match (source, destination) {
        (Some(src), Some(dst)) => match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                addresses.extend_from_slice(&s.octets());
                addresses.extend_from_slice(&d.octets());
                addresses.extend_from_slice(&src.port().to_be_bytes());
                addresses.extend_from_slice(&dst.port().to_be_bytes());
                0x11
            }
            (s, d) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                addresses.extend_from_slice(&v6(s).octets());
                addresses.extend_from_slice(&v6(d).octets());
                addresses.extend_from_slice(&src.port().to_be_bytes());
                addresses.extend_from_slice(&dst.port().to_be_bytes());
                0x21
            }
        },
        _ => 0x00,
    };
    // An ID is at most 2048 bytes, so the lengths fit in u16; clamp anyway.
    let id = &spiffe_id.as_bytes()[..spiffe_id.len().min(4096)];
    let tlv_len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let length = u16::try_from(addresses.len() + 3 + id.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(16 + usize::from(length));
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    out.push(family);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&addresses);
    out.push(PP2_TYPE_SPIFFE_ID);
    out.extend_from_slice(&tlv_len.to_be_bytes());
    out.extend_from_slice(id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_layout() {
        let h = header(
            Some("10.0.0.1:40000".parse().unwrap()),
            Some("127.0.0.1:8443".parse().unwrap()),
            "spiffe://example.org/a",
        );
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], 0x21);
        assert_eq!(h[13], 0x11);
        let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
        assert_eq!(h.len(), 16 + len);
        assert_eq!(&h[16..20], &[10, 0, 0, 1]);
        assert_eq!(&h[20..24], &[127, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([h[24], h[25]]), 40000);
        assert_eq!(u16::from_be_bytes([h[26], h[27]]), 8443);
        assert_eq!(h[28], PP2_TYPE_SPIFFE_ID);
        assert_eq!(usize::from(u16::from_be_bytes([h[29], h[30]])), 22);
        assert_eq!(&h[31..], b"spiffe://example.org/a");
    }

    #[test]
    fn mixed_and_unknown_families() {
        let h = header(
            Some("127.0.0.1:1".parse().unwrap()),
            Some("[::1]:2".parse().unwrap()),
            "spiffe://e/x",
        );
        assert_eq!(h[13], 0x21);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 36 + 3 + 12);
        let h = header(None, None, "spiffe://e/x");
        assert_eq!(h[13], 0x00);
        assert_eq!(u16::from_be_bytes([h[14], h[15]]), 3 + 12);
    }
}
