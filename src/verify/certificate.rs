//! One certificate of a presented chain, parsed once, with the RFC 5280 structure rules that
//! apply to every certificate whatever its place.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
    OID_X509_EXT_NAME_CONSTRAINTS, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;

use super::der::SignedCertificate;
use super::error::{Position, VerifyError};
use super::parse_error::{certificate_error, extension_error};

/// The largest certificate a presented chain may hold, in bytes. X.509-SVIDs are about 1 KiB;
/// a larger one is refused before it is parsed.
pub const MAX_CERTIFICATE_SIZE: usize = 16 * 1024;

/// The most extensions a presented certificate may carry (an SVID has about six).
pub const MAX_EXTENSIONS: usize = 64;

/// A parsed certificate of the chain under verification.
pub(crate) struct ParsedCert<'a> {
    pub(crate) x509: X509Certificate<'a>,
    pub(crate) signed: SignedCertificate<'a>,
    pub(crate) position: Position,
}

/// The extensions this verifier evaluates; any other one marked critical is refused.
fn is_processed(oid: &x509_parser::der_parser::oid::Oid<'_>) -> bool {
    [
        &OID_X509_EXT_BASIC_CONSTRAINTS,
        &OID_X509_EXT_KEY_USAGE,
        &OID_X509_EXT_EXTENDED_KEY_USAGE,
        &OID_X509_EXT_SUBJECT_ALT_NAME,
        &OID_X509_EXT_NAME_CONSTRAINTS,
    ]
    .contains(&oid)
}

impl<'a> ParsedCert<'a> {
    /// Parses `der` and applies the rules every certificate must meet: DER with nothing after
    /// it, each extension at most once, the processed extensions well formed, no unknown
    /// critical extension, matching signature algorithms, and a critical subjectAltName when
    /// the subject is empty.
    pub(crate) fn parse(der: &'a [u8], position: Position) -> Result<Self, VerifyError> {
        let malformed = |reason: String| VerifyError::Malformed { position, reason };
        // Checked before any parsing: the work below is linear in the size, and a peer that
        // has not yet proved anything chooses the size.
        if der.len() > MAX_CERTIFICATE_SIZE {
            return Err(VerifyError::CertificateTooLarge {
                position,
                size: der.len(),
                max: MAX_CERTIFICATE_SIZE,
            });
        }
        let (rest, x509) =
            X509Certificate::from_der(der).map_err(|e| malformed(certificate_error(&e)))?;
        if !rest.is_empty() {
            return Err(malformed("data after the certificate".into()));
        }
        let signed = SignedCertificate::parse(der).map_err(|e| malformed(e.0.into()))?;
        let cert = Self {
            x509,
            signed,
            position,
        };
        cert.check_extensions()?;
        let inner = cert
            .signed
            .inner_algorithm()
            .map_err(|e| malformed(e.0.into()))?;
        if inner != cert.signed.algorithm {
            return Err(VerifyError::SignatureAlgorithmMismatch { position });
        }
        if cert.subject_is_empty() && !cert.san_is_critical() {
            return Err(VerifyError::EmptySubjectWithoutCriticalSan { position });
        }
        Ok(cert)
    }

    /// Parses every certificate of a chain, leaf first.
    pub(crate) fn parse_chain(
        chain: &'a [rustls_pki_types::CertificateDer<'_>],
    ) -> Result<Vec<Self>, VerifyError> {
        chain
            .iter()
            .enumerate()
            .map(|(i, der)| Self::parse(der, Position::of(i)))
            .collect()
    }

    fn check_extensions(&self) -> Result<(), VerifyError> {
        let position = self.position;
        let extensions = self.x509.extensions();
        if extensions.len() > MAX_EXTENSIONS {
            return Err(VerifyError::TooManyExtensions {
                position,
                count: extensions.len(),
                max: MAX_EXTENSIONS,
            });
        }
        // One pass with a hash set: comparing each extension with all earlier ones was
        // quadratic in a count the peer chooses.
        let mut seen = std::collections::HashSet::with_capacity(extensions.len());
        for ext in extensions {
            let oid = || ext.oid.to_id_string();
            if !seen.insert(ext.oid.as_bytes()) {
                return Err(VerifyError::DuplicateExtension {
                    position,
                    oid: oid(),
                });
            }
            let processed = is_processed(&ext.oid);
            if ext.critical && !processed {
                return Err(VerifyError::UnknownCriticalExtension {
                    position,
                    oid: oid(),
                });
            }
            if !processed {
                continue;
            }
            let broken = match ext.parsed_extension() {
                ParsedExtension::ParseError { error } => Some(extension_error(error)),
                ParsedExtension::UnsupportedExtension { .. } => Some("not understood".into()),
                ParsedExtension::SubjectAlternativeName(san) => san
                    .general_names
                    .iter()
                    .any(|name| matches!(name, GeneralName::Invalid(..)))
                    .then(|| "a subject alternative name is malformed".into()),
                _ => None,
            };
            if let Some(reason) = broken {
                return Err(VerifyError::Malformed {
                    position,
                    reason: format!("extension {}: {reason}", oid()),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn subject_is_empty(&self) -> bool {
        self.x509.subject().iter_attributes().next().is_none()
    }

    fn san_is_critical(&self) -> bool {
        matches!(self.x509.subject_alternative_name(), Ok(Some(san)) if san.critical)
    }

    /// The URI subject alternative names.
    pub(crate) fn uris(&self) -> impl Iterator<Item = &'a str> + '_ {
        let names = match self.x509.subject_alternative_name() {
            Ok(Some(san)) => san.value.general_names.as_slice(),
            _ => &[],
        };
        names.iter().filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
    }

    /// Whether basicConstraints says cA true, and its pathLenConstraint.
    pub(crate) fn ca(&self) -> (bool, Option<u32>) {
        match self.x509.basic_constraints() {
            Ok(Some(bc)) => (bc.value.ca, bc.value.path_len_constraint),
            _ => (false, None),
        }
    }

    /// Whether the certificate is self-issued (subject equals issuer), RFC 5280 6.1.
    pub(crate) fn is_self_issued(&self) -> bool {
        self.x509.subject().as_raw() == self.x509.issuer().as_raw()
    }
}

/// The first `spiffe://` URI SAN of a certificate, without other checks: for certificates
/// already verified (a handshake's peer) or trusted by configuration (a bundle file's roots).
///
/// # Errors
/// A message when the bytes are not an X.509 certificate.
pub(crate) fn first_spiffe_uri(der: &[u8]) -> Result<Option<String>, String> {
    spiffe_uri_and_not_after(der).map(|(uri, _)| uri)
}

/// [`first_spiffe_uri`] and the certificate's notAfter (Unix seconds), from one parse.
///
/// # Errors
/// A message when the bytes are not an X.509 certificate.
pub(crate) fn spiffe_uri_and_not_after(der: &[u8]) -> Result<(Option<String>, i64), String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| certificate_error(&e))?;
    let not_after = cert.validity().not_after.timestamp();
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Ok((None, not_after));
    };
    let uri = san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
        _ => None,
    });
    Ok((uri, not_after))
}
