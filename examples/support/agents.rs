//! What the agent examples share: the agent with two skills (`echo`, `secret`), starting it
//! over SPIFFE mutual TLS, and a small flag parser. Included by the examples and the tests
//! with `#[path = ...] mod agents;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::stream::{self, BoxStream};
use spiffe_mtls::a2a::a2a_server::{
    AgentExecutor, DefaultRequestHandler, ExecutorContext, InMemoryTaskStore,
};
use spiffe_mtls::a2a::protocol::{
    A2AError, Artifact, Message, Part, Role, StreamResponse, TaskArtifactUpdateEvent, TaskState,
    TaskStatus, TaskStatusUpdateEvent, new_artifact_id,
};
use spiffe_mtls::a2a::{
    AgentAuth, CardSigner, DEFAULT_SKILL, InterceptingHandler, MtlsAgentCard, PeerInterceptor,
    SKILL_METADATA_KEY, SkillPolicy, TaskOwners,
};
use spiffe_mtls::jwt::JwtBundleSource;
use spiffe_mtls::source::X509Source;
use spiffe_mtls::{Policy, SpiffeId, net, tls};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// What the `secret` skill answers.
pub const SECRET: &str = "the secret is 42";

/// The agent: `echo` replies with the message's text, `secret` with [`SECRET`]; the skill is
/// the message's `metadata.skill` (default `echo`). The reply is an artifact, then the task
/// completes with the reply as its status message.
#[derive(Debug, Clone, Copy)]
pub struct SkillsExecutor;

fn skill(ctx: &ExecutorContext) -> String {
    let from_message = ctx
        .message
        .as_ref()
        .and_then(|m| m.metadata.as_ref())
        .and_then(|m| m.get(SKILL_METADATA_KEY));
    let from_request = ctx
        .metadata
        .as_ref()
        .and_then(|m| m.get(SKILL_METADATA_KEY));
    from_message
        .or(from_request)
        .and_then(|v| v.as_str())
        .unwrap_or(DEFAULT_SKILL)
        .to_owned()
}

impl AgentExecutor for SkillsExecutor {
    fn execute(
        &self,
        ctx: ExecutorContext,
    ) -> BoxStream<'static, Result<StreamResponse, A2AError>> {
        let text = ctx
            .message
            .as_ref()
            .and_then(Message::text)
            .unwrap_or_default()
            .to_owned();
        let (task_id, context_id) = ctx.task_info();
        let reply = match skill(&ctx).as_str() {
            "echo" => text,
            "secret" => SECRET.to_owned(),
            other => {
                let error = A2AError::unsupported_operation(format!("no skill {other:?}"));
                return Box::pin(stream::once(async move { Err(error) }));
            }
        };
        let mut answer = Message::new(Role::Agent, vec![Part::text(reply.clone())]);
        answer.task_id = Some(task_id.clone());
        answer.context_id = Some(context_id.clone());
        let events = vec![
            Ok(StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: task_id.clone(),
                context_id: context_id.clone(),
                artifact: Artifact {
                    artifact_id: new_artifact_id(),
                    name: Some("reply".into()),
                    description: None,
                    parts: vec![Part::text(reply)],
                    metadata: None,
                    extensions: None,
                },
                append: None,
                last_chunk: Some(true),
                metadata: None,
            })),
            Ok(StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id,
                context_id,
                status: TaskStatus {
                    state: TaskState::Completed,
                    message: Some(answer),
                    timestamp: None,
                },
                metadata: None,
            })),
        ];
        Box::pin(stream::iter(events))
    }

    fn cancel(&self, ctx: ExecutorContext) -> BoxStream<'static, Result<StreamResponse, A2AError>> {
        let (task_id, context_id) = ctx.task_info();
        Box::pin(stream::once(async move {
            Ok(StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id,
                context_id,
                status: TaskStatus {
                    state: TaskState::Canceled,
                    message: None,
                    timestamp: None,
                },
                metadata: None,
            }))
        }))
    }
}

/// A running agent server.
pub struct AgentServer {
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    /// Its SPIFFE ID when it started.
    pub id: SpiffeId,
    /// How many HTTP requests reached it.
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AgentServer {
    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }

    /// Waits until the server stops (an I/O error), for `main`.
    pub async fn wait(self) -> Result<(), String> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the agent server stopped: {e}")),
            Err(e) => Err(format!("the agent server stopped: {e}")),
        }
    }
}

/// Starts the agent on `listener` with `source`'s SVID (the one with `hint`, if given),
/// letting in the peers the policy's `[connect]` allows, each skill by `[routes.<skill>]`.
/// Its card is signed by the same SVID, and declares its SPIFFE ID in the SPIFFE profile.
/// `host` is the name the card's URL uses (`127.0.0.1`, `localhost`).
pub fn start_agent_server(
    source: impl X509Source + 'static,
    hint: Option<&str>,
    listener: TcpListener,
    host: &str,
    policy: Policy,
) -> Result<AgentServer, String> {
    start_agent_server_with(source, hint, listener, host, policy, AgentAuth::Mtls, None)
}

/// As [`start_agent_server`], accepting the credentials `auth` names: with `Jwt` or `Both`,
/// JWT-SVIDs for the audience of the server's own SPIFFE ID, validated against `jwt_bundles`
/// (and allowed by the policy's `[connect]`, as mTLS peers are).
pub fn start_agent_server_with(
    source: impl X509Source + 'static,
    hint: Option<&str>,
    listener: TcpListener,
    host: &str,
    policy: Policy,
    auth: AgentAuth,
    jwt_bundles: Option<Arc<dyn JwtBundleSource>>,
) -> Result<AgentServer, String> {
    let source: Arc<dyn X509Source> = Arc::new(source);
    let context = source.x509_context().map_err(|e| e.to_string())?;
    let svid = match hint {
        Some(hint) => context
            .svid_by_hint(hint)
            .ok_or_else(|| format!("no SVID with hint {hint}"))?,
        None => context.default_svid(),
    };
    let id = svid.spiffe_id().clone();
    let connect = policy.connect().clone();
    let mut config = match auth {
        AgentAuth::Jwt => {
            let mut builder = tls::tls_server_config(Arc::clone(&source));
            if let Some(hint) = hint {
                builder = builder.svid_hint(hint);
            }
            builder.build()
        }
        _ => {
            let mut builder = tls::server_config(Arc::clone(&source), connect.clone());
            if let Some(hint) = hint {
                builder = builder.svid_hint(hint);
            }
            if auth == AgentAuth::Both {
                builder = builder.client_certificate_optional();
            }
            builder.build()
        }
    }
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let base_url = format!("https://{host}:{port}");
    // The card is signed by the SVID the TLS server presents, as it rotates.
    let mut signer = CardSigner::new(source);
    if let Some(hint) = hint {
        signer = signer.svid_hint(hint);
    }
    let card = MtlsAgentCard::new("spiffe-mtls example agent", format!("{base_url}/a2a"))
        .description("Replies with your text (skill echo) or tells a secret (skill secret)")
        .server_id(id.clone())
        .auth(auth)
        .skill("echo", "Echo", "Replies with the text it was sent")
        .skill(
            "secret",
            "Secret",
            "Tells a secret, to the callers the policy allows",
        )
        .signed_by(signer);
    let requests = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&requests);
    let mut router = skills_router(SkillPolicy::new(policy), card);
    if auth != AgentAuth::Mtls {
        let bundles = jwt_bundles.ok_or("JWT-SVIDs need a JWT bundle source")?;
        let layer = net::JwtAuthLayer::new(bundles, id.to_string())
            .map_err(|e| e.to_string())?
            .authorizer(connect);
        router = router.layer(if auth == AgentAuth::Both {
            layer.or_mtls()
        } else {
            layer
        });
    }
    let app = router.map_request(move |request: http::Request<hyper::body::Incoming>| {
        counter.fetch_add(1, Ordering::Relaxed);
        request
    });
    let server = net::HttpServer::new(listener, Arc::new(config));
    let server = if auth == AgentAuth::Mtls {
        server
    } else {
        server.allow_anonymous_clients()
    };
    let task = tokio::spawn(server.serve(app));
    Ok(AgentServer {
        base_url,
        id,
        requests,
        task,
    })
}

/// The agent's router: [`SkillsExecutor`] behind `skills` (and the caller as the call's
/// user), each task for its owner only (`ListTasks` lists the caller's own), and `card`.
fn skills_router(skills: SkillPolicy, card: MtlsAgentCard) -> axum::Router {
    let owners = TaskOwners::default();
    let tasks = owners.handler(
        DefaultRequestHandler::new(owners.executor(SkillsExecutor), InMemoryTaskStore::new())
            .with_authorizer(owners.clone()),
    );
    let handler = InterceptingHandler::new(tasks)
        .with_interceptor(PeerInterceptor::new())
        .with_interceptor(skills);
    spiffe_mtls::a2a::agent_router(Arc::new(handler), card)
}

/// `--name value` flags and `--switch` switches; anything else is an error.
pub struct Flags(HashMap<String, Option<String>>);

impl Flags {
    /// Parses the process arguments: `values` take a value, `switches` do not.
    pub fn parse(values: &[&str], switches: &[&str], usage: &str) -> Result<Self, String> {
        let mut flags = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let name = arg.trim_start_matches('-').to_owned();
            if arg == "--help" || arg == "-h" {
                return Err(usage.to_owned());
            } else if arg.starts_with("--") && values.contains(&name.as_str()) {
                let value = args
                    .next()
                    .ok_or_else(|| format!("{arg} needs a value\n{usage}"))?;
                flags.insert(name, Some(value));
            } else if arg.starts_with("--") && switches.contains(&name.as_str()) {
                flags.insert(name, None);
            } else {
                return Err(format!("unexpected argument {arg:?}\n{usage}"));
            }
        }
        Ok(Self(flags))
    }

    /// A flag's value.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.as_deref())
    }

    /// A flag's value, required.
    pub fn required(&self, name: &str, usage: &str) -> Result<&str, String> {
        self.value(name)
            .ok_or_else(|| format!("--{name} is required\n{usage}"))
    }

    /// Whether a switch is on.
    pub fn on(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// The Workload API address: `--socket`, else `SPIFFE_ENDPOINT_SOCKET`.
pub fn endpoint(flags: &Flags) -> Result<spiffe_mtls::workload::EndpointAddress, String> {
    let text = match flags.value("socket") {
        Some(text) => text.to_owned(),
        None => std::env::var("SPIFFE_ENDPOINT_SOCKET")
            .map_err(|_| "no --socket and no SPIFFE_ENDPOINT_SOCKET".to_owned())?,
    };
    text.parse().map_err(|e| format!("{text}: {e}"))
}

/// A minimal `tracing` subscriber: audit events (and warnings, errors of anything) on stderr,
/// one line each, `field=value` pairs.
pub struct StderrLog {
    only_denied: bool,
}

impl StderrLog {
    /// The subscriber.
    pub fn new() -> Self {
        Self { only_denied: false }
    }

    /// The subscriber of audit denials only.
    pub fn denials() -> Self {
        Self { only_denied: true }
    }
}

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!(" {value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl tracing::Subscriber for StderrLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == spiffe_mtls::tls::AUDIT_TARGET
            || *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let metadata = event.metadata();
        let label = if metadata.target() == spiffe_mtls::tls::AUDIT_TARGET {
            "audit".to_owned()
        } else {
            format!("{} {}", metadata.level(), metadata.target())
        };
        let mut line = Line(label);
        event.record(&mut line);
        if !self.only_denied || line.0.contains("decision=denied") {
            eprintln!("{}", line.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The agent (its skills `echo` and `secret`) at level 3 of the A2A authentication guide:
/// mutual TLS with `source`'s SVID with `hint`, and OAuth tokens of `validator`'s issuer
/// (whose token endpoint is `token_url`): the card, signed, declares the `oauth2` scheme,
/// `agent:execute` for every call and `data:pii` for `secret` too; the card stays public
/// (the token is optional there), each skill's scopes are required by the `SkillPolicy`.
#[cfg(feature = "oauth")]
pub fn start_oauth_agent_server(
    source: Arc<dyn X509Source>,
    hint: &str,
    listener: TcpListener,
    host: &str,
    policy: Policy,
    token_url: &str,
    validator: spiffe_mtls::oauth::AccessTokenValidator,
) -> Result<AgentServer, String> {
    let context = source.x509_context().map_err(|e| e.to_string())?;
    let id = context
        .svid_by_hint(hint)
        .ok_or_else(|| format!("no SVID with hint {hint}"))?
        .spiffe_id()
        .clone();
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let base_url = format!("https://{host}:{port}");
    let card = MtlsAgentCard::new("spiffe-mtls example agent", format!("{base_url}/a2a"))
        .description("Replies with your text (skill echo) or tells a secret (skill secret)")
        .server_id(id.clone())
        .skill("echo", "Echo", "Replies with the text it was sent")
        .skill("secret", "Secret", "Tells a secret: personal data")
        .oauth2(
            token_url,
            [
                ("agent:execute", "call the agent"),
                ("data:pii", "personal data"),
            ],
        )
        .require_scopes(["agent:execute"])
        .skill_scopes("secret", ["data:pii"])
        .signed_by(CardSigner::new(Arc::clone(&source)).svid_hint(hint));
    let skills = SkillPolicy::new(policy.clone()).scopes_from_card(&card.to_json());
    let layer = spiffe_mtls::oauth::OAuthLayer::new(Arc::new(validator)).optional();
    let app = skills_router(skills, card).layer(layer);
    let mut config = tls::server_config(Arc::clone(&source), policy.connect().clone())
        .svid_hint(hint)
        .build()
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let requests = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(net::HttpServer::new(listener, Arc::new(config)).serve(app));
    Ok(AgentServer {
        base_url,
        id,
        requests,
        task,
    })
}
