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

mod canonical_path;
mod policy;
mod watched_policy;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

pub use canonical_path::{PathError, canonical_path};
pub use policy::{Policy, PolicyError};
#[cfg(feature = "http")]
pub(crate) use watched_policy::PolicyRef;
pub use watched_policy::{POLICY_POLL_INTERVAL, WatchedPolicy};

use crate::spiffe_id::{SpiffeId, TrustDomain};

/// A verified peer that a rule did not allow: "expected (the rule), presented (the ID)".
///
/// ```
/// use spiffe_mtls::authorize;
///
/// let error = authorize::id("spiffe://example.org/a".parse()?)
///     .authorize(&"spiffe://example.org/b".parse()?)
///     .unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "expected the ID spiffe://example.org/a, presented spiffe://example.org/b"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {rule}, presented {id}")]
pub struct AuthorizeError {
    /// The peer's SPIFFE ID.
    pub id: SpiffeId,
    /// The rule that refused it, described as what it expects (the [`Authorizer`]'s
    /// `Display`).
    pub rule: String,
}

/// A server that a client's rule refused, as the payload of the rustls error the client's
/// verifier returns (`CertificateError::Other`). rustls shows that payload with `Debug`, so
/// its `Debug` is its sentence: "the server is not authorized: expected ..., presented ...".
#[derive(Clone, thiserror::Error)]
#[error("the server is not authorized: {0}")]
pub(crate) struct ServerNotAuthorized(pub(crate) AuthorizeError);

impl fmt::Debug for ServerNotAuthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A rule over SPIFFE IDs. Clones share the rule.
#[derive(Clone)]
pub struct Authorizer {
    rule: Arc<Rule>,
    /// The SHA-256 (hex) of the policy file text the rule comes from.
    policy_sha256: Option<Arc<str>>,
}

type Predicate = dyn Fn(&SpiffeId) -> bool + Send + Sync;
type Current = dyn Fn() -> Authorizer + Send + Sync;
type Observer = dyn Fn(&SpiffeId) + Send + Sync;

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
    /// The rule `current` returns at each decision: a reloaded policy's; `generation`
    /// counts its changes.
    Follow {
        current: Box<Current>,
        generation: Box<dyn Fn() -> u64 + Send + Sync>,
    },
    /// `inner`, with `on_refusal` told of each ID it refuses.
    Noting {
        inner: Authorizer,
        on_refusal: Box<Observer>,
    },
}

impl Authorizer {
    fn new(rule: Rule) -> Self {
        Self {
            rule: Arc::new(rule),
            policy_sha256: None,
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
            Rule::Follow { current, .. } => current().is_allowed(id),
            Rule::Noting { inner, on_refusal } => {
                let allowed = inner.is_allowed(id);
                if !allowed {
                    on_refusal(id);
                }
                allowed
            }
        }
    }

    /// A rule that decides by whatever `current` returns at each decision, and is described
    /// by it: [`WatchedPolicy::connect`] follows a policy file as it is reloaded.
    /// `generation` counts the changes of what `current` returns (it never goes down).
    pub(crate) fn following(
        current: impl Fn() -> Authorizer + Send + Sync + 'static,
        generation: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self::new(Rule::Follow {
            current: Box::new(current),
            generation: Box::new(generation),
        })
    }

    /// A counter that changes whenever the rule's answers may change, and never goes down:
    /// 0 for a fixed rule, the reload count of a followed policy, the sum over a compound's
    /// parts. Session tickets are bound to it (see `tls::resumption`).
    pub(crate) fn generation(&self) -> u64 {
        match &*self.rule {
            Rule::Follow { generation, .. } => generation(),
            Rule::Noting { inner, .. } => inner.generation(),
            Rule::AnyOf(rules) | Rule::AllOf(rules) => rules
                .iter()
                .fold(0u64, |sum, rule| sum.wrapping_add(rule.generation())),
            _ => 0,
        }
    }

    /// The same rule (same decisions, same description, following the same reloaded
    /// policy), which also calls `on_refusal` with each ID it refuses: to note a refused
    /// peer for an error message or a metric.
    #[must_use]
    pub fn on_refusal(self, on_refusal: impl Fn(&SpiffeId) + Send + Sync + 'static) -> Self {
        Self::new(Rule::Noting {
            inner: self,
            on_refusal: Box::new(on_refusal),
        })
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

/// How many IDs or trust domains a description lists before it says how many more there are.
const LISTED: usize = 8;

/// Writes `items` sorted, joined by ", " and a last " or ", at most [`LISTED`] of them.
fn list_sorted(f: &mut fmt::Formatter<'_>, mut items: Vec<String>) -> fmt::Result {
    items.sort_unstable();
    let shown = items.len().min(LISTED);
    for (i, item) in items[..shown].iter().enumerate() {
        if i > 0 {
            f.write_str(if i + 1 == shown && shown == items.len() {
                " or "
            } else {
                ", "
            })?;
        }
        f.write_str(item)?;
    }
    if items.len() > shown {
        write!(f, " or {} more", items.len() - shown)?;
    }
    Ok(())
}

impl Authorizer {
    /// The same rule, marked as coming from the policy whose text has the SHA-256 `digest`
    /// (hex).
    pub(crate) fn with_policy_digest(mut self, digest: Option<&Arc<str>>) -> Self {
        self.policy_sha256 = digest.cloned();
        self
    }

    /// The SHA-256 (hex) of the text of the policy file the rule comes from (the current
    /// one, for a rule that follows a reloaded policy); `None` for a rule made in code.
    pub fn policy_sha256(&self) -> Option<Arc<str>> {
        if let Some(digest) = &self.policy_sha256 {
            return Some(Arc::clone(digest));
        }
        match &*self.rule {
            Rule::Follow { current, .. } => current().policy_sha256(),
            Rule::Noting { inner, .. } => inner.policy_sha256(),
            Rule::AnyOf(rules) | Rule::AllOf(rules) => {
                rules.iter().find_map(Authorizer::policy_sha256)
            }
            _ => None,
        }
    }

    /// Whether the description of the rule is a list of rules (written in parentheses when
    /// inside another list).
    fn is_compound(&self) -> bool {
        match &*self.rule {
            Rule::AnyOf(rules) | Rule::AllOf(rules) => rules.len() > 1,
            Rule::Follow { current, .. } => current().is_compound(),
            Rule::Noting { inner, .. } => inner.is_compound(),
            _ => false,
        }
    }
}

impl fmt::Display for Authorizer {
    /// What the rule expects, as the object of "expected ...": `the ID spiffe://example.org/a`,
    /// `one of spiffe://example.org/a or spiffe://example.org/b`, `a member of example.org`,
    /// `spiffe://example.org/ns or an ID under it`, `any SPIFFE ID`, and lists of them joined
    /// by `, or` ([`any_of`]) and `, and` ([`all_of`]). A custom rule is described by its name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, joint: &str, rules: &[Authorizer]| {
            for (i, rule) in rules.iter().enumerate() {
                if i > 0 {
                    f.write_str(joint)?;
                }
                if rule.is_compound() {
                    write!(f, "({rule})")?;
                } else {
                    write!(f, "{rule}")?;
                }
            }
            Ok(())
        };
        match &*self.rule {
            Rule::Any => f.write_str("any SPIFFE ID"),
            Rule::Id(id) => write!(f, "the ID {id}"),
            Rule::OneOf(set) => match set.len() {
                0 => f.write_str("one of no IDs (nobody)"),
                1 => match set.iter().next() {
                    Some(id) => write!(f, "the ID {id}"),
                    None => Ok(()),
                },
                _ => {
                    f.write_str("one of ")?;
                    list_sorted(f, set.iter().map(ToString::to_string).collect())
                }
            },
            Rule::MemberOf(domains) if domains.is_empty() => {
                f.write_str("a member of no trust domain (nobody)")
            }
            Rule::MemberOf(domains) => {
                f.write_str("a member of ")?;
                list_sorted(f, domains.iter().map(ToString::to_string).collect())
            }
            Rule::IdPrefix(prefix) => write!(f, "{prefix} or an ID under it"),
            Rule::Custom { name, .. } => f.write_str(name),
            Rule::AnyOf(rules) if rules.is_empty() => f.write_str("no ID (an empty any_of)"),
            Rule::AnyOf(rules) => list(f, ", or ", rules),
            Rule::AllOf(rules) if rules.is_empty() => {
                f.write_str("any SPIFFE ID (an empty all_of)")
            }
            Rule::AllOf(rules) => list(f, ", and ", rules),
            Rule::Follow { current, .. } => write!(f, "{}", current()),
            Rule::Noting { inner, .. } => write!(f, "{inner}"),
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

/// Allows the IDs for which `predicate` holds; `name` describes it in errors and logs as what
/// it expects, read after "expected": `an agent of example.org`, say.
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

        let agents = custom("an agent", |id| id.path().starts_with("/agent/"));
        assert!(agents.is_allowed(&client));
        assert!(!agents.is_allowed(&sid("spiffe://example.org/db")));
        assert_eq!(agents.to_string(), "an agent");
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
            "expected the ID spiffe://example.org/a, presented spiffe://example.org/b"
        );
    }

    #[test]
    fn descriptions_read_as_sentences() {
        let a = sid("spiffe://example.org/a");
        let b = sid("spiffe://example.org/b");
        let cases = [
            (any(), "any SPIFFE ID"),
            (id(a.clone()), "the ID spiffe://example.org/a"),
            (one_of([a.clone()]), "the ID spiffe://example.org/a"),
            (
                one_of([b.clone(), a.clone()]),
                "one of spiffe://example.org/a or spiffe://example.org/b",
            ),
            (one_of([]), "one of no IDs (nobody)"),
            (member_of([td("example.org")]), "a member of example.org"),
            (
                member_of([td("c.org"), td("a.org"), td("b.org")]),
                "a member of a.org, b.org or c.org",
            ),
            (member_of([]), "a member of no trust domain (nobody)"),
            (
                id_prefix(sid("spiffe://example.org/ns/prod")),
                "spiffe://example.org/ns/prod or an ID under it",
            ),
            (
                any_of([id(a.clone()), member_of([td("partner.org")])]),
                "the ID spiffe://example.org/a, or a member of partner.org",
            ),
            (
                all_of([
                    member_of([td("example.org")]),
                    any_of([id(a.clone()), id(b.clone())]),
                ]),
                "a member of example.org, and (the ID spiffe://example.org/a, or the ID \
                 spiffe://example.org/b)",
            ),
            (any_of([]), "no ID (an empty any_of)"),
            (all_of([]), "any SPIFFE ID (an empty all_of)"),
        ];
        for (rule, text) in cases {
            assert_eq!(rule.to_string(), text);
        }
        let many = one_of((0..20).map(|i| sid(&format!("spiffe://example.org/w{i:02}"))));
        assert!(
            many.to_string()
                .ends_with("spiffe://example.org/w07 or 12 more"),
            "{many}"
        );
    }
}
