//! The JWS Compact Serialization of a token (RFC 7515 section 7.1): three base64url segments,
//! decoded within a size cap before anything else looks at them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::json_object::JsonObject;

/// A token split and decoded, nothing checked yet.
#[derive(Debug)]
pub(crate) struct CompactToken<'a> {
    /// The JOSE header.
    pub(crate) header: JsonObject,
    /// The claims.
    pub(crate) claims: JsonObject,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`: what the signature covers.
    pub(crate) signing_input: &'a [u8],
    /// The signature bytes.
    pub(crate) signature: Vec<u8>,
}

impl<'a> CompactToken<'a> {
    /// Splits and decodes `token`.
    ///
    /// # Errors
    /// A message naming the segment at fault: not three segments, not base64url without
    /// padding, not a JSON object, a member named twice.
    pub(crate) fn parse(token: &'a str) -> Result<Self, String> {
        let mut segments = token.split('.');
        let (Some(header_segment), Some(claims_segment), Some(signature_segment), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(format!(
                "{} segments (a compact JWS has 3)",
                token.split('.').count()
            ));
        };
        let decode = |name: &str, segment: &str| {
            URL_SAFE_NO_PAD
                .decode(segment)
                .map_err(|e| format!("the {name} is not base64url without padding: {e}"))
        };
        let header_json = decode("header", header_segment)?;
        let claims_json = decode("payload", claims_segment)?;
        let signature = decode("signature", signature_segment)?;
        let header = JsonObject::parse(&header_json).map_err(|e| format!("the header: {e}"))?;
        let claims = JsonObject::parse(&claims_json).map_err(|e| format!("the payload: {e}"))?;
        Ok(Self {
            header,
            claims,
            signing_input: &token.as_bytes()[..header_segment.len() + 1 + claims_segment.len()],
            signature,
        })
    }
}

/// The `exp` and `iat` of a token whose signature is not checked: for a client caching the
/// tokens its own Workload API issued (never for trusting a token received).
#[cfg_attr(not(feature = "workload-api"), allow(dead_code))]
pub(crate) fn unverified_times(token: &str) -> Option<(u64, Option<u64>)> {
    let parsed = CompactToken::parse(token).ok()?;
    let exp = parsed.claims.get("exp")?.as_u64()?;
    let iat = parsed.claims.get("iat").and_then(serde_json::Value::as_u64);
    Some((exp, iat))
}
