//! A bundle root prepared once for path validation, so a handshake does not re-parse it.

use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::der::PublicKeyParts;
use super::name_constraints::NameConstraints;
use super::parse_error::{certificate_error, x509_error};

/// A trust anchor: a root certificate of a bundle and what path validation reads from it.
///
/// A root's own key usage and CA flag are not held to the signing-certificate profile; its
/// validity period, path length constraint and name constraints are honored.
#[derive(Debug, Clone)]
pub(crate) struct Anchor {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) subject: Vec<u8>,
    pub(crate) spki: Vec<u8>,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) path_len: Option<u32>,
    pub(crate) name_constraints: Option<NameConstraints>,
    /// The trust domain the root names in its first `spiffe://` URI SAN, if any.
    pub(crate) named_trust_domain: Option<String>,
}

impl Anchor {
    /// Parses a root certificate.
    ///
    /// # Errors
    /// A description of what is wrong when `der` is not a well-formed X.509 certificate.
    pub(crate) fn parse(der: CertificateDer<'static>) -> Result<Self, String> {
        let (rest, cert) = X509Certificate::from_der(&der).map_err(|e| certificate_error(&e))?;
        if !rest.is_empty() {
            return Err("data after the certificate".into());
        }
        let spki = cert.public_key().raw;
        PublicKeyParts::parse(spki).map_err(|e| format!("public key: {}", e.0))?;
        let path_len = match cert.basic_constraints() {
            Ok(Some(bc)) => bc.value.path_len_constraint,
            Ok(None) => None,
            Err(e) => return Err(x509_error(&e)),
        };
        let name_constraints = match cert.name_constraints() {
            Ok(nc) => nc.map(|nc| NameConstraints::from_parsed(nc.value)),
            Err(e) => return Err(x509_error(&e)),
        };
        let named_trust_domain = match cert.subject_alternative_name() {
            Ok(Some(san)) => san.value.general_names.iter().find_map(|name| match name {
                GeneralName::URI(uri) => uri
                    .strip_prefix("spiffe://")
                    .map(|rest| rest.split('/').next().unwrap_or_default().to_owned()),
                _ => None,
            }),
            Ok(None) => None,
            Err(e) => return Err(x509_error(&e)),
        };
        let anchor = Self {
            subject: cert.subject().as_raw().to_vec(),
            spki: spki.to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            path_len,
            name_constraints,
            named_trust_domain,
            der: CertificateDer::from(Vec::new()),
        };
        Ok(Self { der, ..anchor })
    }
}
