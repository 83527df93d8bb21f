//! The signature algorithms a JWT-SVID may use: exactly the nine of the JWT-SVID
//! specification, section 2.1 (RFC 7518 sections 3.3 to 3.5). Everything else is refused by
//! name, `none` and the HMAC family first among them.

use std::fmt;
use std::str::FromStr;

/// A JWS `alg` the JWT-SVID specification allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 using SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 using SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 using SHA-512.
    RS512,
    /// ECDSA using P-256 and SHA-256.
    ES256,
    /// ECDSA using P-384 and SHA-384.
    ES384,
    /// ECDSA using P-521 and SHA-512.
    ES512,
    /// RSASSA-PSS using SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS using SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS using SHA-512 and MGF1 with SHA-512.
    PS512,
}

/// The family of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    /// An RSA key.
    Rsa,
    /// An EC key on this curve (its JWK `crv` name).
    Ec(&'static str),
}

impl Algorithm {
    /// Every algorithm, in the specification's order.
    pub const ALL: [Self; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
    ];

    /// Its JWS name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
        }
    }

    pub(crate) fn key_family(self) -> KeyFamily {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyFamily::Rsa
            }
            Self::ES256 => KeyFamily::Ec("P-256"),
            Self::ES384 => KeyFamily::Ec("P-384"),
            Self::ES512 => KeyFamily::Ec("P-521"),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    /// Exactly the nine names, case-sensitive (RFC 7515: `alg` is case-sensitive).
    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name)
            .ok_or_else(|| match name {
                "none" => "\"none\" (an unsigned token)".to_owned(),
                hmac if hmac.starts_with("HS") => {
                    format!("{hmac:?} (HMAC: a shared secret, never a JWT-SVID)")
                }
                other => format!("{other:?}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_nine_names_parse() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
        for refused in [
            "none", "HS256", "HS512", "es256", "EdDSA", "ES256K", "RS1", "",
        ] {
            assert!(refused.parse::<Algorithm>().is_err(), "{refused}");
        }
        assert!("HS256".parse::<Algorithm>().unwrap_err().contains("HMAC"));
    }
}
