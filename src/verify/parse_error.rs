//! x509-parser's errors in words: what is wrong with the bytes (`truncated (DER ended
//! early)`), never the parser's internals (`Parsing Error: NomError(Eof)`).

use x509_parser::der_parser::error::BerError;
use x509_parser::error::X509Error;
use x509_parser::nom;

/// What a truncated input is called.
const TRUNCATED: &str = "truncated (DER ended early)";

/// Why x509-parser refused a certificate, to follow "is malformed: " or "is corrupt: ":
/// `truncated (DER ended early)`, `not DER-encoded X.509 (tag 0x04 where a SEQUENCE
/// starts)`, `not valid X.509 (invalid version)`.
pub(crate) fn certificate_error(error: &nom::Err<X509Error>) -> String {
    match error {
        nom::Err::Incomplete(_) => TRUNCATED.to_owned(),
        nom::Err::Error(error) | nom::Err::Failure(error) => x509_error(error),
    }
}

/// An [`X509Error`] in words (see [`certificate_error`]).
pub(crate) fn x509_error(error: &X509Error) -> String {
    match error {
        X509Error::NomError(nom::error::ErrorKind::Eof) => TRUNCATED.to_owned(),
        X509Error::NomError(_) => "not DER-encoded X.509".to_owned(),
        X509Error::Der(error) => ber_error(error),
        // The others are plain words already ("invalid version", "invalid extensions").
        other => format!("not valid X.509 ({other})"),
    }
}

/// Why an extension's value could not be decoded, to follow "extension OID: ":
/// `truncated (DER ended early)`, `not DER (expected SEQUENCE, found INTEGER)`.
pub(crate) fn extension_error(error: &nom::Err<BerError>) -> String {
    let error = match error {
        nom::Err::Incomplete(_) => return TRUNCATED.to_owned(),
        nom::Err::Error(error) | nom::Err::Failure(error) => error,
    };
    match ber_reason(error) {
        Some(reason) => format!("not DER ({reason})"),
        None => TRUNCATED.to_owned(),
    }
}

/// A BER/DER decoding error in words.
fn ber_error(error: &BerError) -> String {
    match ber_reason(error) {
        Some(reason) => format!("not DER-encoded X.509 ({reason})"),
        None => TRUNCATED.to_owned(),
    }
}

/// What is wrong in a BER/DER error; `None` for truncated input.
fn ber_reason(error: &BerError) -> Option<String> {
    let reason = match error {
        BerError::Incomplete(_) | BerError::NomError(nom::error::ErrorKind::Eof) => {
            return None;
        }
        BerError::UnexpectedTag {
            expected: Some(expected),
            actual,
        } => format!(
            "expected {}, found {}",
            tag_name(expected.0),
            tag_name(actual.0)
        ),
        BerError::UnexpectedTag {
            expected: None,
            actual,
        } => format!("unexpected {}", tag_name(actual.0)),
        BerError::UnexpectedClass { .. } => "a tag of an unexpected class".to_owned(),
        BerError::InvalidLength => "an invalid length".to_owned(),
        BerError::IndefiniteLengthUnexpected => "an indefinite length".to_owned(),
        BerError::InvalidTag | BerError::UnknownTag(_) => "an invalid tag".to_owned(),
        BerError::IntegerTooLarge | BerError::IntegerNegative => {
            "an integer out of range".to_owned()
        }
        BerError::BerMaxDepth => "nesting too deep".to_owned(),
        BerError::StringInvalidCharset => "a string with forbidden characters".to_owned(),
        BerError::InvalidDateTime => "an invalid date".to_owned(),
        BerError::DerConstraintFailed(_) => "BER where DER is required".to_owned(),
        BerError::ConstructExpected | BerError::ConstructUnexpected => {
            "a value of the wrong form (constructed or primitive)".to_owned()
        }
        _ => "a value it cannot decode".to_owned(),
    };
    Some(reason)
}

/// A universal tag's name (`SEQUENCE`), else its number (`tag 0`).
fn tag_name(tag: u32) -> String {
    let name = match tag {
        1 => "BOOLEAN",
        2 => "INTEGER",
        3 => "BIT STRING",
        4 => "OCTET STRING",
        5 => "NULL",
        6 => "OBJECT IDENTIFIER",
        16 => "SEQUENCE",
        17 => "SET",
        other => return format!("tag {other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use x509_parser::certificate::X509Certificate;
    use x509_parser::prelude::FromDer;

    use super::*;

    /// Hand-made bytes: a SEQUENCE header announcing more than there is, an OCTET STRING,
    /// nothing at all.
    #[test]
    fn truncated_and_foreign_bytes_are_said_in_words() {
        let truncated = [0x30, 0x82, 0x01, 0x00, 0x30, 0x03];
        let error = X509Certificate::from_der(&truncated).unwrap_err();
        assert_eq!(certificate_error(&error), TRUNCATED);

        let not_a_sequence = [0x04, 0x02, 0x00, 0x00];
        let error = X509Certificate::from_der(&not_a_sequence).unwrap_err();
        assert_eq!(
            certificate_error(&error),
            "not DER-encoded X.509 (expected SEQUENCE, found OCTET STRING)"
        );

        let empty: [u8; 0] = [];
        let error = X509Certificate::from_der(&empty).unwrap_err();
        assert_eq!(certificate_error(&error), TRUNCATED);
    }
}
