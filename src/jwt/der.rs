//! The few DER encodings JWS needs to reach the crypto provider: an RSA public key from a
//! JWK's `n` and `e`, and an ECDSA signature from JWS's fixed-size `r || s` (RFC 7518 3.4).

/// A DER length.
fn push_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
        return;
    }
    let bytes = length.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// A DER element with this tag around `contents`.
fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    push_length(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes (leading zeros dropped, a zero
/// prepended when the top bit is set).
fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed = match magnitude.iter().position(|b| *b != 0) {
        Some(start) => &magnitude[start..],
        None => &[0][..],
    };
    let mut contents = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        contents.push(0);
    }
    contents.extend_from_slice(trimmed);
    element(0x02, &contents)
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017 A.1.1).
pub(crate) fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut contents = unsigned_integer(modulus);
    contents.extend(unsigned_integer(exponent));
    element(0x30, &contents)
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` from JWS's `r || s`; `None` unless
/// the signature is exactly twice the curve's field size.
pub(crate) fn ecdsa_signature(fixed: &[u8], field_bytes: usize) -> Option<Vec<u8>> {
    if fixed.len() != 2 * field_bytes {
        return None;
    }
    let (r, s) = fixed.split_at(field_bytes);
    let mut contents = unsigned_integer(r);
    contents.extend(unsigned_integer(s));
    Some(element(0x30, &contents))
}

/// JWS's `r || s` from an `Ecdsa-Sig-Value`, each padded to `field_bytes`; `None` for anything
/// else.
pub(crate) fn ecdsa_signature_fixed(der: &[u8], field_bytes: usize) -> Option<Vec<u8>> {
    let (tag, contents, rest) = split_element(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (r_tag, r, rest) = split_element(contents)?;
    let (s_tag, s, rest) = split_element(rest)?;
    if r_tag != 0x02 || s_tag != 0x02 || !rest.is_empty() {
        return None;
    }
    let mut fixed = Vec::with_capacity(2 * field_bytes);
    for value in [r, s] {
        let start = value.iter().position(|b| *b != 0).unwrap_or(value.len());
        let magnitude = &value[start..];
        if magnitude.len() > field_bytes {
            return None;
        }
        fixed.resize(fixed.len() + field_bytes - magnitude.len(), 0);
        fixed.extend_from_slice(magnitude);
    }
    Some(fixed)
}

/// (tag, contents, rest) of the first element; short and long lengths up to 2 bytes.
fn split_element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        0x82 => {
            let (len, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([len[0], len[1]])), rest)
        }
        _ => return None,
    };
    let (contents, rest) = rest.split_at_checked(length)?;
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_lengths() {
        assert_eq!(unsigned_integer(&[0, 0, 5]), [0x02, 1, 5]);
        assert_eq!(unsigned_integer(&[0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), [0x02, 1, 0]);
        let long = element(0x04, &[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn ecdsa_signatures_round_trip() {
        let mut fixed = vec![0u8; 64];
        fixed[0] = 0x80; // r needs a leading zero in DER
        fixed[40] = 1; // s has leading zeros to drop
        let der = ecdsa_signature(&fixed, 32).unwrap();
        assert_eq!(ecdsa_signature_fixed(&der, 32).unwrap(), fixed);
        assert!(ecdsa_signature(&fixed[..63], 32).is_none());
        assert!(ecdsa_signature_fixed(&der[..der.len() - 1], 32).is_none());
        // P-521: 66-byte halves, a 134-byte DER sequence needs a long length.
        let fixed = vec![0xffu8; 132];
        let der = ecdsa_signature(&fixed, 66).unwrap();
        assert_eq!(der[1], 0x81);
        assert_eq!(ecdsa_signature_fixed(&der, 66).unwrap(), fixed);
    }
}
