//! SPIFFE IDs and trust domains, parsed exactly as the
//! [SPIFFE ID specification](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md)
//! says.
//!
//! These types wrap the `spiffe` crate's [`spiffe::SpiffeId`] and [`spiffe::TrustDomain`] and add
//! the checks it leaves out: the `spiffe` crate folds an upper-case scheme or trust domain to lower
//! case, while the specification makes both lower case only, so `SPIFFE://Example.org/x` is
//! rejected here instead of silently becoming `spiffe://example.org/x`.

use std::fmt;
use std::str::FromStr;

/// The only scheme a SPIFFE ID may have, with its separator.
const SCHEME_PREFIX: &str = "spiffe://";

/// Why a string is not a SPIFFE ID or a trust domain name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The scheme is not exactly `spiffe` followed by `://` (upper case included).
    #[error("{value:?} is not a SPIFFE ID: the scheme must be exactly \"spiffe://\"")]
    WrongScheme {
        /// The rejected input.
        value: String,
    },
    /// The trust domain holds an upper-case letter; the specification allows lower case only.
    #[error("{value:?}: the trust domain must be lower case")]
    UpperCaseTrustDomain {
        /// The rejected input.
        value: String,
    },
    /// A trust domain was given in the `spiffe://` form where a bare name is expected.
    #[error(
        "{value:?}: a trust domain is a bare name such as \"example.org\", without scheme or path"
    )]
    NotABareTrustDomain {
        /// The rejected input.
        value: String,
    },
    /// Any other rule of the specification, as the `spiffe` crate reports it.
    #[error("{value:?} is not valid: {reason}")]
    Invalid {
        /// The rejected input.
        value: String,
        /// The broken rule.
        reason: spiffe::SpiffeIdError,
    },
}

/// A SPIFFE ID such as `spiffe://example.org/agent/client`, valid by construction.
///
/// # Example
/// ```
/// use spiffe_mtls::SpiffeId;
///
/// let id: SpiffeId = "spiffe://example.org/agent/client".parse()?;
/// assert_eq!(id.trust_domain().as_str(), "example.org");
/// assert_eq!(id.path(), "/agent/client");
/// assert!("spiffe://Example.org/agent".parse::<SpiffeId>().is_err());
/// # Ok::<(), spiffe_mtls::IdError>(())
/// ```
#[derive(Clone)]
pub struct SpiffeId {
    inner: spiffe::SpiffeId,
    trust_domain: TrustDomain,
}

impl SpiffeId {
    /// Parses a SPIFFE ID.
    ///
    /// # Errors
    /// [`IdError`] naming the broken rule: wrong or upper-case scheme, upper-case, empty or
    /// malformed trust domain, empty, `.` or `..` path segment, trailing slash, a character
    /// outside the allowed sets (which also rules out ports, user info, percent-encoding, query
    /// and fragment).
    pub fn new(value: &str) -> Result<Self, IdError> {
        let Some(rest) = value.strip_prefix(SCHEME_PREFIX) else {
            return Err(IdError::WrongScheme {
                value: value.to_owned(),
            });
        };
        let trust_domain = rest.split('/').next().unwrap_or_default();
        if trust_domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(IdError::UpperCaseTrustDomain {
                value: value.to_owned(),
            });
        }
        let inner = spiffe::SpiffeId::new(value).map_err(|reason| IdError::Invalid {
            value: value.to_owned(),
            reason,
        })?;
        Ok(Self::from(inner))
    }

    /// The trust domain the ID belongs to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, `""` for the ID of a trust domain itself, else starting with `/`.
    pub fn path(&self) -> &str {
        self.inner.path()
    }

    /// Whether the path is `prefix` or lies below it, segment by segment:
    /// `/ns/prod` covers `/ns/prod` and `/ns/prod/x`, not `/ns/production`.
    pub fn path_is_within(&self, prefix: &str) -> bool {
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        match self.path().strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// The `spiffe` crate's type for the same ID.
    pub fn as_spiffe(&self) -> &spiffe::SpiffeId {
        &self.inner
    }
}

impl From<spiffe::SpiffeId> for SpiffeId {
    /// The `spiffe` crate's IDs are already lower case, hence always valid here.
    fn from(inner: spiffe::SpiffeId) -> Self {
        let trust_domain = TrustDomain {
            inner: inner.trust_domain().clone(),
        };
        Self {
            inner,
            trust_domain,
        }
    }
}

// Equality, order and hash follow the ID alone; `trust_domain` is a copy of part of it.
impl PartialEq for SpiffeId {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for SpiffeId {}

impl std::hash::Hash for SpiffeId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl PartialOrd for SpiffeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpiffeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.inner.cmp(&other.inner)
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;
    fn from_str(value: &str) -> Result<Self, IdError> {
        Self::new(value)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({self})")
    }
}

/// A trust domain name such as `example.org`, valid by construction.
///
/// # Example
/// ```
/// use spiffe_mtls::TrustDomain;
///
/// let td: TrustDomain = "example.org".parse()?;
/// assert_eq!(td.id_string(), "spiffe://example.org");
/// assert!("Example.org".parse::<TrustDomain>().is_err());
/// # Ok::<(), spiffe_mtls::IdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain {
    inner: spiffe::TrustDomain,
}

impl TrustDomain {
    /// Parses a bare trust domain name.
    ///
    /// # Errors
    /// [`IdError`] when the name is empty, longer than 255 bytes, has upper-case letters or any
    /// character outside `a-z 0-9 . - _`, or is given as a `spiffe://` URI.
    pub fn new(name: &str) -> Result<Self, IdError> {
        if name.contains(':') || name.contains('/') {
            return Err(IdError::NotABareTrustDomain {
                value: name.to_owned(),
            });
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(IdError::UpperCaseTrustDomain {
                value: name.to_owned(),
            });
        }
        let inner = spiffe::TrustDomain::new(name).map_err(|reason| IdError::Invalid {
            value: name.to_owned(),
            reason,
        })?;
        Ok(Self { inner })
    }

    /// The name, e.g. `example.org`.
    pub fn as_str(&self) -> &str {
        self.inner.as_str()
    }

    /// The SPIFFE ID of the trust domain itself, e.g. `spiffe://example.org`.
    pub fn id_string(&self) -> String {
        self.inner.id_string()
    }

    /// The `spiffe` crate's type for the same trust domain.
    pub fn as_spiffe(&self) -> &spiffe::TrustDomain {
        &self.inner
    }
}

impl From<spiffe::TrustDomain> for TrustDomain {
    fn from(inner: spiffe::TrustDomain) -> Self {
        Self { inner }
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;
    fn from_str(name: &str) -> Result<Self, IdError> {
        Self::new(name)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustDomain({})", self.as_str())
    }
}

/// Serde support: IDs and trust domains are strings, parsed strictly on the way in.
macro_rules! string_serde {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                value.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(SpiffeId);
string_serde!(TrustDomain);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_examples() {
        for ok in [
            "spiffe://example.org",
            "spiffe://example.org/agent/client",
            "spiffe://a-b_c.d/x.y/Z-9_",
            "spiffe://staging.example.org/payments/mysql",
        ] {
            assert!(SpiffeId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_each_broken_rule() {
        for bad in [
            "",
            "SPIFFE://example.org/x",
            "Spiffe://example.org/x",
            "spiffe://Example.org/x",
            "spiffe://EXAMPLE.ORG",
            "https://example.org/x",
            "spiffe:/example.org/x",
            "spiffe://",
            "spiffe:///x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/./x",
            "spiffe://example.org/../x",
            "spiffe://example.org/x/..",
            "spiffe://example.org:8080/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org/x%20y",
            "spiffe://example.org/x?q=1",
            "spiffe://example.org/x#frag",
            "spiffe://exa mple.org/x",
            "spiffe://example.org/x y",
            "spiffe://exämple.org/x",
        ] {
            assert!(SpiffeId::new(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn accepts_ids_of_2048_bytes() {
        let prefix = "spiffe://example.org/";
        let id = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
        assert_eq!(id.len(), 2048);
        assert!(SpiffeId::new(&id).is_ok());
    }

    #[test]
    fn trust_domain_length_limit() {
        assert!(TrustDomain::new(&"a".repeat(255)).is_ok());
        assert!(TrustDomain::new(&"a".repeat(256)).is_err());
    }

    #[test]
    fn upper_case_error_names_the_rule() {
        let err = SpiffeId::new("spiffe://Example.org/x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"spiffe://Example.org/x\": the trust domain must be lower case"
        );
        let err = SpiffeId::new("SPIFFE://example.org/x").unwrap_err();
        assert!(err.to_string().contains("scheme must be exactly"));
    }

    #[test]
    fn upper_case_path_is_allowed() {
        assert_eq!(
            SpiffeId::new("spiffe://example.org/Agent").unwrap().path(),
            "/Agent"
        );
    }

    #[test]
    fn trust_domain_must_be_bare() {
        for bad in [
            "",
            "spiffe://example.org",
            "example.org/x",
            "Example.org",
            "a b",
        ] {
            assert!(TrustDomain::new(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn path_prefix_respects_segments() {
        let id = SpiffeId::new("spiffe://example.org/ns/prod/x").unwrap();
        assert!(id.path_is_within("/ns/prod"));
        assert!(id.path_is_within("/ns/prod/"));
        assert!(id.path_is_within("/ns/prod/x"));
        assert!(id.path_is_within(""));
        assert!(!id.path_is_within("/ns/pro"));
        let other = SpiffeId::new("spiffe://example.org/ns/production").unwrap();
        assert!(!other.path_is_within("/ns/prod"));
    }
}
