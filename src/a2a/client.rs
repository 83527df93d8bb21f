//! An A2A client over SPIFFE mutual TLS: the card resolved with this crate's `reqwest`
//! client, the calls made with the SDK's.

use std::collections::HashMap;
use std::time::Duration;

use a2a_client::A2AClient;
use a2a_client::jsonrpc::JsonRpcTransport;
use a2a_protocol::{
    A2AError, AgentCard, Message, Part, Role, SecurityScheme, SendMessageRequest,
    SendMessageResponse, StreamResponse, TRANSPORT_PROTOCOL_JSONRPC, Task,
};
use futures_util::StreamExt;
use rustls::ClientConfig;
use serde_json::Value;

use super::{AGENT_CARD_PATH, SKILL_METADATA_KEY};

/// How long connecting (TCP and TLS) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long fetching a card may take in all.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest agent card read.
pub const MAX_CARD_BYTES: usize = 1024 * 1024;

/// The most stream events [`AgentClient::send_text_streaming`] reads.
const MAX_EVENTS: usize = 10_000;

/// Why an agent could not be called.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentClientError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The card could not be fetched: the connection, the TLS handshake (a server whose
    /// SPIFFE ID the config does not allow is refused here, before any request is sent) or
    /// the HTTP exchange failed.
    #[error("cannot fetch the agent card from {url}: {reason}")]
    Fetch {
        /// The card's URL.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// The card is not a v1.0 agent card.
    #[error("the agent card from {url} is invalid: {reason}")]
    Card {
        /// The card's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The card does not require mutual TLS (no security requirement names a mutual TLS
    /// scheme), so the agent would not know who calls it.
    #[error("the agent card of {name:?} does not require mutual TLS")]
    NoMutualTls {
        /// The agent's name.
        name: String,
    },
    /// The card names no JSON-RPC v1.0 interface.
    #[error("the agent card of {name:?} has no JSON-RPC v1.0 interface")]
    NoJsonRpc {
        /// The agent's name.
        name: String,
    },
    /// The agent answered with an error (a refused skill, say).
    #[error("the agent refused the call: {message} (code {code})")]
    Refused {
        /// The JSON-RPC error code.
        code: i32,
        /// The agent's message.
        message: String,
    },
    /// The server that served the card has no SPIFFE ID to bind its signature to.
    #[error("the server of {url} presented no SPIFFE ID")]
    NoPeerIdentity {
        /// The card's URL.
        url: String,
    },
    /// The card's signature does not bind it to the server that served it.
    #[error("the agent card from {url}, served by {server}, is refused: {error}")]
    Signature {
        /// The card's URL.
        url: String,
        /// The SPIFFE ID of the server that served it.
        server: Box<crate::SpiffeId>,
        /// The rule the signature broke.
        error: Box<super::CardSignatureError>,
    },
    /// The card's SPIFFE profile is missing, invalid, or names another ID than its signer.
    #[error("the SPIFFE profile of the agent card from {url} is refused: {reason}")]
    Profile {
        /// The card's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The answer held no text.
    #[error("the agent's answer holds no text")]
    NoText,
}

impl From<A2AError> for AgentClientError {
    fn from(error: A2AError) -> Self {
        Self::Refused {
            code: error.code,
            message: error.message,
        }
    }
}

/// An error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    let mut depth = 0;
    while let Some(cause) = source {
        if depth == 8 {
            break;
        }
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
        depth += 1;
    }
    text
}

/// A client of one agent over SPIFFE mutual TLS.
///
/// [`connect`](Self::connect) fetches the agent card with this crate's `reqwest` client
/// ([`reqwest_builder`](crate::net::reqwest_builder)), so the TLS handshake verifies the
/// server's X.509-SVID and lets the config's authorizer decide on its SPIFFE ID before any
/// request is sent: a server with another ID never sees one. Then it checks that the card
/// requires mutual TLS (a security requirement naming a `mtlsSecurityScheme`), takes its
/// JSON-RPC v1.0 endpoint, and makes the SDK's [`A2AClient`] on the same `reqwest` client.
///
/// # Example
/// See the [module docs](super).
pub struct AgentClient {
    card: AgentCard,
    endpoint: String,
    sdk: A2AClient<JsonRpcTransport>,
    pub(super) server_id: Option<crate::SpiffeId>,
    pub(super) profile: Option<super::SpiffeProfile>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("agent", &self.card.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Connects to the agent at `base_url` (`https://host:port`, the card is at
    /// `/.well-known/agent-card.json` under it) with `config` (from
    /// [`tls::client_config`](crate::tls::client_config), whose authorizer names the
    /// server).
    ///
    /// # Errors
    /// [`AgentClientError`]: the handshake or the fetch failed, the card is invalid, does not
    /// require mutual TLS or has no JSON-RPC v1.0 interface.
    ///
    /// # Example
    /// See the [module docs](super).
    pub async fn connect(config: ClientConfig, base_url: &str) -> Result<Self, AgentClientError> {
        let own_id = crate::tls::PeerIdentity::own_id(&config);
        let http = crate::net::reqwest_builder(config)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| AgentClientError::Client(chain(&e)))?;
        Self::fetch_card(http, base_url, own_id.as_ref()).await
    }

    /// As [`connect`](Self::connect), with a `reqwest` client already built (by
    /// [`reqwest_builder`](crate::net::reqwest_builder)).
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    ///
    /// # Example
    /// ```no_run
    /// # async fn run(http: reqwest::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let agent = spiffe_mtls::a2a::AgentClient::with_client(http, "https://127.0.0.1:8443").await?;
    /// println!("{}", agent.card().name);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn with_client(
        http: reqwest::Client,
        base_url: &str,
    ) -> Result<Self, AgentClientError> {
        Self::fetch_card(http, base_url, None).await
    }

    /// Fetches and checks the card; `own_id` (the ID we present, when known) names us in a
    /// refusal by the server.
    async fn fetch_card(
        http: reqwest::Client,
        base_url: &str,
        own_id: Option<&crate::SpiffeId>,
    ) -> Result<Self, AgentClientError> {
        let url = format!("{}{AGENT_CARD_PATH}", base_url.trim_end_matches('/'));
        let (card, _) = fetch_card_json(&http, &url, own_id).await?;
        Self::from_card_json(http, &url, card, true)
    }

    /// The client of the agent `card` (v1.0 JSON, fetched from `url`) describes, calling over
    /// `http`, after checking that the card names a JSON-RPC v1.0 endpoint and, with
    /// `check_requirements`, that its security requirements name mutual TLS.
    pub(super) fn from_card_json(
        http: reqwest::Client,
        url: &str,
        card: Value,
        check_requirements: bool,
    ) -> Result<Self, AgentClientError> {
        let card: AgentCard = serde_json::from_value(card).map_err(|e| AgentClientError::Card {
            url: url.to_owned(),
            reason: chain(&e),
        })?;
        if check_requirements && !requires_mutual_tls(&card) {
            return Err(AgentClientError::NoMutualTls { name: card.name });
        }
        let Some(endpoint) = card
            .supported_interfaces
            .iter()
            .find(|i| {
                i.protocol_binding
                    .eq_ignore_ascii_case(TRANSPORT_PROTOCOL_JSONRPC)
                    && i.protocol_version.trim().starts_with('1')
            })
            .map(|i| i.wire_url())
        else {
            return Err(AgentClientError::NoJsonRpc { name: card.name });
        };
        let sdk = A2AClient::new(JsonRpcTransport::new(http, endpoint.clone()));
        Ok(Self {
            card,
            endpoint,
            sdk,
            server_id: None,
            profile: None,
        })
    }

    /// The agent's card (v1.0).
    ///
    /// # Example
    /// See [`with_client`](Self::with_client).
    pub fn card(&self) -> &AgentCard {
        &self.card
    }

    /// The agent's SPIFFE ID, for a client made by [`discover`](Self::discover): the signer
    /// of its card, declared by its profile, required of every connection. `None` for
    /// [`connect`](Self::connect) (where the config's authorizer decides).
    ///
    /// # Example
    /// See [`CardDiscovery`](super::CardDiscovery).
    pub fn server_id(&self) -> Option<&crate::SpiffeId> {
        self.server_id.as_ref()
    }

    /// The card's SPIFFE profile, for a client made by [`discover`](Self::discover).
    ///
    /// # Example
    /// ```no_run
    /// # fn f(agent: &spiffe_mtls::a2a::AgentClient) {
    /// if let Some(url) = agent.profile().and_then(|p| p.bundle_endpoint()) {
    ///     println!("its bundle is published at {url}");
    /// }
    /// # }
    /// ```
    pub fn profile(&self) -> Option<&super::SpiffeProfile> {
        self.profile.as_ref()
    }

    /// The JSON-RPC endpoint the card names.
    ///
    /// # Example
    /// ```no_run
    /// # fn f(agent: &spiffe_mtls::a2a::AgentClient) {
    /// println!("calling {}", agent.endpoint());
    /// # }
    /// ```
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The SDK's client, for the calls this type does not wrap.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(agent: &spiffe_mtls::a2a::AgentClient) -> Result<(), spiffe_mtls::a2a::protocol::A2AError> {
    /// use spiffe_mtls::a2a::protocol::GetTaskRequest;
    /// let task = agent.sdk().get_task(&GetTaskRequest { id: "t".into(), history_length: None, tenant: None }).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sdk(&self) -> &A2AClient<JsonRpcTransport> {
        &self.sdk
    }

    /// The `SendMessage` request of a user text for `skill` (in `message.metadata.skill`;
    /// `None`: the agent's default skill).
    fn request(text: &str, skill: Option<&str>) -> SendMessageRequest {
        let mut message = Message::new(Role::User, vec![Part::text(text)]);
        if let Some(skill) = skill {
            message.metadata = Some(HashMap::from([(
                SKILL_METADATA_KEY.to_owned(),
                Value::String(skill.to_owned()),
            )]));
        }
        SendMessageRequest {
            message,
            configuration: None,
            metadata: None,
            tenant: None,
        }
    }

    /// Sends `text` to `skill` (`SendMessage`) and returns the reply's text.
    ///
    /// # Errors
    /// [`AgentClientError::Refused`] with the agent's error (a skill the policy refuses),
    /// [`AgentClientError::NoText`] when the answer holds no text.
    ///
    /// # Example
    /// See the [module docs](super).
    pub async fn send_text(
        &self,
        text: &str,
        skill: Option<&str>,
    ) -> Result<String, AgentClientError> {
        let response = self.sdk.send_message(&Self::request(text, skill)).await?;
        reply_text(&response).ok_or(AgentClientError::NoText)
    }

    /// Sends `text` to `skill` with `SendStreamingMessage` and returns the text of the
    /// events (artifact texts, else message texts, else the last status message's).
    ///
    /// # Errors
    /// As [`send_text`](Self::send_text); an error event refuses too.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(agent: &spiffe_mtls::a2a::AgentClient) -> Result<(), spiffe_mtls::a2a::AgentClientError> {
    /// println!("{}", agent.send_text_streaming("hello", None).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_text_streaming(
        &self,
        text: &str,
        skill: Option<&str>,
    ) -> Result<String, AgentClientError> {
        let mut stream = self
            .sdk
            .send_streaming_message(&Self::request(text, skill))
            .await?;
        let (mut artifacts, mut messages, mut status) = (String::new(), String::new(), None);
        let mut events = 0;
        while let Some(event) = stream.next().await {
            events += 1;
            if events > MAX_EVENTS {
                break;
            }
            match event? {
                StreamResponse::ArtifactUpdate(update) => {
                    artifacts.push_str(&texts(&update.artifact.parts));
                }
                StreamResponse::Message(message) => messages.push_str(&texts(&message.parts)),
                StreamResponse::StatusUpdate(update) => {
                    if let Some(message) = update.status.message {
                        status = Some(texts(&message.parts));
                    }
                }
                StreamResponse::Task(task) => {
                    if let Some(text) = task_text(&task) {
                        status = Some(text);
                    }
                }
            }
        }
        [Some(artifacts), Some(messages), status]
            .into_iter()
            .flatten()
            .find(|text| !text.is_empty())
            .ok_or(AgentClientError::NoText)
    }
}

/// The v1.0 card at `url` as JSON (at most [`MAX_CARD_BYTES`]), and the server that
/// answered (its SPIFFE ID, verified by the handshake). `own_id` (the ID we present, when
/// known) names us in a refusal by the server.
pub(super) async fn fetch_card_json(
    http: &reqwest::Client,
    url: &str,
    own_id: Option<&crate::SpiffeId>,
) -> Result<(Value, Option<crate::tls::PeerIdentity>), AgentClientError> {
    let fetch = |reason: String| AgentClientError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let mut response = http
        .get(url)
        .header("A2A-Version", a2a_protocol::VERSION)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            // reqwest's own text repeats the URL: its causes say what failed.
            let cause = std::error::Error::source(&e).unwrap_or(&e);
            fetch(crate::net::describe_error(
                cause,
                crate::tls::Side::Client,
                own_id,
            ))
        })?;
    if !response.status().is_success() {
        return Err(fetch(format!("HTTP {}", response.status())));
    }
    let peer = crate::net::reqwest_peer(&response);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fetch(chain(&e)))? {
        if body.len() + chunk.len() > MAX_CARD_BYTES {
            return Err(AgentClientError::Card {
                url: url.to_owned(),
                reason: format!("larger than {MAX_CARD_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let card = serde_json::from_slice(&body).map_err(|e| AgentClientError::Card {
        url: url.to_owned(),
        reason: chain(&e),
    })?;
    Ok((card, peer))
}

/// Whether the card's security requirements name a mutual TLS scheme it declares.
fn requires_mutual_tls(card: &AgentCard) -> bool {
    let (Some(schemes), Some(requirements)) = (&card.security_schemes, &card.security_requirements)
    else {
        return false;
    };
    requirements.iter().any(|requirement| {
        requirement
            .keys()
            .any(|name| matches!(schemes.get(name), Some(SecurityScheme::MutualTls(_))))
    })
}

/// The text parts, joined.
fn texts(parts: &[Part]) -> String {
    parts.iter().filter_map(Part::as_text).collect()
}

fn task_text(task: &Task) -> Option<String> {
    let artifacts: String = task
        .artifacts
        .iter()
        .flatten()
        .map(|artifact| texts(&artifact.parts))
        .collect();
    if !artifacts.is_empty() {
        return Some(artifacts);
    }
    let status = task.status.message.as_ref().map(|m| texts(&m.parts))?;
    (!status.is_empty()).then_some(status)
}

/// The text of a `SendMessage` answer: a message's text parts, or a task's artifact texts
/// (else its status message's).
///
/// # Example
/// ```
/// use spiffe_mtls::a2a::{reply_text, protocol::{Message, Part, Role, SendMessageResponse}};
///
/// let answer = SendMessageResponse::Message(Message::new(Role::Agent, vec![Part::text("hi")]));
/// assert_eq!(reply_text(&answer).as_deref(), Some("hi"));
/// ```
pub fn reply_text(response: &SendMessageResponse) -> Option<String> {
    match response {
        SendMessageResponse::Message(message) => {
            let text = texts(&message.parts);
            (!text.is_empty()).then_some(text)
        }
        SendMessageResponse::Task(task) => task_text(task),
    }
}
