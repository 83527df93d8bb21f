//! `agents_demo --oauth`: the three levels of the A2A authentication guide side by side, each
//! a call of the same agent skills: mutual TLS (the caller's X.509-SVID), a JWT-SVID bearer
//! (no client certificate), and an OAuth token from Keycloak that the agent got with its
//! JWT-SVID alone, with per-skill scopes.
#![allow(dead_code)]

use std::sync::Arc;

use spiffe_mtls::a2a::{AgentAuth, AgentClient, AgentClientError, CardDiscovery};
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::{JwtBundleSource, JwtSource};
use spiffe_mtls::oauth::{
    AccessTokenValidator, AuthorizationServer, AuthorizationServerHttp, ClientAuth, JwtSvidsOf,
    TokenClient,
};
use spiffe_mtls::source::{WorkloadApiSource, X509Source};
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Policy, authorize, net, tls};

use super::agents;

/// A reply as said: its text, or why there was none.
fn said(reply: &Result<String, AgentClientError>) -> String {
    match reply {
        Ok(text) => format!("{text:?}"),
        Err(error) => format!("FAILED: {error}"),
    }
}
use super::keycloak::Keycloak;

/// The agent server's SPIFFE ID.
pub const SERVER: &str = "spiffe://example.org/agent/server";
/// The calling agent's SPIFFE ID.
pub const CLIENT: &str = "spiffe://example.org/agent/client";

/// Every skill for example.org: at level 3 the scopes decide.
const POLICY: &str = r#"[connect]
trust_domains = ["example.org"]
[routes.echo]
trust_domains = ["example.org"]
[routes.secret]
trust_domains = ["example.org"]
"#;

/// What went as it should.
#[derive(Debug, Default)]
pub struct OAuthSummary {
    /// Level 1: the echo call over mutual TLS.
    pub mtls: bool,
    /// Level 2: the echo call with a JWT-SVID bearer and no client certificate.
    pub jwt: bool,
    /// Level 3: a token with the JWT-SVID alone, echo allowed with `agent:execute`.
    pub oauth: bool,
    /// Level 3: `secret` refused without `data:pii`, naming it.
    pub scope_refused: bool,
    /// Level 3: `secret` answered with `data:pii`.
    pub scope_allowed: bool,
}

impl OAuthSummary {
    /// Whether all went as it should.
    pub fn ok(&self) -> bool {
        self.mtls && self.jwt && self.oauth && self.scope_refused && self.scope_allowed
    }
}

/// Runs the three levels, telling `say` what happens. Keycloak: the one the `KEYCLOAK_*`
/// variables name, else one started with `interop/keycloak.sh` (and stopped after).
pub async fn run_oauth(say: &mut (dyn FnMut(String) + Send)) -> Result<OAuthSummary, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let keycloak = Keycloak::find_or_start(say)?;
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .map_err(|e| e.to_string())?
    };
    let entries = format!(
        "trust_domain = \"example.org\"\n\
         [[entry]]\nspiffe_id = \"{SERVER}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"server\"\ndns_names = [\"localhost\"]\n\
         [[entry]]\nspiffe_id = \"{CLIENT}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"client\"\n"
    );
    let dev = DevServer::start(
        DevServerConfig::from_toml(&entries).map_err(|e| e.to_string())?,
        EndpointAddress::Unix(dir.path().join("agent.sock")),
        DevServerOptions::default(),
    )
    .await
    .map_err(|e| format!("dev server: {e}"))?;
    let result = levels(&keycloak, &dev, say).await;
    dev.shutdown().await;
    result
}

async fn levels(
    keycloak: &Keycloak,
    dev: &DevServer,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<OAuthSummary, String> {
    let x509: Arc<dyn X509Source> = Arc::new(
        WorkloadApiSource::connect(dev.address().clone())
            .await
            .map_err(|e| format!("Workload API: {e}"))?,
    );
    let jwt = Arc::new(
        JwtSource::connect(dev.address().clone())
            .await
            .map_err(|e| format!("JWT-SVIDs: {e}"))?,
    );
    let policy = Policy::from_toml(POLICY).map_err(|e| e.to_string())?;
    let listen = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))
    };
    let mut summary = OAuthSummary::default();

    // Level 1: mutual TLS.
    let server = agents::start_agent_server(
        Arc::clone(&x509),
        Some("server"),
        listen().await?,
        "127.0.0.1",
        policy.clone(),
    )?;
    let agent = AgentClient::discover_with(
        &server.base_url,
        Arc::clone(&x509),
        CardDiscovery::new().svid_hint("client"),
    )
    .await
    .map_err(|e| e.to_string())?;
    let reply = agent.send_text("hello", Some("echo")).await;
    summary.mtls = reply.as_deref().ok() == Some("hello");
    say(format!(
        "level 1, mutual TLS: {CLIENT} presents its X.509-SVID; skill echo answered {}",
        said(&reply)
    ));
    server.stop();

    // Level 2: a JWT-SVID bearer, no client certificate (a caller behind a TLS-terminating
    // proxy).
    let bundles: Arc<dyn JwtBundleSource> = jwt.clone();
    let server = agents::start_agent_server_with(
        Arc::clone(&x509),
        Some("server"),
        listen().await?,
        "127.0.0.1",
        policy.clone(),
        AgentAuth::Both,
        Some(bundles),
    )?;
    let token = jwt
        .fetch_svid_of(
            &[SERVER.to_owned()],
            Some(&CLIENT.parse().map_err(|e| format!("{e}"))?),
        )
        .await
        .map_err(|e| e.to_string())?;
    let config = tls::tls_client_config(
        Arc::clone(&x509),
        authorize::id(SERVER.parse().map_err(|e| format!("{e}"))?),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let agent = AgentClient::with_client(bearer_client(config, token.token())?, &server.base_url)
        .await
        .map_err(|e| e.to_string())?;
    let reply = agent.send_text("hello", Some("echo")).await;
    summary.jwt = reply.as_deref().ok() == Some("hello");
    say(format!(
        "level 2, JWT-SVID bearer: {CLIENT} sends a JWT-SVID for the audience {SERVER}, no client certificate; skill echo answered {}",
        said(&reply)
    ));
    server.stop();

    // Level 3: an OAuth token from Keycloak, got with the JWT-SVID alone.
    let (bundle_url, endpoint) = keycloak
        .serve_bundle_endpoint(Arc::clone(&x509), jwt.clone())
        .await?;
    let issuer = keycloak
        .realm(
            "example.org",
            &bundle_url,
            SERVER,
            &[("agent-client", CLIENT, &["agent:execute", "data:pii"])],
        )
        .await?;
    let http = AuthorizationServerHttp::new([]).map_err(|e| e.to_string())?;
    let server_meta = AuthorizationServer::discover(&http, &issuer)
        .await
        .map_err(|e| e.to_string())?;
    say(format!(
        "level 3, OAuth: Keycloak realm {issuer} trusts example.org through our bundle endpoint {bundle_url}; the agent client has no client secret"
    ));
    let validator = AccessTokenValidator::new(http.clone(), server_meta.clone()).audience(SERVER);
    let server = agents::start_oauth_agent_server(
        Arc::clone(&x509),
        "server",
        listen().await?,
        "127.0.0.1",
        policy,
        server_meta.token_endpoint(),
        validator,
    )?;
    let tokens = TokenClient::new(
        http,
        server_meta,
        ClientAuth::JwtSvid(Arc::new(JwtSvidsOf::new(
            jwt.clone(),
            CLIENT.parse().map_err(|e| format!("{e}"))?,
        ))),
    );
    let execute = tokens
        .token(&["agent:execute"])
        .await
        .map_err(|e| e.to_string())?;
    let agent = oauth_agent(&x509, &server.base_url, &execute.token).await?;
    let reply = agent.send_text("hello", Some("echo")).await;
    summary.oauth = reply.as_deref().ok() == Some("hello");
    say(format!(
        "level 3, OAuth: a token for {:?} with the JWT-SVID as client assertion; skill echo answered {}",
        execute.scopes,
        said(&reply)
    ));
    match agent.send_text("the secret?", Some("secret")).await {
        Err(AgentClientError::Refused { message, .. }) => {
            summary.scope_refused = message.contains("needs the scope data:pii");
            say(format!("level 3, OAuth: skill secret refused: {message}"));
        }
        other => say(format!(
            "level 3, OAuth: skill secret NOT refused: {other:?}"
        )),
    }
    let both = tokens
        .token(&["agent:execute", "data:pii"])
        .await
        .map_err(|e| e.to_string())?;
    let agent = oauth_agent(&x509, &server.base_url, &both.token).await?;
    let reply = agent.send_text("the secret?", Some("secret")).await;
    summary.scope_allowed = reply.as_deref().ok() == Some(agents::SECRET);
    say(format!(
        "level 3, OAuth: with a token for {:?}, skill secret answered {}",
        both.scopes,
        said(&reply)
    ));
    server.stop();
    endpoint.abort();
    say(format!(
        "summary: mutual TLS {}, JWT-SVID bearer {}, OAuth {} (data:pii refused without the scope: {}, allowed with it: {})",
        summary.mtls, summary.jwt, summary.oauth, summary.scope_refused, summary.scope_allowed
    ));
    Ok(summary)
}

/// A client over `config` sending `token` as its bearer.
fn bearer_client(
    config: spiffe_mtls::rustls::ClientConfig,
    token: &str,
) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value: reqwest::header::HeaderValue = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token is not a header value".to_owned())?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    net::reqwest_builder(config)
        .default_headers(headers)
        .build()
        .map_err(|e| e.to_string())
}

/// The agent client over mutual TLS (as the client) with `token`.
async fn oauth_agent(
    x509: &Arc<dyn X509Source>,
    base_url: &str,
    token: &str,
) -> Result<AgentClient, String> {
    let config = tls::client_config(
        Arc::clone(x509),
        authorize::id(SERVER.parse().map_err(|e| format!("{e}"))?),
    )
    .svid_hint("client")
    .build()
    .map_err(|e| e.to_string())?;
    AgentClient::with_client(bearer_client(config, token)?, base_url)
        .await
        .map_err(|e| e.to_string())
}
