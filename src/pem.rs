//! PEM files: the sections they hold, told apart from files that are not PEM at all.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{self, SectionKind};

/// Why bytes could not be read as PEM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// No PEM section at all in non-empty input.
    #[error("not PEM: no \"-----BEGIN\" line")]
    NotPem,
    /// A section is broken (bad base64, no END line).
    #[error("broken PEM: {0}")]
    Invalid(String),
}

/// The sections of a PEM document in file order; empty for blank input. Sections of a kind
/// rustls does not know are skipped.
pub(crate) fn sections(bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, PemError> {
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(Vec::new())
        } else {
            Err(PemError::NotPem)
        };
    }
    let mut reader = bytes;
    let mut found = Vec::new();
    loop {
        match pem::from_buf(&mut reader) {
            Ok(Some(section)) => found.push(section),
            Ok(None) => return Ok(found),
            Err(e) => return Err(PemError::Invalid(described(&e))),
        }
    }
}

/// A PEM reader's error in words (its own `Display` shows byte arrays and decoder internals:
/// `missing section end marker: [67, 69, ...]`, `InvalidCharacter(33)`).
fn described(error: &pem::Error) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    match error {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("no \"-----END {}-----\" line", text(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("a malformed \"-----BEGIN\" line: {:?}", text(line))
        }
        pem::Error::Base64Decode(_) => "a section is not valid base64".to_owned(),
        pem::Error::SectionTooLarge => "a section is too large".to_owned(),
        other => other.to_string(),
    }
}

/// The certificates of a PEM document, in order; other sections are skipped.
///
/// # Errors
/// [`PemError`] when the input is not PEM or a section is broken. Blank input gives none.
pub fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    Ok(sections(bytes)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect())
}

/// PEM text of one DER object under `label` (e.g. `CERTIFICATE`, `PRIVATE KEY`).
pub fn encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// PEM text of certificates, in order.
pub fn encode_certificates<'a, 'b: 'a>(
    certs: impl IntoIterator<Item = &'a CertificateDer<'b>>,
) -> String {
    certs
        .into_iter()
        .map(|der| encode("CERTIFICATE", der))
        .collect()
}

/// A label for a section kind, for messages.
pub(crate) fn describe(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "a certificate",
        SectionKind::PublicKey => "a public key",
        SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey => {
            "a private key"
        }
        SectionKind::Crl => "a certificate revocation list",
        SectionKind::Csr => "a certificate signing request",
        _ => "an unexpected PEM section",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_it_decodes() {
        let der = CertificateDer::from((0u8..200).collect::<Vec<u8>>());
        let text = encode_certificates([&der]);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(certificates(text.as_bytes()).unwrap(), vec![der]);
    }

    #[test]
    fn tells_blank_from_not_pem() {
        assert_eq!(sections(b"  \n").unwrap(), Vec::new());
        assert_eq!(sections(b"Not PEM encoded file"), Err(PemError::NotPem));
        assert!(matches!(
            sections(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            Err(PemError::Invalid(_))
        ));
    }
}
