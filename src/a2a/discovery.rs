//! Agent discovery from a card URL alone: the card fetched over mutual TLS, its signature
//! verified against the bundle and bound to the server that served it, its SPIFFE profile
//! read, and the calls made over mutual TLS requiring exactly the declared ID.

use std::sync::Arc;
use std::time::SystemTime;

use super::client::{AgentClientError, CONNECT_TIMEOUT, fetch_card_json};
use super::{AGENT_CARD_PATH, AgentClient, SpiffeProfile, verify_card};
use crate::authorize::{self, Authorizer};
use crate::source::X509Source;
use crate::spiffe_id::SpiffeId;
use crate::tls;

/// How [`AgentClient::discover_with`] finds an agent: which SVID to present, which servers
/// may serve the card, whose card is expected.
///
/// # Example
/// ```no_run
/// use spiffe_mtls::a2a::{AgentClient, CardDiscovery};
/// use spiffe_mtls::{authorize, source::WorkloadApiSource};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = WorkloadApiSource::builder().build().await?;
/// let options = CardDiscovery::new()
///     .allow(authorize::member_of(["example.org".parse()?]))
///     .svid_hint("client");
/// let agent = AgentClient::discover_with(
///     "https://agents.example.org:8443/.well-known/agent-card.json",
///     source,
///     options,
/// )
/// .await?;
/// println!("{} is {}", agent.card().name, agent.server_id().map(ToString::to_string).unwrap_or_default());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CardDiscovery {
    svid_hint: Option<String>,
    allow: Authorizer,
    expected: Option<SpiffeId>,
    new_connection_per_call: bool,
}

impl Default for CardDiscovery {
    fn default() -> Self {
        Self::new()
    }
}

impl CardDiscovery {
    /// The defaults: the source's default SVID, any server whose SVID verifies against the
    /// bundle of its trust domain may serve the card (and is then the agent found: its
    /// SPIFFE ID is proven, what its card says is its own claim), pooled connections.
    pub fn new() -> Self {
        Self {
            svid_hint: None,
            allow: authorize::any(),
            expected: None,
            new_connection_per_call: false,
        }
    }

    /// Presents the SVID with this hint.
    #[must_use]
    pub fn svid_hint(mut self, hint: impl Into<String>) -> Self {
        self.svid_hint = Some(hint.into());
        self
    }

    /// Only servers whose SPIFFE ID `rule` allows may serve the card (checked in the
    /// handshake, before the request is sent).
    #[must_use]
    pub fn allow(mut self, rule: Authorizer) -> Self {
        self.allow = rule;
        self
    }

    /// The agent must be exactly `id`: the server that serves the card, the card's signer and
    /// the ID its profile declares.
    #[must_use]
    pub fn expect_id(mut self, id: SpiffeId) -> Self {
        self.expected = Some(id);
        self
    }

    /// A new connection (a full handshake) for every call, instead of pooled ones.
    #[must_use]
    pub fn new_connection_per_call(mut self) -> Self {
        self.new_connection_per_call = true;
        self
    }

    /// A client config of `source` (with the hint) accepting the servers `rule` allows.
    fn config(
        &self,
        source: &Arc<dyn X509Source>,
        rule: Authorizer,
    ) -> Result<rustls::ClientConfig, AgentClientError> {
        let mut builder = tls::client_config(Arc::clone(source), rule);
        if let Some(hint) = &self.svid_hint {
            builder = builder.svid_hint(hint.clone());
        }
        builder
            .build()
            .map_err(|e| AgentClientError::Client(e.to_string()))
    }

    /// A `reqwest` client over `config`.
    fn http(&self, config: rustls::ClientConfig) -> Result<reqwest::Client, AgentClientError> {
        // No redirects: the card is the one the server at the URL serves, and calls go to
        // the endpoint the signed card names, nowhere else.
        let mut builder = crate::net::reqwest_builder(config)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if self.new_connection_per_call {
            builder = builder.pool_max_idle_per_host(0);
        }
        builder
            .build()
            .map_err(|e| AgentClientError::Client(e.to_string()))
    }
}

impl AgentClient {
    /// Finds the agent whose card is at `card_url` (a `https://` URL; a URL without a path
    /// gets `/.well-known/agent-card.json`) with [`CardDiscovery::new`]'s defaults. See
    /// [`discover_with`](Self::discover_with).
    ///
    /// # Errors
    /// As [`discover_with`](Self::discover_with).
    ///
    /// # Example
    /// ```no_run
    /// use spiffe_mtls::a2a::AgentClient;
    /// use spiffe_mtls::source::WorkloadApiSource;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = WorkloadApiSource::builder().build().await?;
    /// let agent = AgentClient::discover("https://127.0.0.1:8443", source).await?;
    /// println!("{}", agent.send_text("hello", Some("echo")).await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn discover(
        card_url: &str,
        source: impl X509Source + 'static,
    ) -> Result<Self, AgentClientError> {
        Self::discover_with(card_url, source, CardDiscovery::new()).await
    }

    /// Finds the agent whose card is at `card_url`, trusting nothing the card says until its
    /// signature binds it to the server:
    ///
    /// 1. the card is fetched over mutual TLS with `source`'s SVID; the server's X.509-SVID
    ///    is verified against the bundle of its trust domain and its SPIFFE ID must be
    ///    allowed by `options` ([`allow`](CardDiscovery::allow),
    ///    [`expect_id`](CardDiscovery::expect_id));
    /// 2. the card's signature must verify ([`verify_card`]): an X.509-SVID chain valid
    ///    against its trust domain's bundle in `source`, by **the server's own SPIFFE ID**;
    /// 3. the card's [SPIFFE profile](SpiffeProfile) must declare that same ID;
    /// 4. the card must require mutual TLS and name a JSON-RPC v1.0 endpoint; calls go there
    ///    over mutual TLS requiring exactly that ID (a server elsewhere with another ID is
    ///    refused in the handshake).
    ///
    /// # Errors
    /// [`AgentClientError::Fetch`] (connection, handshake, a server ID not allowed),
    /// [`AgentClientError::Signature`] (unsigned, altered, signed by another workload or a
    /// key the bundle does not vouch for), [`AgentClientError::Profile`] (no profile, or one
    /// that names another ID), and the errors of [`connect`](Self::connect).
    ///
    /// # Example
    /// See [`CardDiscovery`].
    pub async fn discover_with(
        card_url: &str,
        source: impl X509Source + 'static,
        options: CardDiscovery,
    ) -> Result<Self, AgentClientError> {
        let source: Arc<dyn X509Source> = Arc::new(source);
        let url = card_location(card_url);
        let mut rule = options.allow.clone();
        if let Some(expected) = &options.expected {
            rule = authorize::all_of([rule, authorize::id(expected.clone())]);
        }
        let fetching = options.http(options.config(&source, rule)?)?;
        let own_id = source.x509_context().ok().map(|context| {
            let svid = options
                .svid_hint
                .as_deref()
                .and_then(|hint| context.svid_by_hint(hint))
                .unwrap_or_else(|| context.default_svid());
            svid.spiffe_id().clone()
        });
        let (card, peer) = fetch_card_json(&fetching, &url, own_id.as_ref()).await?;
        drop(fetching);
        let server = peer
            .map(|peer| peer.spiffe_id().clone())
            .ok_or_else(|| AgentClientError::NoPeerIdentity { url: url.clone() })?;
        let context = source
            .x509_context()
            .map_err(|e| AgentClientError::Client(e.to_string()))?;
        let signer =
            verify_card(&card, context.bundles(), &server, SystemTime::now()).map_err(|error| {
                AgentClientError::Signature {
                    url: url.clone(),
                    server: Box::new(server.clone()),
                    error: Box::new(error),
                }
            })?;
        let profile_error = |reason: String| AgentClientError::Profile {
            url: url.clone(),
            reason,
        };
        let profile = SpiffeProfile::from_card(&card)
            .map_err(|e| profile_error(e.to_string()))?
            .ok_or_else(|| {
                profile_error(format!(
                    "the card declares no SPIFFE profile ({})",
                    super::SPIFFE_PROFILE_URI
                ))
            })?;
        if profile.spiffe_id() != &signer {
            return Err(profile_error(format!(
                "it declares {} but is signed by {signer}",
                profile.spiffe_id()
            )));
        }
        let calling = options.http(options.config(&source, authorize::id(signer.clone()))?)?;
        // The signed profile says mutual TLS; the card's security requirements are not
        // covered by its signature (their scope lists are empty, which the canonical form
        // drops), so they decide nothing here.
        let mut agent = Self::from_card_json(calling, &url, card, false)?;
        agent.server_id = Some(signer);
        agent.profile = Some(profile);
        Ok(agent)
    }
}

/// The card's URL: `card_url`, or the well-known path under it when it has no path.
fn card_location(card_url: &str) -> String {
    match reqwest::Url::parse(card_url) {
        Ok(url) if url.path() == "/" => {
            format!("{}{AGENT_CARD_PATH}", card_url.trim_end_matches('/'))
        }
        _ => card_url.to_owned(),
    }
}
