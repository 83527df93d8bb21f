//! Per-skill authorization of A2A calls by a [`Policy`].

use std::collections::BTreeSet;
use std::sync::Arc;

use a2a_protocol::{A2AError, error_code, jsonrpc::methods};
use a2a_server::{CallContext, CallInterceptor};
use async_trait::async_trait;
use serde_json::Value;

use super::audit::CallEvidence;
use super::skill_scopes::SkillScopes;
use crate::authorize::{Policy, PolicyRef, WatchedPolicy};
use crate::spiffe_id::SpiffeId;

/// The metadata key naming a message's skill (`message.metadata.skill`, or the request's
/// `metadata.skill`).
pub const SKILL_METADATA_KEY: &str = "skill";

/// The skill of a message that names none.
pub const DEFAULT_SKILL: &str = "echo";

/// The JSON-RPC error code of a call the policy refuses (`-32600`, invalid request: the
/// request is not acceptable from this caller). The message names the skill and the caller.
pub const REFUSED_CODE: i32 = error_code::INVALID_REQUEST;

/// The route a message carrying a push notification configuration needs besides its skill's:
/// that of `CreateTaskPushNotificationConfig`, the method that registers one directly.
pub const PUSH_CONFIG_ROUTE: &str = methods::CREATE_PUSH_CONFIG;

/// The skill a `SendMessage` request (its JSON, v1.0 shape: `{"message": {...},
/// "metadata": {...}}`) asks for: `message.metadata.skill`, else `metadata.skill`, else
/// `default`.
///
/// # Errors
/// A message when the skill is given but is not a non-empty string.
///
/// # Example
/// ```
/// use serde_json::json;
/// use spiffe_mtls::a2a::skill_of;
///
/// let request = json!({"message": {"metadata": {"skill": "secret"}, "parts": []}});
/// assert_eq!(skill_of(&request, "echo").unwrap(), "secret");
/// assert_eq!(skill_of(&json!({"message": {}}), "echo").unwrap(), "echo");
/// assert!(skill_of(&json!({"metadata": {"skill": 7}}), "echo").is_err());
/// ```
pub fn skill_of(request: &Value, default: &str) -> Result<String, String> {
    let named = request
        .pointer("/message/metadata/skill")
        .or_else(|| request.pointer("/metadata/skill"));
    match named {
        None | Some(Value::Null) => Ok(default.to_owned()),
        Some(Value::String(skill)) if !skill.is_empty() => Ok(skill.clone()),
        Some(other) => Err(format!(
            "metadata.{SKILL_METADATA_KEY} must be a non-empty string, not {other}"
        )),
    }
}

/// A [`CallInterceptor`] that authorizes each message by its skill: the caller's SPIFFE ID
/// (the [`User`](a2a_server::User) a [`PeerInterceptor`](super::PeerInterceptor) set) must
/// pass the policy's `[connect]` rule and the rule of `[routes.<skill>]`; a skill the policy
/// does not name is refused. `GetTask`, `CancelTask`, `SubscribeToTask` and
/// `GetExtendedAgentCard` need the connection rule (which task is whose is
/// [`TaskOwners`](super::TaskOwners)' part); the methods over all tasks or push
/// configurations (`ListTasks`, `CreateTaskPushNotificationConfig`...) need a route of their
/// name (`[routes.ListTasks]`), so they are refused unless the policy names them. The SDK's
/// `DefaultRequestHandler` lists every caller's tasks: allow `ListTasks` only with the handler
/// wrapped by [`TaskOwners::handler`](super::TaskOwners::handler), which lists the caller's
/// own.
///
/// A message that carries a push notification configuration (`configuration.
/// taskPushNotificationConfig`, v0.3's `pushNotificationConfig`) registers a webhook as
/// `CreateTaskPushNotificationConfig` would, so it needs that route too
/// ([`PUSH_CONFIG_ROUTE`]) besides its skill's, and is refused as that call would be:
/// `CreateTaskPushNotificationConfig does not allow spiffe://example.org/agent/client`.
///
/// Every decision that took effect is one audit event (target
/// [`AUDIT_TARGET`](crate::tls::AUDIT_TARGET)): `decision` `accepted` or `denied`, `peer`,
/// `trust_domain`, `method`, `skill`, `route` (the policy route decided, `-` for the
/// connection rule) and `rule`. A refused call is one event naming the route that refused it;
/// an allowed message with a push configuration is two, one per route. A refused call gets a
/// JSON-RPC error [`REFUSED_CODE`] whose message names the skill (or the method) and the
/// caller: `skill "secret" does not allow spiffe://example.org/agent/client`.
///
/// # Example
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use serde_json::json;
/// use spiffe_mtls::Policy;
/// use spiffe_mtls::a2a::{PeerInterceptor, SkillPolicy, a2a_server::{CallContext, CallInterceptor, ServiceParams}};
///
/// let policy = Policy::from_toml(r#"
///     [routes.echo]
///     trust_domains = ["example.org"]
///     [routes.secret]
///     ids = ["spiffe://example.org/agent/boss"]
/// "#).unwrap();
/// let skills = SkillPolicy::new(policy);
/// let mut params = ServiceParams::new();
/// params.insert("x-spiffe-id".into(), vec!["spiffe://example.org/agent/client".into()]);
/// let mut ctx = CallContext::new("SendMessage", params);
/// PeerInterceptor::new().before(&mut ctx, &json!(null)).await.unwrap();
///
/// let echo = json!({"message": {"metadata": {"skill": "echo"}}});
/// assert!(skills.before(&mut ctx, &echo).await.is_ok());
/// let secret = json!({"message": {"metadata": {"skill": "secret"}}});
/// let refused = skills.before(&mut ctx, &secret).await.unwrap_err();
/// assert_eq!(refused.message, r#"skill "secret" does not allow spiffe://example.org/agent/client"#);
///
/// // A webhook rides along: the policy names no CreateTaskPushNotificationConfig route.
/// let hook = json!({"message": {"metadata": {"skill": "echo"}},
///     "configuration": {"taskPushNotificationConfig": {"url": "https://hooks.example.org/a2a"}}});
/// let refused = skills.before(&mut ctx, &hook).await.unwrap_err();
/// assert_eq!(refused.message, "CreateTaskPushNotificationConfig does not allow spiffe://example.org/agent/client");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct SkillPolicy {
    policy: PolicyRef,
    default_skill: String,
    scopes: Option<Arc<SkillScopes>>,
}

impl SkillPolicy {
    /// Authorizes by `policy`; a message without a skill asks for [`DEFAULT_SKILL`].
    ///
    /// # Example
    /// See [`SkillPolicy`].
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: PolicyRef::Fixed(Arc::new(policy)),
            default_skill: DEFAULT_SKILL.to_owned(),
            scopes: None,
        }
    }

    /// Authorizes each call by the policy in force when it arrives, from a policy file that
    /// is reloaded while the agent serves (its skills, its rules and its `revoked` list).
    pub fn watched(policy: WatchedPolicy) -> Self {
        Self {
            policy: PolicyRef::Watched(policy),
            default_skill: DEFAULT_SKILL.to_owned(),
            scopes: None,
        }
    }

    /// A message without a skill asks for `skill` instead.
    ///
    /// # Example
    /// ```
    /// let skills = spiffe_mtls::a2a::SkillPolicy::new(spiffe_mtls::Policy::from_toml("")?)
    ///     .default_skill("chat");
    /// assert_eq!(skills.default_skill_name(), "chat");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn default_skill(mut self, skill: impl Into<String>) -> Self {
        self.default_skill = skill.into();
        self
    }

    /// Requires, besides the policy, the OAuth scopes the agent's `card` (either dialect, as
    /// JSON) names in its security requirements: each new message those of its skill (the
    /// card's for a skill without its own); a call that reaches existing tasks (`GetTask`,
    /// `CancelTask`, `SubscribeToTask`, `ListTasks`, push configurations, a message continuing
    /// a task) every scope the card names, as it may reach a task another skill made. The scopes granted are those
    /// of the token an `OAuthLayer` (feature `oauth`) in front of
    /// [`agent_router`](super::agent_router) validated (none without one: such calls are
    /// refused; a client cannot name its own). A refusal names the missing scope:
    /// `skill "records" needs the scope data:pii`.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::a2a::{MtlsAgentCard, SkillPolicy};
    ///
    /// let card = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a")
    ///     .skill("records", "Records", "personal records")
    ///     .oauth2("https://auth.example.org/token", [("data:pii", "personal data")])
    ///     .skill_scopes("records", ["data:pii"]);
    /// let skills = SkillPolicy::new(spiffe_mtls::Policy::from_toml("")?).scopes_from_card(&card.to_json());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scopes_from_card(mut self, card: &Value) -> Self {
        self.scopes = Some(Arc::new(SkillScopes::from_card(card)));
        self
    }

    /// The skill of a message that names none.
    ///
    /// # Example
    /// See [`SkillPolicy::default_skill`].
    pub fn default_skill_name(&self) -> &str {
        &self.default_skill
    }

    /// The policy in force now.
    ///
    /// # Example
    /// ```
    /// let skills = spiffe_mtls::a2a::SkillPolicy::new(spiffe_mtls::Policy::from_toml("[routes.echo]\n")?);
    /// assert_eq!(skills.policy().route_names().collect::<Vec<_>>(), ["echo"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }

    fn authorize(
        &self,
        id: &SpiffeId,
        method: &str,
        request: &Value,
        granted: &BTreeSet<String>,
    ) -> Result<(), A2AError> {
        if method == methods::SEND_MESSAGE || method == methods::SEND_STREAMING_MESSAGE {
            return self.authorize_message(id, method, request, granted);
        }
        // A call over existing tasks: it may reach a task of any skill.
        if let Err(missing) = self.check_all_scopes(granted) {
            let policy = self.policy.current();
            let evidence = CallEvidence::of(request, policy.sha256());
            return Err(scope_refusal(
                id, method, "-", method, method, &missing, evidence,
            ));
        }
        let policy = self.policy.current();
        let connect = policy.connect();
        let decision = match method {
            methods::GET_TASK
            | methods::CANCEL_TASK
            | methods::SUBSCRIBE_TO_TASK
            | methods::GET_EXTENDED_AGENT_CARD => Decision {
                route: "-".to_owned(),
                allowed: connect.is_allowed(id),
                rule: format!("connection rule {connect}"),
            },
            // Methods over every task or over push configs: a route of their own name.
            _ => decide_route(&policy, id, method),
        };
        let evidence = CallEvidence::of(request, policy.sha256());
        if decision.allowed {
            super::audit::allowed(id, method, "-", &decision.route, &decision.rule, evidence);
            Ok(())
        } else {
            super::audit::refused(id, method, "-", &decision.route, &decision.rule, evidence);
            Err(refusal(method, id))
        }
    }

    /// A message: its skill's route, and [`PUSH_CONFIG_ROUTE`] when it carries a push
    /// notification configuration (the SDK registers it as `CreateTaskPushNotificationConfig`
    /// would). Only the decision that took effect is audited: a refusal alone, or one
    /// acceptance per route.
    fn authorize_message(
        &self,
        id: &SpiffeId,
        method: &str,
        request: &Value,
        granted: &BTreeSet<String>,
    ) -> Result<(), A2AError> {
        let skill = skill_of(request, &self.default_skill).map_err(A2AError::invalid_params)?;
        let policy = self.policy.current();
        let by_skill = match policy.authorize_route(&skill, id) {
            Ok(()) => Decision {
                route: skill.clone(),
                allowed: true,
                rule: match policy.route(&skill) {
                    Some(rule) => format!("skill {skill:?} allows {rule}"),
                    None => format!("skill {skill:?}"),
                },
            },
            Err(error) => Decision {
                route: skill.clone(),
                allowed: false,
                rule: error.rule,
            },
        };
        let evidence = CallEvidence::of(request, policy.sha256());
        if !by_skill.allowed {
            let (route, rule) = (&by_skill.route, &by_skill.rule);
            super::audit::refused(id, method, &skill, route, rule, evidence);
            return Err(A2AError::new(
                REFUSED_CODE,
                format!("skill {skill:?} does not allow {id}"),
            ));
        }
        // A message continuing a task may reach what another skill made: it needs every
        // scope, as a call over tasks does.
        let continues_task = request
            .pointer("/message/taskId")
            .and_then(Value::as_str)
            .is_some_and(|task| !task.is_empty());
        let scopes = if continues_task {
            self.check_all_scopes(granted)
        } else {
            self.check_scopes(Some(&skill), granted)
        };
        if let Err(missing) = scopes {
            let subject = format!("skill {skill:?}");
            return Err(scope_refusal(
                id, method, &skill, &skill, &subject, &missing, evidence,
            ));
        }
        let by_push =
            carries_push_config(request).then(|| decide_route(&policy, id, PUSH_CONFIG_ROUTE));
        if let Some(by_push) = by_push.as_ref().filter(|decision| !decision.allowed) {
            let (route, rule) = (&by_push.route, &by_push.rule);
            super::audit::refused(id, method, &skill, route, rule, evidence);
            return Err(refusal(PUSH_CONFIG_ROUTE, id));
        }
        for decision in std::iter::once(&by_skill).chain(&by_push) {
            let (route, rule) = (&decision.route, &decision.rule);
            super::audit::allowed(id, method, &skill, route, rule, evidence);
        }
        Ok(())
    }
}

impl SkillPolicy {
    /// The card's scopes for `skill` against `granted`.
    fn check_scopes(
        &self,
        skill: Option<&str>,
        granted: &BTreeSet<String>,
    ) -> Result<(), Vec<String>> {
        match &self.scopes {
            Some(scopes) => scopes.check(skill, granted),
            None => Ok(()),
        }
    }

    /// Every scope the card names, against `granted`.
    fn check_all_scopes(&self, granted: &BTreeSet<String>) -> Result<(), Vec<String>> {
        match &self.scopes {
            Some(scopes) => scopes.check_all(granted),
            None => Ok(()),
        }
    }
}

/// The header that carries the scopes of the call's validated OAuth token to the policy (set
/// by [`agent_router`](super::agent_router) from the token an `OAuthLayer` validated; a
/// client's own is removed).
pub(crate) const SCOPE_HEADER_NAME: &str = "x-oauth-scope";

/// The scopes the call's validated OAuth token granted.
fn granted_scopes(params: &a2a_server::ServiceParams) -> BTreeSet<String> {
    params
        .get(SCOPE_HEADER_NAME)
        .into_iter()
        .flatten()
        .flat_map(|value| value.split(' '))
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `policy`'s decision on `route` (a method's name) for `id`.
fn decide_route(policy: &Policy, id: &SpiffeId, route: &str) -> Decision {
    match policy.authorize_route(route, id) {
        Ok(()) => Decision {
            route: route.to_owned(),
            allowed: true,
            rule: match policy.route(route) {
                Some(rule) => format!("route {route:?} allows {rule}"),
                None => format!("route {route:?}"),
            },
        },
        Err(error) => Decision {
            route: route.to_owned(),
            allowed: false,
            rule: error.rule,
        },
    }
}

/// One decision of the policy: the route decided, its outcome and the rule, described.
struct Decision {
    route: String,
    allowed: bool,
    rule: String,
}

/// The refusal of a call whose token lacks the `missing` scopes `subject` (a method, or
/// `skill "name"`) needs, audited with the reason.
fn scope_refusal(
    id: &SpiffeId,
    method: &str,
    skill: &str,
    route: &str,
    subject: &str,
    missing: &[String],
    evidence: CallEvidence<'_>,
) -> A2AError {
    let missing = missing.join(" ");
    let rule = format!("{subject} requires the OAuth scope {missing}");
    let reason = format!("the token lacks the scope {missing}");
    super::audit::refused_because(id, method, skill, route, &rule, &reason, evidence);
    A2AError::new(REFUSED_CODE, format!("{subject} needs the scope {missing}"))
}

/// The error of a call that `route` (a method's name) does not allow `id`.
fn refusal(route: &str, id: &SpiffeId) -> A2AError {
    A2AError::new(REFUSED_CODE, format!("{route} does not allow {id}"))
}

/// Whether a `SendMessage` request (its JSON, v1.0 shape) carries a push notification
/// configuration: `configuration.taskPushNotificationConfig`, or
/// `configuration.pushNotificationConfig` (the v0.3 name, which the SDK's type also reads),
/// other than `null`.
fn carries_push_config(request: &Value) -> bool {
    ["taskPushNotificationConfig", "pushNotificationConfig"]
        .iter()
        .any(|name| {
            request
                .get("configuration")
                .and_then(|configuration| configuration.get(name))
                .is_some_and(|config| !config.is_null())
        })
}

#[async_trait]
impl CallInterceptor for SkillPolicy {
    async fn before(&self, ctx: &mut CallContext, request: &Value) -> Result<(), A2AError> {
        let id = ctx
            .user
            .as_ref()
            .filter(|user| user.authenticated)
            .and_then(|user| user.name.parse::<SpiffeId>().ok())
            .or_else(|| super::caller(&ctx.service_params));
        match id {
            Some(id) => {
                let granted = granted_scopes(&ctx.service_params);
                self.authorize(&id, &ctx.method, request, &granted)
            }
            None => {
                super::audit::unauthenticated(&ctx.method);
                Err(A2AError::new(
                    REFUSED_CODE,
                    format!("{} needs a verified SPIFFE ID", ctx.method),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const POLICY: &str = r#"
        [routes.echo]
        trust_domains = ["example.org"]
        [routes.CreateTaskPushNotificationConfig]
        ids = ["spiffe://example.org/agent/boss"]
    "#;

    fn decide(caller: &str, request: &Value) -> Result<(), A2AError> {
        let skills = SkillPolicy::new(Policy::from_toml(POLICY).unwrap());
        let id: SpiffeId = caller.parse().unwrap();
        skills.authorize(&id, methods::SEND_MESSAGE, request, &BTreeSet::new())
    }

    /// A watched policy file decides each call by its content at that call: an edit that
    /// drops the caller from a skill, or revokes it, refuses its next call.
    #[test]
    fn a_watched_policy_decides_each_call_by_the_file_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, POLICY).unwrap();
        let watched =
            WatchedPolicy::open_with_interval(&path, std::time::Duration::from_secs(3600)).unwrap();
        let skills = SkillPolicy::watched(watched.clone());
        let client: SpiffeId = "spiffe://example.org/agent/client".parse().unwrap();
        let echo = json!({"message": {"metadata": {"skill": "echo"}}});
        assert!(
            skills
                .authorize(&client, methods::SEND_MESSAGE, &echo, &BTreeSet::new())
                .is_ok()
        );

        std::fs::write(&path, "[routes.echo]\ntrust_domains = [\"partner.org\"]\n").unwrap();
        assert!(watched.reload().unwrap());
        let refused = skills
            .authorize(&client, methods::SEND_MESSAGE, &echo, &BTreeSet::new())
            .unwrap_err();
        assert_eq!(
            refused.message,
            format!("skill \"echo\" does not allow {client}")
        );

        std::fs::write(
            &path,
            format!("revoked = [\"{client}\"]\n[routes.echo]\ntrust_domains = [\"example.org\"]\n"),
        )
        .unwrap();
        assert!(watched.reload().unwrap());
        assert!(
            skills
                .authorize(&client, methods::SEND_MESSAGE, &echo, &BTreeSet::new())
                .is_err()
        );
        assert!(
            skills
                .authorize(&client, methods::GET_TASK, &json!({}), &BTreeSet::new())
                .is_err()
        );
        let other: SpiffeId = "spiffe://example.org/agent/other".parse().unwrap();
        assert!(
            skills
                .authorize(&other, methods::SEND_MESSAGE, &echo, &BTreeSet::new())
                .is_ok()
        );
    }

    #[test]
    fn a_skill_needs_the_scopes_the_card_names_and_the_refusal_names_the_missing_one() {
        let card = crate::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a")
            .skill("echo", "Echo", "echoes")
            .skill("secret", "Secret", "personal data")
            .oauth2(
                "https://auth.example.org/token",
                [("agent:execute", "call"), ("data:pii", "personal data")],
            )
            .require_scopes(["agent:execute"])
            .skill_scopes("secret", ["data:pii"]);
        let policy = format!("{POLICY}[routes.secret]\ntrust_domains = [\"example.org\"]\n");
        let skills = SkillPolicy::new(Policy::from_toml(&policy).unwrap())
            .scopes_from_card(&card.v0_3_json());
        let client: SpiffeId = "spiffe://example.org/agent/client".parse().unwrap();
        let granted = |scopes: &[&str]| {
            scopes
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>()
        };
        let (echo, secret) = (
            json!({"message": {"metadata": {"skill": "echo"}}}),
            json!({"message": {"metadata": {"skill": "secret"}}}),
        );
        let execute = granted(&["agent:execute"]);
        let both = granted(&["agent:execute", "data:pii"]);
        skills
            .authorize(&client, methods::SEND_MESSAGE, &echo, &execute)
            .unwrap();
        let refused = skills
            .authorize(&client, methods::SEND_MESSAGE, &secret, &execute)
            .unwrap_err();
        assert_eq!(
            refused.message,
            r#"skill "secret" needs the scope data:pii"#
        );
        skills
            .authorize(&client, methods::SEND_MESSAGE, &secret, &both)
            .unwrap();
        let refused = skills
            .authorize(&client, methods::SEND_MESSAGE, &echo, &granted(&[]))
            .unwrap_err();
        assert_eq!(
            refused.message,
            r#"skill "echo" needs the scope agent:execute"#
        );
        // Calls over existing tasks need every scope the card names: a task may be a secret.
        let refused = skills
            .authorize(&client, methods::GET_TASK, &json!({}), &execute)
            .unwrap_err();
        assert_eq!(refused.message, "GetTask needs the scope data:pii");
        skills
            .authorize(&client, methods::GET_TASK, &json!({}), &both)
            .unwrap();
        // So does a message continuing a task, whatever skill it names.
        let continuing = json!({"message": {"taskId": "t1", "metadata": {"skill": "echo"}}});
        let refused = skills
            .authorize(&client, methods::SEND_MESSAGE, &continuing, &execute)
            .unwrap_err();
        assert_eq!(refused.message, r#"skill "echo" needs the scope data:pii"#);
        // The policy still decides too: the right scopes do not let in an ID it refuses.
        let stranger: SpiffeId = "spiffe://other.org/x".parse().unwrap();
        assert!(
            skills
                .authorize(&stranger, methods::SEND_MESSAGE, &secret, &both)
                .is_err()
        );
    }

    #[test]
    fn a_webhook_in_a_message_is_decided_as_create_push_config() {
        let client = "spiffe://example.org/agent/client";
        let boss = "spiffe://example.org/agent/boss";
        let hook = json!({"url": "https://hooks.example.org/a2a"});
        for name in ["taskPushNotificationConfig", "pushNotificationConfig"] {
            let request = json!({"message": {}, "configuration": {name: hook.clone()}});
            let refused = decide(client, &request).unwrap_err();
            assert_eq!(refused.code, REFUSED_CODE);
            assert_eq!(
                refused.message,
                format!("CreateTaskPushNotificationConfig does not allow {client}")
            );
            assert!(decide(boss, &request).is_ok(), "{name}");
        }
        // No webhook, or `null`: the skill alone decides.
        for request in [
            json!({"message": {}}),
            json!({"message": {}, "configuration": {"taskPushNotificationConfig": null}}),
            json!({"message": {}, "configuration": {"historyLength": 2}}),
        ] {
            assert!(decide(client, &request).is_ok(), "{request}");
        }
        // The skill is decided first: a refused skill is refused as such.
        let request = json!({"message": {"metadata": {"skill": "secret"}},
            "configuration": {"taskPushNotificationConfig": hook}});
        let refused = decide(boss, &request).unwrap_err();
        assert_eq!(
            refused.message,
            format!("skill \"secret\" does not allow {boss}")
        );
    }
}
