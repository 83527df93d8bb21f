//! The verified peer as the SDK's authenticated user.

use std::collections::HashMap;

use a2a_protocol::A2AError;
use a2a_server::{CallContext, CallInterceptor, ServiceParams, User};
use async_trait::async_trait;
use serde_json::Value;

use crate::net::SPIFFE_ID_HEADER;
use crate::spiffe_id::SpiffeId;

/// The SPIFFE ID of the caller, from the `x-spiffe-id` service parameter (the header).
///
/// Trust it only behind [`agent_router`](super::agent_router) (or another
/// [`IdentityHeaderLayer`](crate::net::IdentityHeaderLayer)), which removes whatever the client
/// sent under that name and sets the handshake's verified ID. `None` when the header is
/// absent, repeated or not a SPIFFE ID.
///
/// # Example
/// ```
/// use spiffe_mtls::a2a::{a2a_server::ServiceParams, caller};
///
/// let mut params = ServiceParams::new();
/// assert_eq!(caller(&params), None);
/// params.insert("x-spiffe-id".into(), vec!["spiffe://example.org/agent/client".into()]);
/// assert_eq!(caller(&params).unwrap().to_string(), "spiffe://example.org/agent/client");
/// ```
pub fn caller(params: &ServiceParams) -> Option<SpiffeId> {
    match params.get(SPIFFE_ID_HEADER).map(Vec::as_slice) {
        Some([one]) => one.parse().ok(),
        _ => None,
    }
}

/// A [`CallInterceptor`] that makes the verified peer the call's authenticated
/// [`User`]: name the SPIFFE ID, attributes `spiffe_id` and `trust_domain`. A call without a
/// verified SPIFFE ID is refused (it cannot happen behind
/// [`agent_router`](super::agent_router) over [`serve_http`](crate::net::serve_http), where
/// every connection proved one) and audited.
///
/// Place it first, so the interceptors after it (a [`SkillPolicy`](super::SkillPolicy)) find
/// the user.
///
/// # Example
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use spiffe_mtls::a2a::{PeerInterceptor, a2a_server::{CallContext, CallInterceptor, ServiceParams}};
///
/// let mut params = ServiceParams::new();
/// params.insert("x-spiffe-id".into(), vec!["spiffe://example.org/agent/client".into()]);
/// let mut ctx = CallContext::new("SendMessage", params);
/// PeerInterceptor::new().before(&mut ctx, &serde_json::Value::Null).await.unwrap();
/// let user = ctx.user.unwrap();
/// assert!(user.authenticated);
/// assert_eq!(user.name, "spiffe://example.org/agent/client");
/// assert_eq!(user.attributes["trust_domain"], "example.org");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct PeerInterceptor {
    _private: (),
}

impl PeerInterceptor {
    /// The interceptor.
    ///
    /// # Example
    /// See [`PeerInterceptor`].
    pub fn new() -> Self {
        Self::default()
    }
}

/// The user of a verified SPIFFE ID.
pub(crate) fn user_of(id: &SpiffeId) -> User {
    let mut attributes = HashMap::new();
    attributes.insert("spiffe_id".to_owned(), Value::String(id.to_string()));
    attributes.insert(
        "trust_domain".to_owned(),
        Value::String(id.trust_domain().to_string()),
    );
    User {
        name: id.to_string(),
        authenticated: true,
        attributes,
    }
}

#[async_trait]
impl CallInterceptor for PeerInterceptor {
    async fn before(&self, ctx: &mut CallContext, _request: &Value) -> Result<(), A2AError> {
        match caller(&ctx.service_params) {
            Some(id) => {
                ctx.user = Some(user_of(&id));
                Ok(())
            }
            None => {
                super::audit::unauthenticated(&ctx.method);
                Err(A2AError::new(
                    super::REFUSED_CODE,
                    format!("{} needs a verified SPIFFE ID", ctx.method),
                ))
            }
        }
    }
}
