//! One canonical request path, decided on and forwarded alike.
//!
//! A route rule that matches the path as received while the service behind it decodes and
//! normalizes it can be walked around: `/admin%2Fsecret`, `/%61dmin/x`, `//admin/x` and
//! `/public/..%2fadmin/x` match no `/admin` rule, yet a file server reads `/admin/...` for each.
//! [`canonical_path`] removes that gap: it decodes what has one meaning (percent-encoded
//! unreserved characters), and refuses what servers disagree on (encoded separators, dot
//! segments, empty segments, `;` path parameters, backslashes, control bytes). What it returns
//! is what the route is matched on and what the service sees.
//!
//! Written by hand rather than with a URL crate: those normalize (they resolve `..`, fold
//! `\` into `/` for special schemes), which is exactly the silent reinterpretation a route
//! check must refuse instead.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};

use super::refusal::{RouteRefusal, refusal_response};
use crate::tls::{self, PeerIdentity};

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
}

/// The canonical form of an HTTP request path (no query), or why it has none.
///
/// - Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded: `/%61dmin`
///   is `/admin`. Other percent-encodings stay encoded, with upper-case hex digits.
/// - Refused: an encoded `/` or `\` (either case), a raw `\`, an empty segment (`//`; a single
///   trailing `/` is kept), a `.` or `..` segment after decoding, a `;` in a segment (raw or
///   encoded), a control byte (raw or encoded), a malformed `%`, and anything not starting
///   with `/`.
/// - Letter case is kept: `/Admin` and `/admin` are different paths.
///
/// The result borrows `path` when it is already canonical.
///
/// # Errors
/// The first [`PathError`] found.
///
/// # Example
/// ```
/// use spiffe_mtls::net::{PathError, canonical_path};
///
/// assert_eq!(canonical_path("/%61dmin/a%2dz%c3%A9")?, "/admin/a-z%C3%A9");
/// assert_eq!(canonical_path("/docs/")?, "/docs/");
/// assert_eq!(canonical_path("/admin%2Fsecret"), Err(PathError::EncodedSeparator("%2F".into())));
/// assert_eq!(canonical_path("/public/.%2e/admin"), Err(PathError::DotSegment("..".into())));
/// assert_eq!(canonical_path("//admin"), Err(PathError::EmptySegment));
/// assert_eq!(canonical_path("/public/..;/admin"), Err(PathError::Semicolon));
/// # Ok::<(), PathError>(())
/// ```
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    let mut out = String::with_capacity(path.len());
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() && index != last {
            return Err(PathError::EmptySegment);
        }
        out.push('/');
        let start = out.len();
        canonical_segment(segment, &mut out)?;
        let decoded = &out[start..];
        if decoded == "." || decoded == ".." {
            return Err(PathError::DotSegment(decoded.to_owned()));
        }
    }
    if out == path {
        Ok(Cow::Borrowed(path))
    } else {
        Ok(Cow::Owned(out))
    }
}

/// Appends the canonical form of one segment (no `/` in it) to `out`.
fn canonical_segment(segment: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    let mut at = 0;
    // Runs of bytes that need no change are copied whole, as `str` slices: a multi-byte
    // character is never split because every byte checked below is ASCII.
    let mut copied = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                out.push_str(&segment[copied..at]);
                let byte = percent_byte(bytes, at)?;
                check_byte(byte, &segment[at..at + 3])?;
                if is_unreserved(byte) {
                    out.push(char::from(byte));
                } else {
                    out.push('%');
                    out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
                    out.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
                }
                at += 3;
                copied = at;
            }
            b'\\' => return Err(PathError::Backslash),
            byte => {
                check_byte(byte, "")?;
                at += 1;
            }
        }
    }
    out.push_str(&segment[copied..]);
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

/// Refuses a byte (decoded from `encoded`, or raw when `encoded` is empty) no segment may hold.
fn check_byte(byte: u8, encoded: &str) -> Result<(), PathError> {
    match byte {
        b'/' | b'\\' if !encoded.is_empty() => Err(PathError::EncodedSeparator(encoded.to_owned())),
        b';' => Err(PathError::Semicolon),
        0x00..=0x1f | 0x7f => Err(PathError::ControlByte),
        _ => Ok(()),
    }
}

/// RFC 3986 section 2.3's unreserved characters.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Rewrites `request`'s target to its canonical path (the query as received); the refusal
/// when the path has no canonical form.
pub(crate) fn canonicalize_request<B>(request: &mut Request<B>) -> Result<(), PathError> {
    let path = request.uri().path();
    let canonical = match canonical_path(path)? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(canonical) => canonical,
    };
    let target = match request.uri().query() {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    // The canonical path holds only bytes the received one held, or unreserved characters:
    // it parses wherever the original did.
    let path_and_query = PathAndQuery::try_from(target).map_err(|_| PathError::BadPercent)?;
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.path_and_query = Some(path_and_query);
    *request.uri_mut() = Uri::from_parts(parts).map_err(|_| PathError::BadPercent)?;
    Ok(())
}

/// The `400 Bad Request` for a path with no canonical form, after its audit event.
pub(crate) fn refuse_path<B, ReqBody>(request: &Request<ReqBody>, error: &PathError) -> Response<B>
where
    B: From<String>,
{
    let peer = request.extensions().get::<PeerIdentity>();
    let path = request.uri().path();
    let shown = format!("{path:?}");
    tls::route_denied(
        peer.map(PeerIdentity::spiffe_id),
        &shown,
        &"canonical path",
        error,
    );
    let refusal = RouteRefusal {
        route: None,
        path: path.to_owned(),
        rule: "canonical path".to_owned(),
        reason: error.to_string(),
    };
    let body = format!("bad request: path {shown} refused: {error}\n");
    refusal_response(StatusCode::BAD_REQUEST, body, refusal)
}

/// Gives every request one canonical path ([`canonical_path`]) before the inner service sees
/// it, and answers `400 Bad Request` (`text/plain`, naming the rule) to a path that has none,
/// with an audit event (`decision=denied`, `rule="canonical path"`) and a
/// [`RouteRefusal`](super::RouteRefusal) in the response's extensions.
///
/// [`RoutePolicyLayer`](super::RoutePolicyLayer) does the same itself; this layer is for a
/// service that decides on paths in other ways (its own router, a file server, a proxy).
///
/// # Example
/// ```
/// use axum::{Router, routing::get};
/// use spiffe_mtls::net::CanonicalPathLayer;
///
/// let app: Router = Router::new()
///     .route("/files/{name}", get(|| async { "file\n" }))
///     .layer(CanonicalPathLayer::new());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CanonicalPathLayer;

impl CanonicalPathLayer {
    /// The layer.
    ///
    /// # Example
    /// See [`CanonicalPathLayer`].
    pub fn new() -> Self {
        Self
    }
}

impl<S> tower::Layer<S> for CanonicalPathLayer {
    type Service = CanonicalPath<S>;

    fn layer(&self, inner: S) -> CanonicalPath<S> {
        CanonicalPath { inner }
    }
}

/// The service of [`CanonicalPathLayer`].
///
/// # Example
/// ```
/// use tower::Layer;
/// use spiffe_mtls::net::{CanonicalPath, CanonicalPathLayer};
///
/// let service: CanonicalPath<_> = CanonicalPathLayer::new()
///     .layer(tower::service_fn(|_: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// ```
#[derive(Debug, Clone)]
pub struct CanonicalPath<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for CanonicalPath<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match canonicalize_request(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(error) => Box::pin(std::future::ready(Ok(refuse_path(&request, &error)))),
        }
    }
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
            "/caf\u{e9}",
        ] {
            assert!(matches!(canonical_path(path), Ok(Cow::Borrowed(p)) if p == path));
        }
    }

    #[test]
    fn unreserved_characters_are_decoded_and_hex_upper_cased() {
        assert_eq!(canonical_path("/%61dmin/x").unwrap(), "/admin/x");
        assert_eq!(
            canonical_path("/%41%7a%30%2D%2e%5F%7E").unwrap(),
            "/Az0-._~"
        );
        assert_eq!(canonical_path("/a%20b%c3%a9").unwrap(), "/a%20b%C3%A9");
        assert_eq!(canonical_path("/x.%2e%2E").unwrap(), "/x...");
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
    }

    #[test]
    fn the_request_target_is_rewritten_with_its_query() {
        let mut request = Request::get("http://h/%61dmin/x?a=%2F&b").body(()).unwrap();
        canonicalize_request(&mut request).unwrap();
        assert_eq!(request.uri().to_string(), "http://h/admin/x?a=%2F&b");
        let mut request = Request::get("/%7e").body(()).unwrap();
        canonicalize_request(&mut request).unwrap();
        assert_eq!(request.uri().to_string(), "/~");
        let mut request = Request::get("/admin%2fx?q").body(()).unwrap();
        assert_eq!(
            canonicalize_request(&mut request),
            Err(PathError::EncodedSeparator("%2f".into()))
        );
    }
}
