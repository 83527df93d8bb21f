//! Authorization: which verified SPIFFE IDs may connect, call a route or use an A2A skill.
//!
//! An [`Authorizer`] is built once and is cheap to call on every handshake or request: exact
//! sets are hash lookups, never scans. Constructors read like sentences, after go-spiffe's:
//!
//! ```
//! use spiffe_mtls::authorize;
//!
//! let rule = authorize::any_of([
//!     authorize::id("spiffe://example.org/agent/client".parse()?),
//!     authorize::id_prefix("spiffe://example.org/ns/prod".parse()?),
//! ]);
//! assert!(rule.authorize(&"spiffe://example.org/ns/prod/worker".parse()?).is_ok());
//! assert!(rule.authorize(&"spiffe://example.org/ns/production".parse()?).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Rules per route or skill come from a TOML [`Policy`] file.

mod policy;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

pub use policy::{Policy, PolicyError};

use crate::spiffe_id::{SpiffeId, TrustDomain};

/// A verified peer that a rule did not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id} is not authorized: {rule}")]
pub struct AuthorizeError {
    /// The peer's SPIFFE ID.
    pub id: SpiffeId,
    /// The rule that refused it, described.
    pub rule: String,
}

/// A rule over SPIFFE IDs. Clones share the rule.
#[derive(Clone)]
pub struct Authorizer {
    rule: Arc<Rule>,
}

type Predicate = dyn Fn(&SpiffeId) -> bool + Send + Sync;

enum Rule {
    Any,
    Id(SpiffeId),
    OneOf(HashSet<SpiffeId>),
    MemberOf(HashSet<TrustDomain>),
    IdPrefix(SpiffeId),
    Custom {
        name: String,
        predicate: Box<Predicate>,
    },
    AnyOf(Vec<Authorizer>),
    AllOf(Vec<Authorizer>),
}

impl Authorizer {
    fn new(rule: Rule) -> Self {
        Self {
            rule: Arc::new(rule),
        }
    }

    /// Whether the rule allows `id`.
    pub fn is_allowed(&self, id: &SpiffeId) -> bool {
        match &*self.rule {
            Rule::Any => true,
            Rule::Id(allowed) => allowed == id,
            Rule::OneOf(set) => set.contains(id),
            Rule::MemberOf(domains) => domains.contains(id.trust_domain()),
            Rule::IdPrefix(prefix) => {
                prefix.trust_domain() == id.trust_domain() && id.path_is_within(prefix.path())
            }
            Rule::Custom { predicate, .. } => predicate(id),
            Rule::AnyOf(rules) => rules.iter().any(|r| r.is_allowed(id)),
            Rule::AllOf(rules) => rules.iter().all(|r| r.is_allowed(id)),
        }
    }

    /// Allows `id` or says which rule refused it.
    ///
    /// # Errors
    /// [`AuthorizeError`] naming the peer and the rule.
    pub fn authorize(&self, id: &SpiffeId) -> Result<(), AuthorizeError> {
        if self.is_allowed(id) {
            return Ok(());
        }
        Err(AuthorizeError {
            id: id.clone(),
            rule: self.to_string(),
        })
    }
}

impl fmt::Display for Authorizer {
    /// A short description of the rule, for logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, rules: &[Authorizer]| {
            write!(f, "{name}(")?;
            for (i, rule) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{rule}")?;
            }
            f.write_str(")")
        };
        match &*self.rule {
            Rule::Any => f.write_str("any"),
            Rule::Id(id) => write!(f, "id {id}"),
            Rule::OneOf(set) => write!(f, "one of {} IDs", set.len()),
            Rule::MemberOf(domains) => {
                let mut names: Vec<_> = domains.iter().map(TrustDomain::as_str).collect();
                names.sort_unstable();
                write!(f, "member of {}", names.join(", "))
            }
            Rule::IdPrefix(prefix) => write!(f, "ID under {prefix}"),
            Rule::Custom { name, .. } => write!(f, "custom rule {name}"),
            Rule::AnyOf(rules) => list(f, "any of", rules),
            Rule::AllOf(rules) => list(f, "all of", rules),
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authorizer({self})")
    }
}

/// Allows any peer with a valid SVID of a trusted trust domain. Say it on purpose.
pub fn any() -> Authorizer {
    Authorizer::new(Rule::Any)
}

/// Allows exactly `id`.
pub fn id(id: SpiffeId) -> Authorizer {
    Authorizer::new(Rule::Id(id))
}

/// Allows any of `ids`, by hash lookup.
pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Authorizer {
    Authorizer::new(Rule::OneOf(ids.into_iter().collect()))
}

/// Allows any ID of the given trust domains.
pub fn member_of(trust_domains: impl IntoIterator<Item = TrustDomain>) -> Authorizer {
    Authorizer::new(Rule::MemberOf(trust_domains.into_iter().collect()))
}

/// Allows `prefix` and IDs below it in the same trust domain, segment by segment:
/// `spiffe://example.org/ns/prod` allows `.../ns/prod/x`, not `.../ns/production`.
pub fn id_prefix(prefix: SpiffeId) -> Authorizer {
    Authorizer::new(Rule::IdPrefix(prefix))
}

/// Allows the IDs for which `predicate` holds; `name` describes it in errors and logs.
pub fn custom(
    name: impl Into<String>,
    predicate: impl Fn(&SpiffeId) -> bool + Send + Sync + 'static,
) -> Authorizer {
    Authorizer::new(Rule::Custom {
        name: name.into(),
        predicate: Box::new(predicate),
    })
}

/// Allows an ID that any of `rules` allows; with no rule, allows nobody.
pub fn any_of(rules: impl IntoIterator<Item = Authorizer>) -> Authorizer {
    Authorizer::new(Rule::AnyOf(rules.into_iter().collect()))
}

/// Allows an ID that all of `rules` allow; with no rule, allows everybody.
pub fn all_of(rules: impl IntoIterator<Item = Authorizer>) -> Authorizer {
    Authorizer::new(Rule::AllOf(rules.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    fn td(s: &str) -> TrustDomain {
        s.parse().unwrap()
    }

    #[test]
    fn each_rule_allows_and_denies() {
        let client = sid("spiffe://example.org/agent/client");
        let other = sid("spiffe://example.org/agent/other");
        let partner = sid("spiffe://partner.org/agent/client");

        assert!(any().is_allowed(&partner));
        assert!(id(client.clone()).is_allowed(&client));
        assert!(!id(client.clone()).is_allowed(&other));
        assert!(!id(client.clone()).is_allowed(&partner));

        let set = one_of([client.clone(), partner.clone()]);
        assert!(set.is_allowed(&partner) && !set.is_allowed(&other));

        let domain = member_of([td("partner.org")]);
        assert!(domain.is_allowed(&partner) && !domain.is_allowed(&client));

        let agents = custom("agents", |id| id.path().starts_with("/agent/"));
        assert!(agents.is_allowed(&client));
        assert!(!agents.is_allowed(&sid("spiffe://example.org/db")));
        assert_eq!(agents.to_string(), "custom rule agents");
    }

    #[test]
    fn prefix_respects_segments_and_trust_domain() {
        let prod = id_prefix(sid("spiffe://example.org/ns/prod"));
        assert!(prod.is_allowed(&sid("spiffe://example.org/ns/prod")));
        assert!(prod.is_allowed(&sid("spiffe://example.org/ns/prod/x")));
        assert!(!prod.is_allowed(&sid("spiffe://example.org/ns/production")));
        assert!(!prod.is_allowed(&sid("spiffe://example.org/ns")));
        assert!(!prod.is_allowed(&sid("spiffe://other.org/ns/prod/x")));
    }

    #[test]
    fn combinators() {
        let a = sid("spiffe://example.org/a");
        let b = sid("spiffe://example.org/b");
        let either = any_of([id(a.clone()), id(b.clone())]);
        assert!(either.is_allowed(&a) && either.is_allowed(&b));
        let both = all_of([member_of([td("example.org")]), id(a.clone())]);
        assert!(both.is_allowed(&a) && !both.is_allowed(&b));
        assert!(!any_of([]).is_allowed(&a));
        assert!(all_of([]).is_allowed(&a));
    }

    #[test]
    fn error_names_peer_and_rule() {
        let err = id(sid("spiffe://example.org/a"))
            .authorize(&sid("spiffe://example.org/b"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "spiffe://example.org/b is not authorized: id spiffe://example.org/a"
        );
    }
}
