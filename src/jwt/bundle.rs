//! JWT bundles: the JWT-SVID signing keys of each trust domain, read from a JWK Set or a SPIFFE
//! bundle document (SPIFFE Trust Domain and Bundle, section 4).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::json_object::JsonObject;
use super::key::JwtKey;
use crate::spiffe_id::TrustDomain;

/// Why a JWT bundle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtBundleError {
    /// Not a JSON object with a `keys` array.
    #[error("not a JWK Set or SPIFFE bundle: {0}")]
    Document(String),
    /// A key of the set is unusable.
    #[error("key {index}: {reason}")]
    Key {
        /// Its position in `keys`.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Two keys share a key ID.
    #[error("key ID {0:?} appears more than once")]
    DuplicateKid(String),
}

#[derive(Deserialize)]
struct Document {
    keys: Option<Vec<JsonObject>>,
}

/// The JWT-SVID keys of one trust domain, by key ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtBundle {
    trust_domain: TrustDomain,
    keys: HashMap<String, JwtKey>,
}

impl JwtBundle {
    /// A bundle holding `keys`.
    ///
    /// # Errors
    /// [`JwtBundleError::DuplicateKid`] when two keys share an ID.
    pub fn new(
        trust_domain: TrustDomain,
        keys: impl IntoIterator<Item = JwtKey>,
    ) -> Result<Self, JwtBundleError> {
        let mut by_kid = HashMap::new();
        for key in keys {
            let kid = key.kid().to_owned();
            if by_kid.insert(kid.clone(), key).is_some() {
                return Err(JwtBundleError::DuplicateKid(kid));
            }
        }
        Ok(Self {
            trust_domain,
            keys: by_kid,
        })
    }

    /// Reads the JWT-SVID keys of a JWK Set or a SPIFFE bundle document.
    ///
    /// Keys whose `use` is `jwt-svid`, `sig` or absent are JWT keys; `x509-svid` keys (X.509
    /// roots) and any other `use` are skipped. Each JWT key must be a public RSA (2048 to 8192
    /// bits) or P-256/P-384/P-521 EC key with a key ID; no member may appear twice; `"keys":
    /// []` is a valid bundle that trusts nothing.
    ///
    /// # Errors
    /// A [`JwtBundleError`] naming the document's or the key's fault.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::jwt::JwtBundle;
    ///
    /// let jwks = br#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "jwt-svid",
    ///   "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    ///   "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    /// let bundle = JwtBundle::parse("example.org".parse()?, jwks)?;
    /// assert!(bundle.key("k1").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, JwtBundleError> {
        JsonObject::parse(json).map_err(JwtBundleError::Document)?;
        let document: Document =
            serde_json::from_slice(json).map_err(|e| JwtBundleError::Document(e.to_string()))?;
        let keys = document
            .keys
            .ok_or_else(|| JwtBundleError::Document("no \"keys\"".to_owned()))?;
        let mut jwt_keys = Vec::new();
        for (index, jwk) in keys.iter().enumerate() {
            let key_use = match jwk.get("use") {
                None => None,
                Some(Value::String(text)) => Some(text.as_str()),
                Some(_) => {
                    return Err(JwtBundleError::Key {
                        index,
                        reason: "\"use\" is not a string".to_owned(),
                    });
                }
            };
            if matches!(key_use, None | Some("jwt-svid" | "sig")) {
                let key = JwtKey::from_jwk(jwk)
                    .map_err(|reason| JwtBundleError::Key { index, reason })?;
                jwt_keys.push(key);
            }
        }
        Self::new(trust_domain, jwt_keys)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The key with this ID.
    pub fn key(&self, kid: &str) -> Option<&JwtKey> {
        self.keys.get(kid)
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &JwtKey> {
        self.keys.values()
    }

    /// The bundle as a JWK Set (keys sorted by ID, `use` `jwt-svid`), as `jwt bundles
    /// --write` and the dev server publish it.
    pub fn to_jwks(&self) -> Value {
        let mut keys: Vec<&JwtKey> = self.keys.values().collect();
        keys.sort_by(|a, b| a.kid().cmp(b.kid()));
        serde_json::json!({ "keys": keys.iter().map(|k| k.to_jwk()).collect::<Vec<_>>() })
    }
}

/// The JWT bundles of several trust domains: the local one and federated ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtBundleSet {
    bundles: HashMap<TrustDomain, JwtBundle>,
}

impl JwtBundleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bundle`, replacing any bundle of its trust domain.
    pub fn insert(&mut self, bundle: JwtBundle) {
        self.bundles.insert(bundle.trust_domain.clone(), bundle);
    }

    /// The bundle of `trust_domain`.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&JwtBundle> {
        self.bundles.get(trust_domain)
    }

    /// The bundles, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &JwtBundle> {
        self.bundles.values()
    }

    /// How many trust domains.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl FromIterator<JwtBundle> for JwtBundleSet {
    fn from_iter<I: IntoIterator<Item = JwtBundle>>(iter: I) -> Self {
        let mut set = Self::new();
        for bundle in iter {
            set.insert(bundle);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn td() -> TrustDomain {
        "example.org".parse().unwrap()
    }

    fn ec(extra: &str) -> String {
        format!(r#"{{"kty":"EC","crv":"P-256","x":"{X}","y":"{Y}"{extra}}}"#)
    }

    fn parse(keys: &[String]) -> Result<JwtBundle, JwtBundleError> {
        JwtBundle::parse(
            td(),
            format!(r#"{{"keys":[{}]}}"#, keys.join(",")).as_bytes(),
        )
    }

    #[test]
    fn jwt_keys_are_read_and_x509_keys_skipped() {
        let bundle = parse(&[
            ec(r#","kid":"a","use":"jwt-svid""#),
            ec(r#","kid":"b""#),
            ec(r#","kid":"c","use":"sig""#),
            r#"{"use":"x509-svid","kty":"EC","x5c":["AA=="]}"#.to_owned(),
            ec(r#","kid":"d","use":"enc""#),
        ])
        .unwrap();
        let mut kids: Vec<&str> = bundle.keys().map(JwtKey::kid).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["a", "b", "c"]);
        let round_trip = JwtBundle::parse(td(), bundle.to_jwks().to_string().as_bytes()).unwrap();
        assert_eq!(round_trip, bundle);
        assert!(parse(&[]).unwrap().keys().next().is_none());
    }

    #[test]
    fn each_key_rule_refuses_its_breaker() {
        let cases = [
            (ec(""), "no \"kid\""),
            (ec(r#","kid":"""#), "no \"kid\""),
            (ec(r#","kid":"a","d":"AAAA""#), "private key member \"d\""),
            (ec(r#","kid":"a","alg":"ES384""#), "does not suit"),
            (ec(r#","kid":"a","alg":"HS256""#), "HMAC"),
            (
                format!(r#"{{"kty":"EC","crv":"P-256K","kid":"a","x":"{X}","y":"{Y}"}}"#),
                "curve",
            ),
            (
                format!(r#"{{"kty":"EC","crv":"P-384","kid":"a","x":"{X}","y":"{Y}"}}"#),
                "48 bytes",
            ),
            (
                r#"{"kty":"oct","kid":"a","k":"c2VjcmV0"}"#.to_owned(),
                "private key member \"k\"",
            ),
            (r#"{"kty":"oct","kid":"a"}"#.to_owned(), "symmetric"),
            (
                r#"{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}"#.to_owned(),
                "RSA modulus of 17 bits",
            ),
            (
                format!(r#"{{"kty":"EC","crv":"P-256","kid":"a","x":"{X}=","y":"{Y}"}}"#),
                "base64url",
            ),
            (
                format!(r#"{{"kty":"EC","crv":"P-256","kid":"a","kid":"b","x":"{X}","y":"{Y}"}}"#),
                "more than once",
            ),
        ];
        for (jwk, expected) in cases {
            let error = parse(std::slice::from_ref(&jwk)).unwrap_err().to_string();
            assert!(error.contains(expected), "{jwk}: {error}");
        }
        let error = parse(&[ec(r#","kid":"a""#), ec(r#","kid":"a""#)]).unwrap_err();
        assert_eq!(error, JwtBundleError::DuplicateKid("a".into()));
        assert!(JwtBundle::parse(td(), b"{}").is_err());
        assert!(JwtBundle::parse(td(), b"[]").is_err());
    }
}
