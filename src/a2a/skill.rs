//! Per-skill authorization of A2A calls by a [`Policy`].

use std::sync::Arc;

use a2a_protocol::{A2AError, error_code, jsonrpc::methods};
use a2a_server::{CallContext, CallInterceptor};
use async_trait::async_trait;
use serde_json::Value;

use crate::authorize::Policy;
use crate::spiffe_id::SpiffeId;

/// The metadata key naming a message's skill (`message.metadata.skill`, or the request's
/// `metadata.skill`).
pub const SKILL_METADATA_KEY: &str = "skill";

/// The skill of a message that names none.
pub const DEFAULT_SKILL: &str = "echo";

/// The JSON-RPC error code of a call the policy refuses (`-32600`, invalid request: the
/// request is not acceptable from this caller). The message names the skill and the caller.
pub const REFUSED_CODE: i32 = error_code::INVALID_REQUEST;

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
/// name (`[routes.ListTasks]`), so they are refused unless the policy names them.
///
/// Every call is one audit event (target [`AUDIT_TARGET`](crate::tls::AUDIT_TARGET)):
/// `decision` `accepted` or `denied`, `peer`, `trust_domain`, `method`, `skill` and `rule`. A
/// refused call gets a JSON-RPC error [`REFUSED_CODE`] whose message names the skill and the
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
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct SkillPolicy {
    policy: Arc<Policy>,
    default_skill: String,
}

impl SkillPolicy {
    /// Authorizes by `policy`; a message without a skill asks for [`DEFAULT_SKILL`].
    ///
    /// # Example
    /// See [`SkillPolicy`].
    pub fn new(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
            default_skill: DEFAULT_SKILL.to_owned(),
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

    /// The skill of a message that names none.
    ///
    /// # Example
    /// See [`SkillPolicy::default_skill`].
    pub fn default_skill_name(&self) -> &str {
        &self.default_skill
    }

    /// The policy.
    ///
    /// # Example
    /// ```
    /// let skills = spiffe_mtls::a2a::SkillPolicy::new(spiffe_mtls::Policy::from_toml("[routes.echo]\n")?);
    /// assert_eq!(skills.policy().route_names().collect::<Vec<_>>(), ["echo"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn authorize(&self, id: &SpiffeId, method: &str, request: &Value) -> Result<(), A2AError> {
        if method == methods::SEND_MESSAGE || method == methods::SEND_STREAMING_MESSAGE {
            return self.authorize_skill(id, method, request);
        }
        let connect = self.policy.connect();
        let (allowed, rule) = match method {
            methods::GET_TASK
            | methods::CANCEL_TASK
            | methods::SUBSCRIBE_TO_TASK
            | methods::GET_EXTENDED_AGENT_CARD => {
                (connect.is_allowed(id), format!("connection rule {connect}"))
            }
            // Methods over every task or over push configs: a route of their own name.
            _ => match self.policy.authorize_route(method, id) {
                Ok(()) => (true, format!("route {method:?}")),
                Err(error) => (false, error.rule),
            },
        };
        if allowed {
            super::audit::allowed(id, method, "-", &rule);
            Ok(())
        } else {
            super::audit::refused(id, method, "-", &rule);
            Err(A2AError::new(
                REFUSED_CODE,
                format!("{method} does not allow {id}"),
            ))
        }
    }

    fn authorize_skill(
        &self,
        id: &SpiffeId,
        method: &str,
        request: &Value,
    ) -> Result<(), A2AError> {
        let skill = skill_of(request, &self.default_skill).map_err(A2AError::invalid_params)?;
        match self.policy.authorize_route(&skill, id) {
            Ok(()) => {
                match self.policy.route(&skill) {
                    Some(rule) => super::audit::allowed(
                        id,
                        method,
                        &skill,
                        &format_args!("skill {skill:?} allows {rule}"),
                    ),
                    None => {
                        super::audit::allowed(id, method, &skill, &format_args!("skill {skill:?}"))
                    }
                }
                Ok(())
            }
            Err(error) => {
                super::audit::refused(id, method, &skill, &error.rule);
                Err(A2AError::new(
                    REFUSED_CODE,
                    format!("skill {skill:?} does not allow {id}"),
                ))
            }
        }
    }
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
            Some(id) => self.authorize(&id, &ctx.method, request),
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
