//! A2A agents over SPIFFE mutual TLS: the official A2A SDK for the protocol
//! ([`protocol`] = `a2a-lf`, [`a2a_server`] = `a2a-server-lf`, [`a2a_client`] =
//! `a2a-client-lf`), this crate for the identity.
//!
//! The agent-to-agent protocol carries JSON-RPC over HTTPS and declares how callers
//! authenticate in its agent card. Here every agent has one SPIFFE ID, proved by its
//! X.509-SVID in a mutual TLS handshake; the SVIDs are short-lived and rotate without a failed
//! call; each skill has its own rule; every decision is an audit event.
//!
//! | Piece | What it does |
//! |---|---|
//! | [`PeerInterceptor`] | the SDK's `CallInterceptor`: the verified peer (the `x-spiffe-id` header the [`IdentityHeaderLayer`](crate::net::IdentityHeaderLayer) sets) becomes the call's authenticated [`User`](a2a_server::User) |
//! | [`SkillPolicy`] | a `CallInterceptor` that allows each message's skill (`metadata.skill`) by the [`Policy`](crate::Policy)'s `[routes.<skill>]`, with an audit event per call |
//! | [`TaskOwners`] | the SDK's `RequestAuthorizer`: a task is only for the caller who started it (`GetTask`, `CancelTask`, `SubscribeToTask`, continuing messages, push configs); with [`TaskOwners::handler`], `ListTasks` lists the caller's own tasks only |
//! | [`InterceptingHandler`] | a `RequestHandler` that runs interceptors around another one (the SDK defines interceptors but does not run them) |
//! | [`MtlsAgentCard`] | an agent card declaring mutual TLS, a JWT-SVID bearer scheme or either ([`AgentAuth`]) in both dialects (v1.0 and v0.3), without key material |
//! | [`agent_router`] | the axum router: the card at `/.well-known/agent-card.json`, JSON-RPC (v1.0, and v0.3 translated in front of the SDK's router) on the card's endpoint |
//! | [`AgentClient`] | resolves a card over mutual TLS, checks it requires mutual TLS, and calls with the SDK client; [`AgentClient::discover`] starts from the card URL alone and verifies the card's signature and SPIFFE profile against the server it came from |
//! | [`CardSigner`], [`sign_card`], [`verify_card`] | cards signed by the serving workload's X.509-SVID (A2A `AgentCardSignature`, `x5c` chain), verified against the bundle of the signer's trust domain, never a key the card names |
//! | [`SpiffeProfile`] | the card extension ([`SPIFFE_PROFILE_URI`]) declaring the agent's trust domain and SPIFFE ID |
//!
//! # Server
//! ```no_run
//! use std::sync::Arc;
//! use spiffe_mtls::a2a::{self, MtlsAgentCard, SkillPolicy, PeerInterceptor, InterceptingHandler, TaskOwners};
//! use spiffe_mtls::a2a::a2a_server::{DefaultRequestHandler, InMemoryTaskStore, AgentExecutor};
//! use spiffe_mtls::{Policy, net, source::WorkloadApiSource, tls};
//!
//! # async fn run(executor: impl AgentExecutor) -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::load("policy.toml")?;
//! let source = WorkloadApiSource::builder().build().await?;
//! let config = tls::server_config(source, policy.connect().clone()).build()?;
//! let card = MtlsAgentCard::new("echo agent", "https://127.0.0.1:8443/a2a")
//!     .skill("echo", "Echo", "Replies with the text it was sent");
//! let owners = TaskOwners::default();
//! let tasks = owners.handler(
//!     DefaultRequestHandler::new(owners.executor(executor), InMemoryTaskStore::new())
//!         .with_authorizer(owners.clone()),
//! );
//! let handler = InterceptingHandler::new(tasks)
//!     .with_interceptor(PeerInterceptor::new())
//!     .with_interceptor(SkillPolicy::new(policy));
//! let app = a2a::agent_router(Arc::new(handler), card);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! net::serve_http(listener, Arc::new(config), app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Client
//! ```no_run
//! use spiffe_mtls::a2a::AgentClient;
//! use spiffe_mtls::{authorize, source::WorkloadApiSource, tls};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let source = WorkloadApiSource::builder().build().await?;
//! let server = "spiffe://example.org/agent/server".parse()?;
//! let config = tls::client_config(source, authorize::id(server)).build()?;
//! let agent = AgentClient::connect(config, "https://127.0.0.1:8443").await?;
//! let reply = agent.send_text("hello", Some("echo")).await?;
//! println!("{reply}");
//! # Ok(())
//! # }
//! ```

mod audit;
mod canonical;
mod card;
mod card_signature;
mod card_signer;
mod client;
mod discovery;
mod handler;
mod identity;
mod legacy;
mod owners;
mod router;
mod skill;
mod skill_scopes;
mod spiffe_profile;

pub use a2a_client;
pub use a2a_protocol as protocol;
pub use a2a_server;

pub use canonical::{CanonicalError, MAX_DEPTH, canonical_json, without_empty_members};
pub use card::{CardDialect, MtlsAgentCard};
pub use card_signature::{CardSignatureError, MAX_SIGNATURES, sign_card, verify_card};
pub use card_signer::CardSigner;
pub use client::{AgentClient, AgentClientError, MAX_CARD_BYTES, reply_text};
pub use discovery::CardDiscovery;
pub use handler::InterceptingHandler;
pub use identity::{PeerInterceptor, caller};
pub use owners::{DEFAULT_TASK_OWNERS, OwnedExecutor, OwnedHandler, TaskOwners};
pub use router::{AGENT_CARD_PATH, agent_router};
pub use skill::{
    DEFAULT_SKILL, PUSH_CONFIG_ROUTE, REFUSED_CODE, SKILL_METADATA_KEY, SkillPolicy, skill_of,
};
pub use spiffe_profile::{ProfileError, SPIFFE_PROFILE_URI, SpiffeProfile};

/// The name of the mutual TLS security scheme in the cards [`MtlsAgentCard`] writes.
pub const MTLS_SCHEME: &str = "mtls";

/// The name of the bearer JWT-SVID security scheme in the cards [`MtlsAgentCard`] writes.
pub const JWT_SCHEME: &str = "jwt";

/// The name of the OAuth 2.0 security scheme in the cards [`MtlsAgentCard`] writes (with
/// [`MtlsAgentCard::oauth2`]).
pub const OAUTH_SCHEME: &str = "oauth2";

/// How callers authenticate to an agent: what its card declares and its server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AgentAuth {
    /// Mutual TLS with X.509-SVIDs (the default).
    #[default]
    Mtls,
    /// A JWT-SVID in `Authorization: Bearer` (the TLS server asks for no client
    /// certificate): for callers behind a TLS-terminating proxy or load balancer.
    Jwt,
    /// Either one.
    Both,
}

impl AgentAuth {
    /// The scheme names a caller may satisfy, each alone.
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            Self::Mtls => &[MTLS_SCHEME],
            Self::Jwt => &[JWT_SCHEME],
            Self::Both => &[MTLS_SCHEME, JWT_SCHEME],
        }
    }
}

impl std::str::FromStr for AgentAuth {
    type Err = String;

    /// `mtls`, `jwt` or `both`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "mtls" => Ok(Self::Mtls),
            "jwt" => Ok(Self::Jwt),
            "both" => Ok(Self::Both),
            other => Err(format!("{other:?} is not mtls, jwt or both")),
        }
    }
}
