//! The OAuth scopes an agent card requires, per skill, read from either card dialect.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// One alternative of a requirement list: the OAuth scopes it needs (`None`: it names no
/// OAuth scheme, so no scope).
type Alternative = Option<Vec<String>>;

/// The scopes a card's security requirements name for its OAuth schemes (`oauth2` and
/// `openIdConnect`, v1.0 or v0.3): the card's, and each skill's own.
#[derive(Debug, Clone, Default)]
pub(crate) struct SkillScopes {
    card: Vec<Alternative>,
    by_skill: HashMap<String, Vec<Alternative>>,
    /// The skills the card lists.
    listed: BTreeSet<String>,
}

impl SkillScopes {
    /// Reads `card` (v1.0 `securityRequirements`, else v0.3 `security`, on the card and on
    /// each skill).
    pub(crate) fn from_card(card: &Value) -> Self {
        let oauth = oauth_schemes(card);
        let skills = || {
            card.get("skills")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        };
        let by_skill = skills()
            .filter_map(|skill| {
                let id = skill.get("id")?.as_str()?.to_owned();
                Some((id, alternatives(skill, &oauth)?))
            })
            .collect();
        let listed = skills()
            .filter_map(|skill| Some(skill.get("id")?.as_str()?.to_owned()))
            .collect();
        Self {
            card: alternatives(card, &oauth).unwrap_or_default(),
            by_skill,
            listed,
        }
    }

    /// `Ok` when `granted` satisfies one alternative of `skill`'s requirements (the card's
    /// for a skill without its own, or for `None`: a call that is not a message; every scope
    /// for a skill the card does not list); else the scopes missing from the nearest
    /// alternative.
    pub(crate) fn check(
        &self,
        skill: Option<&str>,
        granted: &BTreeSet<String>,
    ) -> Result<(), Vec<String>> {
        // A skill the card does not list (a policy route the card leaves out): what is
        // required of it is not known, so it needs every scope the card names.
        if let Some(skill) = skill
            && !self.listed.contains(skill)
        {
            return self.check_all(granted);
        }
        let alternatives = skill
            .and_then(|skill| self.by_skill.get(skill))
            .unwrap_or(&self.card);
        if alternatives.is_empty() {
            return Ok(());
        }
        let mut nearest: Option<Vec<String>> = None;
        for alternative in alternatives {
            let missing: Vec<String> = match alternative {
                None => return Ok(()),
                Some(scopes) => scopes
                    .iter()
                    .filter(|scope| !granted.contains(*scope))
                    .cloned()
                    .collect(),
            };
            if missing.is_empty() {
                return Ok(());
            }
            if nearest.as_ref().is_none_or(|n| missing.len() < n.len()) {
                nearest = Some(missing);
            }
        }
        Err(nearest.unwrap_or_default())
    }
}

impl SkillScopes {
    /// `Ok` when `granted` holds every scope any requirement of the card names (the card's
    /// and every skill's); else the missing ones. For calls that reach an existing task
    /// (`GetTask`, a message continuing a task...): which skill made it is not known here, so
    /// they need what the strictest skill needs.
    pub(crate) fn check_all(&self, granted: &BTreeSet<String>) -> Result<(), Vec<String>> {
        let mut missing: Vec<String> = self
            .card
            .iter()
            .chain(self.by_skill.values().flatten())
            .flatten()
            .flatten()
            .filter(|scope| !granted.contains(*scope))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
}

/// The names of the OAuth schemes a card declares.
fn oauth_schemes(card: &Value) -> BTreeSet<String> {
    card.get("securitySchemes")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, scheme)| {
            scheme.get("oauth2SecurityScheme").is_some()
                || scheme.get("openIdConnectSecurityScheme").is_some()
                || matches!(
                    scheme.get("type").and_then(Value::as_str),
                    Some("oauth2" | "openIdConnect")
                )
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The alternatives of `holder`'s requirements (a card or a skill), `None` when it has none.
fn alternatives(holder: &Value, oauth: &BTreeSet<String>) -> Option<Vec<Alternative>> {
    // v1.0: [{"schemes": {"name": {"list": [...]}}}]
    if let Some(requirements) = holder.get("securityRequirements").and_then(Value::as_array) {
        return Some(
            requirements
                .iter()
                .map(|requirement| {
                    scopes_of(
                        requirement.get("schemes").and_then(Value::as_object),
                        oauth,
                        |scopes| scopes.get("list"),
                    )
                })
                .collect(),
        );
    }
    // v0.3: [{"name": [...]}]
    let requirements = holder.get("security").and_then(Value::as_array)?;
    Some(
        requirements
            .iter()
            .map(|requirement| scopes_of(requirement.as_object(), oauth, |scopes| Some(scopes)))
            .collect(),
    )
}

/// The OAuth scopes of one requirement (`None` when it names no OAuth scheme).
fn scopes_of(
    schemes: Option<&serde_json::Map<String, Value>>,
    oauth: &BTreeSet<String>,
    list: impl for<'v> Fn(&'v Value) -> Option<&'v Value>,
) -> Alternative {
    let mut named = false;
    let mut scopes = Vec::new();
    for (name, value) in schemes.into_iter().flatten() {
        if !oauth.contains(name) {
            continue;
        }
        named = true;
        for scope in list(value).and_then(Value::as_array).into_iter().flatten() {
            if let Some(scope) = scope.as_str() {
                scopes.push(scope.to_owned());
            }
        }
    }
    named.then_some(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::MtlsAgentCard;

    fn card() -> MtlsAgentCard {
        MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a")
            .skill("echo", "Echo", "echoes")
            .skill("records", "Records", "personal records")
            .oauth2(
                "https://auth.example.org/token",
                [("agent:execute", "call"), ("data:pii", "personal data")],
            )
            .require_scopes(["agent:execute"])
            .skill_scopes("records", ["data:pii"])
    }

    fn granted(scopes: &[&str]) -> BTreeSet<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn each_dialect_gives_the_same_scopes_per_skill() {
        let card = card();
        for document in [card.v1_0_json(), card.v0_3_json(), card.to_json()] {
            let scopes = SkillScopes::from_card(&document);
            assert_eq!(
                scopes.check(Some("records"), &granted(&["agent:execute"])),
                Err(vec!["data:pii".to_owned()]),
                "{document}"
            );
            let both = granted(&["agent:execute", "data:pii"]);
            assert_eq!(scopes.check(Some("records"), &both), Ok(()));
            // A skill the card does not list needs every scope.
            assert_eq!(
                scopes.check(Some("admin"), &granted(&["agent:execute"])),
                Err(vec!["data:pii".to_owned()])
            );
            assert_eq!(
                scopes.check(Some("echo"), &granted(&["agent:execute"])),
                Ok(())
            );
            assert_eq!(
                scopes.check(Some("echo"), &granted(&[])),
                Err(vec!["agent:execute".to_owned()])
            );
            assert_eq!(
                scopes.check(None, &granted(&[])),
                Err(vec!["agent:execute".to_owned()])
            );
        }
    }

    #[test]
    fn a_card_without_oauth_requires_no_scope() {
        let plain = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").skill("echo", "E", "e");
        let scopes = SkillScopes::from_card(&plain.to_json());
        assert_eq!(scopes.check(Some("echo"), &granted(&[])), Ok(()));
    }
}
