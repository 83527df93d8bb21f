//! Authorization policy files (TOML): who may connect, and who may call each named route or
//! A2A skill.
//!
//! ```toml
//! revoked = ["spiffe://example.org/agent/rogue"]   # refused everywhere, whatever else allows
//!
//! [connect]        # who may complete a handshake; absent = any valid SVID of a trusted domain
//! trust_domains = ["example.org", "partner.org"]
//!
//! [routes.echo]    # a route, or an A2A skill id; a peer matching ANY list is allowed
//! ids = ["spiffe://example.org/agent/client"]
//! id_prefixes = ["spiffe://example.org/ns/prod"]   # segment-aware
//! trust_domains = ["partner.org"]
//! ```
//!
//! `[connect]` takes the same three lists as a route. A route the file does not name is
//! denied. An ID in `revoked` is refused at the handshake and on every route and skill. Unknown keys and invalid IDs are errors that name their line.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::canonical_path::canonical_path;

use super::{
    AuthorizeError, Authorizer, all_of, any, any_of, custom, id, id_prefix, member_of, one_of,
};
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid, has an unknown key, or holds an invalid ID or trust domain.
    #[error("policy line {line}: {message}")]
    Invalid {
        /// 1-based line of the offending value.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    revoked: Vec<SpiffeId>,
    connect: Option<RuleLists>,
    #[serde(default)]
    routes: BTreeMap<String, RuleLists>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleLists {
    #[serde(default)]
    ids: Vec<SpiffeId>,
    #[serde(default)]
    id_prefixes: Vec<SpiffeId>,
    #[serde(default)]
    trust_domains: Vec<TrustDomain>,
}

impl RuleLists {
    /// A peer matching any list is allowed.
    fn into_authorizer(self) -> Authorizer {
        let mut rules = Vec::new();
        match self.ids.len() {
            0 => {}
            1 => rules.extend(self.ids.into_iter().map(id)),
            _ => rules.push(one_of(self.ids)),
        }
        rules.extend(self.id_prefixes.into_iter().map(id_prefix));
        if !self.trust_domains.is_empty() {
            rules.push(member_of(self.trust_domains));
        }
        match rules.len() {
            1 => rules.remove(0),
            _ => any_of(rules),
        }
    }
}

/// An authorization policy: a connection rule and a rule per named route or skill.
///
/// # Example
/// ```
/// use spiffe_mtls::Policy;
///
/// let policy = Policy::from_toml(r#"
///     [routes.echo]
///     ids = ["spiffe://example.org/agent/client"]
/// "#)?;
/// let client = "spiffe://example.org/agent/client".parse()?;
/// assert!(policy.authorize_route("echo", &client).is_ok());
/// assert!(policy.authorize_route("admin", &client).is_err()); // not named: denied
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    sha256: Option<Arc<str>>,
    revoked: Arc<[SpiffeId]>,
    connect: Authorizer,
    routes: HashMap<String, Authorizer>,
}

impl Policy {
    /// Parses a policy from TOML text.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] naming the line of the first problem.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Invalid {
            line: e.span().map_or(1, |span| line_of(text, span.start)),
            message: e.message().trim().to_owned(),
        })?;
        check_path_routes(text, file.routes.keys())?;
        let revoked: Arc<[SpiffeId]> = Arc::from(file.revoked);
        let not_revoked = (!revoked.is_empty()).then(|| {
            let listed = Arc::clone(&revoked);
            custom(NOT_REVOKED, move |id| !listed.contains(id))
        });
        // Described as a sentence: "an ID not on the policy's revoked list, and a member of
        // example.org"; with no `[connect]`, the revocation alone.
        let connect = match (not_revoked, file.connect) {
            (None, connect) => connect.map_or_else(any, RuleLists::into_authorizer),
            (Some(not_revoked), None) => not_revoked,
            (Some(not_revoked), Some(lists)) => all_of([not_revoked, lists.into_authorizer()]),
        };
        let sha256: Option<Arc<str>> = crate::audit::sha256_hex(text.as_bytes()).map(Arc::from);
        Ok(Self {
            revoked,
            connect: connect.with_policy_digest(sha256.as_ref()),
            routes: file
                .routes
                .into_iter()
                .map(|(name, lists)| {
                    let rule = lists.into_authorizer();
                    (name, rule.with_policy_digest(sha256.as_ref()))
                })
                .collect(),
            sha256,
        })
    }

    /// The SHA-256 (hex) of the policy's text: audit events name the policy that decided by
    /// it (`None` without a crypto provider to hash with).
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// Reads and parses a policy file.
    ///
    /// # Errors
    /// [`PolicyError`] when the file is unreadable or invalid.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// The IDs the policy revokes: refused by [`connect`](Self::connect) and
    /// [`authorize_route`](Self::authorize_route), whatever else allows them; pass them to
    /// [`net::check_peer`](crate::net::check_peer) to close their live connections.
    pub fn revoked(&self) -> &[SpiffeId] {
        &self.revoked
    }

    /// Who may complete a handshake (never an ID of [`revoked`](Self::revoked)).
    pub fn connect(&self) -> &Authorizer {
        &self.connect
    }

    /// The rule of a route or skill, if the policy names it.
    pub fn route(&self, name: &str) -> Option<&Authorizer> {
        self.routes.get(name)
    }

    /// The names of the routes and skills the policy names.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Allows `id` on `route`: the peer must pass the connection rule and the route's rule;
    /// a route the policy does not name is denied.
    ///
    /// # Errors
    /// [`AuthorizeError`] naming the peer and why.
    pub fn authorize_route(&self, route: &str, id: &SpiffeId) -> Result<(), AuthorizeError> {
        if self.revoked.contains(id) {
            return Err(AuthorizeError {
                id: id.clone(),
                rule: NOT_REVOKED.to_owned(),
            });
        }
        self.connect.authorize(id).map_err(|e| AuthorizeError {
            rule: format!("connection rule {}", e.rule),
            ..e
        })?;
        match self.routes.get(route) {
            Some(rule) => rule.authorize(id).map_err(|e| AuthorizeError {
                rule: format!("route {route:?} allows {}", e.rule),
                ..e
            }),
            None => Err(AuthorizeError {
                id: id.clone(),
                rule: format!("route {route:?} is not in the policy"),
            }),
        }
    }
}

/// What a revoked ID fails, read after "expected".
const NOT_REVOKED: &str = "an ID not on the policy's revoked list";

/// Path routes (names starting with `/`) must have a [canonical form](canonical_path), which
/// is what requests are matched on, and no two may share one: `/a/../b` could never match,
/// and `/%61dmin` beside `/admin` would be two rules for one path.
fn check_path_routes<'a>(
    text: &str,
    names: impl Iterator<Item = &'a String>,
) -> Result<(), PolicyError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for name in names.filter(|name| name.starts_with('/')) {
        let invalid = |message: String| PolicyError::Invalid {
            line: text
                .find(name.as_str())
                .map_or(1, |offset| line_of(text, offset)),
            message,
        };
        let canonical = canonical_path(name)
            .map_err(|error| invalid(format!("route {name:?} is not a usable path: {error}")))?;
        if let Some(other) = seen.insert(canonical.clone().into_owned(), name) {
            return Err(invalid(format!(
                "routes {other:?} and {name:?} name the same path {canonical:?}"
            )));
        }
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_id_is_refused_everywhere_and_no_other_is() {
        let policy = Policy::from_toml(
            "revoked = [\"spiffe://example.org/agent/rogue\"]\n\
             [routes.echo]\n\
             trust_domains = [\"example.org\"]\n",
        )
        .unwrap();
        let rogue: SpiffeId = "spiffe://example.org/agent/rogue".parse().unwrap();
        let good: SpiffeId = "spiffe://example.org/agent/good".parse().unwrap();
        assert_eq!(policy.revoked(), std::slice::from_ref(&rogue));
        // The route's rule allows every ID of example.org, the rogue's included: revoked wins.
        let error = policy.authorize_route("echo", &rogue).unwrap_err();
        assert_eq!(error.rule, "an ID not on the policy's revoked list");
        assert!(!policy.connect().is_allowed(&rogue));
        assert_eq!(
            policy.connect().authorize(&rogue).unwrap_err().rule,
            "an ID not on the policy's revoked list"
        );
        // Its good twin.
        assert!(policy.authorize_route("echo", &good).is_ok());
        assert!(policy.connect().is_allowed(&good));
        // Without the list, the rogue is an ID like any other.
        let open = Policy::from_toml("[routes.echo]\ntrust_domains = [\"example.org\"]\n").unwrap();
        assert!(open.authorize_route("echo", &rogue).is_ok());
        assert!(open.revoked().is_empty());
    }

    #[test]
    fn an_invalid_revoked_id_names_its_line() {
        let error = Policy::from_toml("\nrevoked = [\"spiffe://Example.org/x\"]\n").unwrap_err();
        assert!(error.to_string().starts_with("policy line 2: "), "{error}");
    }

    #[test]
    fn path_routes_need_one_canonical_form() {
        let error = Policy::from_toml("[routes.\"/\"]\n[routes.\"/a/../b\"]\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy line 2: route \"/a/../b\" is not a usable path: the path has a dot segment \"..\""
        );
        let error = Policy::from_toml("[routes.\"/admin\"]\n[routes.\"/%61dmin\"]\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy line 1: routes \"/%61dmin\" and \"/admin\" name the same path \"/admin\""
        );
        for bad in ["/x;y", "/a//b", "/a%2Fb", "/%c0%ae"] {
            assert!(
                Policy::from_toml(&format!("[routes.{bad:?}]\n")).is_err(),
                "{bad}"
            );
        }
        // Good twins: any spelling with a canonical form, and names that are not paths.
        for good in [
            "/café",
            "/caf%c3%a9",
            "/v1:admin",
            "/docs/",
            "/",
            "ListTasks",
            "a/../b",
        ] {
            assert!(
                Policy::from_toml(&format!("[routes.{good:?}]\n")).is_ok(),
                "{good}"
            );
        }
    }

    const EXAMPLE: &str = r#"
[connect]
trust_domains = ["example.org", "partner.org"]

[routes.echo]
ids = ["spiffe://example.org/agent/client"]
id_prefixes = ["spiffe://example.org/ns/prod"]
trust_domains = ["partner.org"]
"#;

    fn sid(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn example_policy() {
        let policy = Policy::from_toml(EXAMPLE).unwrap();
        for allowed in [
            "spiffe://example.org/agent/client",
            "spiffe://example.org/ns/prod",
            "spiffe://example.org/ns/prod/worker",
            "spiffe://partner.org/anything",
        ] {
            assert!(
                policy.authorize_route("echo", &sid(allowed)).is_ok(),
                "{allowed}"
            );
        }
        for denied in [
            "spiffe://example.org/agent/other",
            "spiffe://example.org/ns/production",
        ] {
            assert!(
                policy.authorize_route("echo", &sid(denied)).is_err(),
                "{denied}"
            );
        }
        assert!(policy.connect().is_allowed(&sid("spiffe://partner.org/x")));
        assert!(!policy.connect().is_allowed(&sid("spiffe://evil.org/x")));
        let err = policy
            .authorize_route("admin", &sid("spiffe://example.org/agent/client"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("route \"admin\" is not in the policy")
        );
    }

    #[test]
    fn connect_rule_applies_to_routes() {
        let policy = Policy::from_toml(
            "[connect]\ntrust_domains = [\"example.org\"]\n[routes.r]\ntrust_domains = [\"evil.org\"]\n",
        )
        .unwrap();
        assert!(
            policy
                .authorize_route("r", &sid("spiffe://evil.org/x"))
                .is_err()
        );
    }

    #[test]
    fn absent_connect_allows_any() {
        let policy = Policy::from_toml("").unwrap();
        assert!(policy.connect().is_allowed(&sid("spiffe://any.org/x")));
        assert_eq!(policy.route_names().count(), 0);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "[connect]\ntrust_domain = [\"example.org\"]\n",
                2,
                "unknown field",
            ),
            (
                "[routes.echo]\n\nids = [\"spiffe://Example.org/x\"]\n",
                3,
                "lower case",
            ),
            ("[routes.echo]\nid_prefixes = [\"http://x\"]\n", 2, "scheme"),
            (
                "[routes.echo]\ntrust_domains = [\"spiffe://x\"]\n",
                2,
                "bare name",
            ),
            ("[whatever]\n", 1, "unknown field"),
            ("[routes.echo\n", 1, ""),
        ];
        for (text, line, needle) in cases {
            let err = Policy::from_toml(text).unwrap_err();
            match &err {
                PolicyError::Invalid {
                    line: found,
                    message,
                } => {
                    assert_eq!(*found, line, "{text:?}: {err}");
                    assert!(message.contains(needle), "{text:?}: {message}");
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(
                err.to_string()
                    .starts_with(&format!("policy line {line}: "))
            );
        }
    }
}
