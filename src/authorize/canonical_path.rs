//! One canonical form of a request path, decided on and forwarded alike.
//!
//! A route rule that matches the path as received while the service behind it decodes and
//! normalizes it can be walked around: `/admin%2Fsecret`, `/%61dmin/x`, `/caf%C3%A9` for a
//! `/café` rule, `//admin/x` and `/public/..%2fadmin/x` match no rule of the path they reach.
//! [`canonical_path`] gives each path one spelling (every character a path may hold as it is,
//! decoded; everything else percent-encoded with upper-case digits), and refuses what servers
//! disagree on (encoded separators, dot segments, empty segments, `;` path parameters,
//! backslashes, control bytes, encodings that are not UTF-8). What it returns is what a route is
//! matched on and what the service sees; policy route names are held to the same form.
//!
//! Written by hand rather than with a URL crate: those normalize (they resolve `..`, fold `\`
//! into `/` for special schemes), which is exactly the silent reinterpretation a route check
//! must refuse instead.

use std::borrow::Cow;

/// Why a request path was refused by [`canonical_path`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (`*`, or empty).
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// A `%2F` or `%5C` (any case): an encoded `/` or `\`, which servers split on or not.
    #[error("the path has an encoded separator {0:?}")]
    EncodedSeparator(String),
    /// A raw `\`, which some servers treat as `/`.
    #[error("the path has a backslash")]
    Backslash,
    /// `//`, or an empty segment anywhere but after the last `/`.
    #[error("the path has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment after decoding (`%2e%2e`, `.%2E`, ...).
    #[error("the path has a dot segment {0:?}")]
    DotSegment(String),
    /// A `;` (raw or `%3B`): a path parameter, which servers strip or not (`..;/`).
    #[error("the path has a ';' in a segment")]
    Semicolon,
    /// A control byte (raw or percent-encoded, `%00` to `%1F` and `%7F`).
    #[error("the path has a control byte")]
    ControlByte,
    /// A `%` not followed by two hexadecimal digits.
    #[error("the path has a malformed percent-encoding")]
    BadPercent,
    /// A segment whose bytes, once decoded, are not UTF-8 (`%C0%AE`, an overlong `.`).
    #[error("the path has a segment that is not UTF-8 once decoded")]
    NotUtf8,
}

/// The canonical form of an HTTP request path (no query), or why it has none.
///
/// - Every character a path segment may hold as it is (RFC 3986 `pchar`: letters, digits,
///   `-._~!$&'()*+,=:@`) is decoded: `/%61dmin` is `/admin`, `/v1%3Aadmin` is `/v1:admin`.
/// - Everything else is percent-encoded with upper-case hex digits, whether it came encoded or
///   raw: `/café` and `/caf%c3%a9` are both `/caf%C3%A9`; `%25`, `%3F`, `%23` and `%20` stay
///   encoded.
/// - Refused: an encoded `/` or `\` (either case), a raw `\`, an empty segment (`//`; a single
///   trailing `/` is kept), a `.` or `..` segment after decoding, a `;` in a segment (raw or
///   encoded), a control byte (raw or encoded), a malformed `%`, a segment that is not UTF-8
///   once decoded, and anything not starting with `/`.
/// - Letter case is kept: `/Admin` and `/admin` are different paths.
///
/// The result borrows `path` when it is already canonical. Canonical paths are fixed points:
/// `canonical_path(canonical)` is `canonical`.
///
/// # Errors
/// The first [`PathError`] found.
///
/// # Example
/// ```
/// use spiffe_mtls::authorize::{PathError, canonical_path};
///
/// assert_eq!(canonical_path("/%61dmin/a%2dz%3a")?, "/admin/a-z:");
/// assert_eq!(canonical_path("/café")?, "/caf%C3%A9");
/// assert_eq!(canonical_path("/caf%c3%a9")?, "/caf%C3%A9");
/// assert_eq!(canonical_path("/docs/")?, "/docs/");
/// assert_eq!(canonical_path("/admin%2Fsecret"), Err(PathError::EncodedSeparator("%2F".into())));
/// assert_eq!(canonical_path("/public/.%2e/admin"), Err(PathError::DotSegment("..".into())));
/// assert_eq!(canonical_path("//admin"), Err(PathError::EmptySegment));
/// assert_eq!(canonical_path("/public/..;/admin"), Err(PathError::Semicolon));
/// assert_eq!(canonical_path("/%c0%ae"), Err(PathError::NotUtf8));
/// # Ok::<(), PathError>(())
/// ```
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    // Most paths are canonical already (and the route layers ask again about the path they
    // rewrote): answer those without allocating.
    if is_plainly_canonical(rest) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut decoded = Vec::new();
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() && index != last {
            return Err(PathError::EmptySegment);
        }
        out.push('/');
        let start = out.len();
        decoded.clear();
        canonical_segment(segment, &mut out, &mut decoded)?;
        if std::str::from_utf8(&decoded).is_err() {
            return Err(PathError::NotUtf8);
        }
        let canonical = &out[start..];
        if canonical == "." || canonical == ".." {
            return Err(PathError::DotSegment(canonical.to_owned()));
        }
    }
    if out == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(out))
    }
}

/// Whether `rest` (a path after its first `/`) is canonical without decoding anything: only
/// path characters, no empty segment but a trailing one, no dot segment.
fn is_plainly_canonical(rest: &str) -> bool {
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last)
            || segment == "."
            || segment == ".."
            || !segment.bytes().all(is_path_char)
        {
            return false;
        }
    }
    true
}

/// Appends the canonical form of one segment (no `/` in it) to `out`, and its fully decoded
/// bytes to `decoded`.
fn canonical_segment(
    segment: &str,
    out: &mut String,
    decoded: &mut Vec<u8>,
) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let (byte, encoded) = if bytes[at] == b'%' {
            let byte = percent_byte(bytes, at)?;
            at += 3;
            (byte, true)
        } else {
            at += 1;
            (bytes[at - 1], false)
        };
        check_byte(byte, encoded.then(|| &segment[at - 3..at]))?;
        decoded.push(byte);
        if is_path_char(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
        }
    }
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The byte a `%XY` at `at` encodes.
fn percent_byte(bytes: &[u8], at: usize) -> Result<u8, PathError> {
    let hex = |offset: usize| {
        bytes
            .get(at + offset)
            .and_then(|digit| char::from(*digit).to_digit(16))
            .ok_or(PathError::BadPercent)
    };
    let value = hex(1)? * 16 + hex(2)?;
    u8::try_from(value).map_err(|_| PathError::BadPercent)
}

/// Refuses a byte no segment may hold; `encoded` is its `%XY` when it came encoded.
fn check_byte(byte: u8, encoded: Option<&str>) -> Result<(), PathError> {
    match (byte, encoded) {
        (b'/' | b'\\', Some(encoded)) => Err(PathError::EncodedSeparator(encoded.to_owned())),
        (b'\\', None) => Err(PathError::Backslash),
        (b';', _) => Err(PathError::Semicolon),
        (0x00..=0x1f | 0x7f, _) => Err(PathError::ControlByte),
        _ => Ok(()),
    }
}

/// RFC 3986's `pchar` without `;` (refused) and `%` (always an escape): the bytes a segment
/// holds as they are.
fn is_path_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str) -> PathError {
        canonical_path(path).expect_err(path)
    }

    #[test]
    fn canonical_paths_pass_unchanged_and_borrowed() {
        for path in [
            "/",
            "/admin",
            "/admin/",
            "/admin/secret.txt",
            "/a-b_c~d/v1.2/..x/.hidden/x..",
            "/%C3%A9t%C3%A9",
            "/a%20b%3Fc%23d%25",
            "/v1:admin/it's/(x)!$&*+,=@",
        ] {
            assert!(
                matches!(canonical_path(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn one_spelling_per_path() {
        for (path, canonical) in [
            ("/%61dmin/x", "/admin/x"),
            ("/%41%7a%30%2D%2e%5F%7E", "/Az0-._~"),
            ("/a%20b%c3%a9", "/a%20b%C3%A9"),
            ("/x.%2e%2E", "/x..."),
            ("/v1%3Aadmin", "/v1:admin"),
            ("/it%27s", "/it's"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            (
                "/a\"b<c>{d}|e^f`g[h]",
                "/a%22b%3Cc%3E%7Bd%7D%7Ce%5Ef%60g%5Bh%5D",
            ),
            ("/%252e%252e", "/%252e%252e"),
        ] {
            assert_eq!(canonical_path(path).unwrap(), canonical, "{path}");
            // A fixed point.
            assert_eq!(canonical_path(canonical).unwrap(), canonical, "{canonical}");
        }
    }

    #[test]
    fn each_rule_refuses_its_payload() {
        assert_eq!(refused("admin"), PathError::NotAbsolute);
        assert_eq!(refused("*"), PathError::NotAbsolute);
        assert_eq!(refused(""), PathError::NotAbsolute);
        for (path, encoded) in [
            ("/admin%2Fsecret.txt", "%2F"),
            ("/admin%2fsecret.txt", "%2f"),
            ("/%2Fadmin/x", "%2F"),
            ("/public/..%2fadmin/x", "%2f"),
            ("/public/..%5cadmin/x", "%5c"),
            ("/public/..%5Cadmin/x", "%5C"),
        ] {
            assert_eq!(refused(path), PathError::EncodedSeparator(encoded.into()));
        }
        assert_eq!(refused("/public/..\\admin"), PathError::Backslash);
        for path in ["//admin/x", "/public//x", "/a/b//", "///"] {
            assert_eq!(refused(path), PathError::EmptySegment, "{path}");
        }
        for (path, dots) in [
            ("/public/../admin", ".."),
            ("/public/%2e%2e/admin", ".."),
            ("/public/.%2E/admin", ".."),
            ("/public/%2E./admin", ".."),
            ("/./admin", "."),
            ("/admin/%2e", "."),
            ("/admin/..", ".."),
        ] {
            assert_eq!(refused(path), PathError::DotSegment(dots.into()), "{path}");
        }
        for path in [
            "/public/..;/admin",
            "/admin;jsessionid=1",
            "/a%3Bb",
            "/a%3bb",
        ] {
            assert_eq!(refused(path), PathError::Semicolon, "{path}");
        }
        for path in [
            "/a%00b",
            "/a%0Ab",
            "/a%1fb",
            "/a%7Fb",
            "/a\u{1}b",
            "/a\u{7f}b",
        ] {
            assert_eq!(refused(path), PathError::ControlByte, "{path}");
        }
        for path in ["/a%", "/a%2", "/a%zz", "/a%2g", "/a%%41"] {
            assert_eq!(refused(path), PathError::BadPercent, "{path}");
        }
        for path in ["/%c0%ae%c0%ae/admin", "/%ff", "/caf%C3", "/%C3%28"] {
            assert_eq!(refused(path), PathError::NotUtf8, "{path}");
        }
    }
}
