//! Just enough DER to cut a certificate and a public key into the pieces a signature check needs.
//!
//! x509-parser decodes the fields; what it does not hand out as raw bytes (the encoded
//! signature algorithm identifier, the key bits) is cut out here, so signatures can be checked
//! by the `rustls-pki-types` algorithms of whichever crypto provider the caller chose.

/// Why bytes are not the DER a certificate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) &'static str);

const SEQUENCE: u8 = 0x30;
const BIT_STRING: u8 = 0x03;

/// One tag-length-value and what follows it.
#[derive(Debug, PartialEq, Eq)]
struct Tlv<'a> {
    tag: u8,
    /// The value.
    content: &'a [u8],
    /// Tag, length and value together.
    whole: &'a [u8],
    /// The bytes after it.
    rest: &'a [u8],
}

/// Splits one tag-length-value off `input`.
fn split_tlv(input: &[u8]) -> Result<Tlv<'_>, DerError> {
    let (&tag, after_tag) = input.split_first().ok_or(DerError("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("multi-byte tags are not used in certificates"));
    }
    let (&first, after_len) = after_tag.split_first().ok_or(DerError("truncated"))?;
    let (len, header) = match first {
        0..=0x7f => (usize::from(first), 2),
        0x81..=0x84 => {
            let count = usize::from(first & 0x7f);
            let bytes = after_len.get(..count).ok_or(DerError("truncated length"))?;
            if bytes[0] == 0 {
                return Err(DerError("length not minimally encoded"));
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(DerError("length not minimally encoded"));
            }
            (len, 2 + count)
        }
        _ => return Err(DerError("indefinite or oversized length")),
    };
    let end = header
        .checked_add(len)
        .filter(|&end| end <= input.len())
        .ok_or(DerError("truncated"))?;
    Ok(Tlv {
        tag,
        content: &input[header..end],
        whole: &input[..end],
        rest: &input[end..],
    })
}

fn expect(input: &[u8], tag: u8) -> Result<Tlv<'_>, DerError> {
    let tlv = split_tlv(input)?;
    if tlv.tag != tag {
        return Err(DerError("unexpected tag"));
    }
    Ok(tlv)
}

/// The content of a BIT STRING with no unused bits.
fn whole_bytes(bit_string: &[u8]) -> Result<&[u8], DerError> {
    match bit_string.split_first() {
        Some((0, bits)) => Ok(bits),
        _ => Err(DerError("bit string with unused bits")),
    }
}

/// Splits bytes into consecutive whole DER elements (concatenated certificates).
#[cfg(feature = "workload-api")]
pub(crate) fn split_sequence(mut bytes: &[u8]) -> Result<Vec<&[u8]>, DerError> {
    let mut parts = Vec::new();
    while !bytes.is_empty() {
        let tlv = split_tlv(bytes)?;
        parts.push(tlv.whole);
        bytes = tlv.rest;
    }
    Ok(parts)
}

/// The parts of a certificate that its issuer signed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedCertificate<'a> {
    /// The whole encoded TBSCertificate: the signed message.
    pub(crate) tbs: &'a [u8],
    /// The content of the outer signatureAlgorithm AlgorithmIdentifier.
    pub(crate) algorithm: &'a [u8],
    /// The signature bytes.
    pub(crate) signature: &'a [u8],
}

impl<'a> SignedCertificate<'a> {
    /// Cuts a DER certificate into TBS, algorithm and signature; nothing may follow it.
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self, DerError> {
        let cert = expect(der, SEQUENCE)?;
        if !cert.rest.is_empty() {
            return Err(DerError("data after the certificate"));
        }
        let tbs = expect(cert.content, SEQUENCE)?;
        let algorithm = expect(tbs.rest, SEQUENCE)?;
        let signature = expect(algorithm.rest, BIT_STRING)?;
        if !signature.rest.is_empty() {
            return Err(DerError("data after the signature"));
        }
        Ok(Self {
            tbs: tbs.whole,
            algorithm: algorithm.content,
            signature: whole_bytes(signature.content)?,
        })
    }

    /// The content of the signature AlgorithmIdentifier inside the TBSCertificate, which must
    /// equal the outer one (RFC 5280 4.1.1.2).
    pub(crate) fn inner_algorithm(&self) -> Result<&'a [u8], DerError> {
        let tbs = expect(self.tbs, SEQUENCE)?.content;
        let first = split_tlv(tbs)?;
        // an explicit version comes first; without it, the first field is the serial number
        let serial_and_on = if first.tag == 0xa0 { first.rest } else { tbs };
        let serial = expect(serial_and_on, 0x02)?;
        Ok(expect(serial.rest, SEQUENCE)?.content)
    }
}

/// A SubjectPublicKeyInfo cut into algorithm identifier content and key bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublicKeyParts<'a> {
    /// The content of the AlgorithmIdentifier.
    pub(crate) algorithm: &'a [u8],
    /// The subjectPublicKey bits.
    pub(crate) key: &'a [u8],
}

impl<'a> PublicKeyParts<'a> {
    /// Cuts an encoded SubjectPublicKeyInfo.
    pub(crate) fn parse(spki: &'a [u8]) -> Result<Self, DerError> {
        let content = expect(spki, SEQUENCE)?.content;
        let algorithm = expect(content, SEQUENCE)?;
        let key = expect(algorithm.rest, BIT_STRING)?;
        Ok(Self {
            algorithm: algorithm.content,
            key: whole_bytes(key.content)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_lengths() {
        assert!(split_tlv(&[0x30]).is_err());
        assert!(split_tlv(&[0x30, 0x05, 0x00]).is_err());
        assert!(split_tlv(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).is_err()); // non-minimal
        assert!(split_tlv(&[0x30, 0x80, 0x00, 0x00]).is_err()); // indefinite
        assert!(split_tlv(&[0x30, 0x82, 0x00, 0x81]).is_err()); // leading zero
        let tlv = split_tlv(&[0x04, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!(
            tlv,
            Tlv {
                tag: 4,
                content: &[0xaa],
                whole: &[4, 1, 0xaa],
                rest: &[0xbb]
            }
        );
    }

    #[test]
    fn rejects_unused_bits() {
        assert!(whole_bytes(&[1, 0xff]).is_err());
        assert!(whole_bytes(&[]).is_err());
        assert_eq!(whole_bytes(&[0, 7]).unwrap(), &[7]);
    }
}
