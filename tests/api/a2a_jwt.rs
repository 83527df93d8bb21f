//! The agent server with JWT-SVIDs (`--auth jwt|both`): the card declares the bearer scheme;
//! a caller without a client certificate gets in with a token for the server's ID as audience
//! and not without one; with `both`, an mTLS caller gets in without a token; `[connect]` and
//! the skill policy apply to token callers too.
#![cfg(all(unix, feature = "a2a", feature = "dev-server", feature = "jwt"))]

use crate::agents;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use spiffe_mtls::a2a::AgentAuth;
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::jwt::{JwtBundleSource, JwtSource};
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Policy, authorize, net, tls};

const AGENT: &str = "spiffe://example.org/agent";

struct World {
    _dir: tempfile::TempDir,
    address: EndpointAddress,
    dev: DevServer,
    jwt: Arc<JwtSource>,
    server: agents::AgentServer,
}

async fn world(auth: AgentAuth, connect: &str) -> World {
    let config = DevServerConfig::one_identity(
        "example.org".parse().unwrap(),
        AGENT.parse().unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
    let dev = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .unwrap();
    let source = WorkloadApiSource::builder()
        .address(address.clone())
        .build()
        .await
        .unwrap();
    let jwt = Arc::new(JwtSource::connect(address.clone()).await.unwrap());
    let policy = Policy::from_toml(&format!(
        "[connect]\n{connect}\n[routes.echo]\ntrust_domains = [\"example.org\"]\n[routes.secret]\nids = [\"spiffe://example.org/boss\"]\n"
    ))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bundles: Arc<dyn JwtBundleSource> = Arc::clone(&jwt) as Arc<dyn JwtBundleSource>;
    let server = agents::start_agent_server_with(
        source,
        None,
        listener,
        "127.0.0.1",
        policy,
        auth,
        Some(bundles),
    )
    .unwrap();
    World {
        _dir: dir,
        address,
        dev,
        jwt,
        server,
    }
}

impl World {
    /// A reqwest client: with a client SVID (`mtls`) or without any certificate.
    async fn client(&self, mtls: bool) -> reqwest::Client {
        let source = WorkloadApiSource::builder()
            .address(self.address.clone())
            .build()
            .await
            .unwrap();
        let server = authorize::id(AGENT.parse().unwrap());
        let config = if mtls {
            tls::client_config(source, server).build().unwrap()
        } else {
            tls::tls_client_config(source, server).build().unwrap()
        };
        net::reqwest_client(config).unwrap()
    }

    async fn bearer(&self) -> String {
        let svid = self.jwt.fetch_svid(&[AGENT.to_owned()]).await.unwrap();
        format!("Bearer {}", svid.token())
    }

    /// A v0.3 `message/send` of `text` to `skill`: (HTTP status, the JSON answer).
    async fn send(
        &self,
        client: &reqwest::Client,
        bearer: Option<&str>,
        skill: &str,
    ) -> (u16, Value) {
        let mut request = client
            .post(format!("{}/a2a", self.server.base_url))
            .json(&json!({
                "jsonrpc": "2.0", "id": 1, "method": "message/send",
                "params": {"message": {"kind": "message", "messageId": "m1", "role": "user",
                    "parts": [{"kind": "text", "text": "hello"}], "metadata": {"skill": skill}}}
            }));
        if let Some(bearer) = bearer {
            request = request.header("authorization", bearer);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_mode_lets_token_callers_in_and_declares_the_bearer_scheme() {
    let w = world(AgentAuth::Jwt, "trust_domains = [\"example.org\"]").await;
    let anonymous = w.client(false).await;
    let bearer = w.bearer().await;

    let card_url = format!("{}/.well-known/agent-card.json", w.server.base_url);
    let refused = anonymous.get(&card_url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let card: Value = anonymous
        .get(&card_url)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = &card["securitySchemes"]["jwt"];
    assert_eq!(jwt["httpAuthSecurityScheme"]["scheme"], "Bearer", "{card}");
    assert_eq!(
        jwt["httpAuthSecurityScheme"]["bearerFormat"], "JWT",
        "{card}"
    );
    assert_eq!(jwt["type"], "http");
    assert!(card["securitySchemes"].get("mtls").is_none(), "{card}");
    assert_eq!(card["security"], json!([{"jwt": []}]));
    // No token in the card (the JWS header of its signature is the only base64 JSON in it).
    let mut unsigned = card.clone();
    unsigned.as_object_mut().unwrap().remove("signatures");
    assert!(
        !unsigned.to_string().contains("eyJ"),
        "no token in the card"
    );
    assert!(
        !card
            .to_string()
            .contains(bearer.trim_start_matches("Bearer "))
    );

    let (status, answer) = w.send(&anonymous, Some(&bearer), "echo").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["status"]["state"], "completed", "{answer}");
    assert!(answer.to_string().contains("hello"), "{answer}");
    // The skill policy applies to the token's identity.
    let (_, answer) = w.send(&anonymous, Some(&bearer), "secret").await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("secret"),
        "{answer}"
    );
    let (status, _) = w.send(&anonymous, None, "echo").await;
    assert_eq!(status, 401);
    w.dev.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn both_mode_takes_either_credential_and_connect_binds_tokens() {
    let w = world(AgentAuth::Both, "trust_domains = [\"example.org\"]").await;
    let card: Value = w
        .client(true)
        .await
        .get(format!("{}/.well-known/agent-card.json", w.server.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        card["security"],
        json!([{"mtls": []}, {"jwt": []}]),
        "{card}"
    );
    let (status, answer) = w.send(&w.client(true).await, None, "echo").await;
    assert_eq!(status, 200, "{answer}");
    let bearer = w.bearer().await;
    let (status, answer) = w.send(&w.client(false).await, Some(&bearer), "echo").await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = w.send(&w.client(false).await, None, "echo").await;
    assert_eq!(status, 401);
    w.dev.shutdown().await;

    // A [connect] rule that does not name the caller refuses its token too.
    let w = world(
        AgentAuth::Jwt,
        "ids = [\"spiffe://example.org/someone-else\"]",
    )
    .await;
    let bearer = w.bearer().await;
    let (status, _) = w.send(&w.client(false).await, Some(&bearer), "echo").await;
    assert_eq!(status, 403);
    w.dev.shutdown().await;
}
