//! A2A agents over SPIFFE mutual TLS: the example agent (`examples/support/agents.rs`, the
//! code `agent_server` runs) against the crate's `AgentClient` (what `agent_client` runs),
//! with a dev server giving every identity in process (selector `unix:uid`, hints).
#![cfg(all(feature = "a2a", feature = "dev-server"))]

#[path = "../examples/support/agents.rs"]
mod agents;
mod common;
#[path = "a2a/discovery.rs"]
mod discovery;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use spiffe_mtls::a2a::protocol::{
    GetTaskRequest, ListTasksRequest, Message, Part, Role, SendMessageRequest, SendMessageResponse,
    error_code,
};
use spiffe_mtls::a2a::{AgentClient, AgentClientError, REFUSED_CODE};
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::source::{WorkloadApiSource, X509Source};
use spiffe_mtls::tls::AUDIT_TARGET;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Policy, authorize, net, tls};

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
const BOSS: &str = "spiffe://example.org/agent/boss";
const IMPOSTOR: &str = "spiffe://example.org/agent/impostor";

const POLICY: &str = r#"
[connect]
trust_domains = ["example.org"]
[routes.echo]
trust_domains = ["example.org"]
[routes.secret]
ids = ["spiffe://example.org/agent/boss"]
"#;

/// Every event of every test: its target and its fields on one line.
fn log() -> &'static Mutex<Vec<(String, String)>> {
    static LOG: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let capture = common::capture::Capture::new(|target, fields| {
            let line = fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(log) = LOG.get() {
                log.lock().unwrap().push((target.to_owned(), line));
            }
        });
        let _ = tracing::subscriber::set_global_default(capture);
        Mutex::new(Vec::new())
    })
}

struct World {
    _dir: tempfile::TempDir,
    dev: DevServer,
    source: Arc<WorkloadApiSource>,
    server: agents::AgentServer,
}

impl World {
    async fn start() -> Self {
        log();
        let dir = tempfile::tempdir().unwrap();
        let uid = common::my_uid();
        let entry = |id: &str, hint: &str| {
            format!(
                "[[entry]]\nspiffe_id = \"{id}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"{hint}\"\ndns_names = [\"localhost\"]\n"
            )
        };
        let config = format!(
            "trust_domain = \"example.org\"\n{}{}{}{}",
            entry(SERVER, "server"),
            entry(CLIENT, "client"),
            entry(BOSS, "boss"),
            entry(IMPOSTOR, "impostor")
        );
        let dev = DevServer::start(
            DevServerConfig::from_toml(&config).unwrap(),
            EndpointAddress::Unix(dir.path().join("agent.sock")),
            DevServerOptions::default(),
        )
        .await
        .unwrap();
        let source = Arc::new(
            WorkloadApiSource::connect(dev.address().clone())
                .await
                .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = agents::start_agent_server(
            Arc::clone(&source),
            Some("server"),
            listener,
            "127.0.0.1",
            Policy::from_toml(POLICY).unwrap(),
        )
        .unwrap();
        Self {
            _dir: dir,
            dev,
            source,
            server,
        }
    }

    fn config(&self, hint: &str, server: &str) -> spiffe_mtls::rustls::ClientConfig {
        tls::client_config(
            Arc::clone(&self.source),
            authorize::id(server.parse().unwrap()),
        )
        .svid_hint(hint)
        .build()
        .unwrap()
    }

    async fn agent(&self, hint: &str) -> AgentClient {
        AgentClient::connect(self.config(hint, SERVER), &self.server.base_url)
            .await
            .unwrap()
    }

    /// The DER of every private key the source holds now, base64.
    fn keys(&self) -> Vec<String> {
        let context = self.source.x509_context().unwrap();
        context
            .svids()
            .iter()
            .map(|svid| {
                base64::engine::general_purpose::STANDARD.encode(svid.private_key().secret_der())
            })
            .collect()
    }

    async fn stop(self) {
        self.server.stop();
        self.dev.shutdown().await;
    }
}

/// No event carries key material (a PEM block, or the base64 of one of `keys`); no event but
/// the SDK's opt-in debug wire log (`a2a_client::wire`, message bodies) carries `text`.
fn assert_clean_log(keys: &[String], text: &str) {
    let log = log().lock().unwrap();
    assert!(!log.is_empty());
    for (target, line) in log.iter() {
        assert!(!line.contains("-----BEGIN"), "{target}: {line}");
        assert!(!line.contains("PRIVATE KEY"), "{target}: {line}");
        for key in keys {
            assert!(
                !line.contains(&key[..40]),
                "key material in {target}: {line}"
            );
        }
        if target != "a2a_client::wire" {
            assert!(!line.contains(text), "{target}: {line}");
        }
    }
}

fn audit_events(skill: &str, peer: &str) -> Vec<String> {
    log()
        .lock()
        .unwrap()
        .iter()
        .filter(|(target, line)| {
            target == AUDIT_TARGET
                && line.contains(&format!("skill={skill}"))
                && line.contains(&format!("peer={peer} "))
        })
        .map(|(_, line)| line.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_an_unexpected_id_is_refused_before_any_request() {
    let world = World::start().await;
    let impostor = "spiffe://example.org/agent/impostor";
    let error = AgentClient::connect(world.config("client", impostor), &world.server.base_url)
        .await
        .unwrap_err();
    let AgentClientError::Fetch { reason, .. } = &error else {
        panic!("{error}");
    };
    // Said as what the client expected and what the server presented, never an alert name.
    assert!(
        reason.ends_with(&format!(
            "the server is not authorized: expected the ID {impostor}, presented {SERVER}"
        )),
        "{error}"
    );
    assert!(
        !reason.contains("ApplicationVerificationFailure"),
        "{error}"
    );
    // The handshake failed on the client's side: no request reached the server.
    assert_eq!(world.server.requests.load(Ordering::Relaxed), 0);
    // The client's audit trail names the server it refused and the rule.
    let refused = log().lock().unwrap().iter().any(|(target, line)| {
        target == AUDIT_TARGET
            && line.contains("side=client")
            && line.contains("decision=denied")
            && line.contains(&format!("peer={SERVER} "))
            && line.contains(impostor)
    });
    assert!(refused, "no client-side denial in the audit log");
    // The expected ID gets through.
    let agent = world.agent("client").await;
    assert_eq!(agent.send_text("hello", None).await.unwrap(), "hello");
    assert!(world.server.requests.load(Ordering::Relaxed) >= 2);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorized_client_is_refused_per_skill() {
    let world = World::start().await;
    let client = world.agent("client").await;
    assert_eq!(client.card().name, "spiffe-mtls example agent");
    assert_eq!(client.endpoint(), format!("{}/a2a", world.server.base_url));

    assert_eq!(
        client.send_text("hello", Some("echo")).await.unwrap(),
        "hello"
    );
    assert_eq!(
        client.send_text_streaming("hi there", None).await.unwrap(),
        "hi there"
    );
    let expected = format!("skill \"secret\" does not allow {CLIENT}");
    for refused in [
        client.send_text("tell me", Some("secret")).await,
        client.send_text_streaming("tell me", Some("secret")).await,
    ] {
        match refused {
            Err(AgentClientError::Refused { message, .. }) => assert_eq!(message, expected),
            other => panic!("{other:?}"),
        }
    }
    // A skill nobody named is refused too.
    assert!(matches!(
        client.send_text("x", Some("admin")).await,
        Err(AgentClientError::Refused { .. })
    ));

    let boss = world.agent("boss").await;
    assert_eq!(
        boss.send_text("tell me", Some("secret")).await.unwrap(),
        agents::SECRET
    );
    assert_eq!(
        boss.send_text_streaming("tell me", Some("secret"))
            .await
            .unwrap(),
        agents::SECRET
    );

    // The boss's task (its answer) is the boss's alone: GetTask (v1.0) finds it for the boss,
    // not for the client; listing every task is refused.
    let mut request = SendMessageRequest {
        message: Message::new(Role::User, vec![Part::text("tell me")]),
        configuration: None,
        metadata: None,
        tenant: None,
    };
    request.message.metadata = Some([("skill".to_owned(), json!("secret"))].into());
    let SendMessageResponse::Task(task) = boss.sdk().send_message(&request).await.unwrap() else {
        panic!("no task");
    };
    let get = GetTaskRequest {
        id: task.id.clone(),
        history_length: None,
        tenant: None,
    };
    let found = boss.sdk().get_task(&get).await.unwrap();
    assert_eq!(
        found.artifacts.unwrap()[0].parts[0].as_text(),
        Some(agents::SECRET)
    );
    let hidden = client.sdk().get_task(&get).await.unwrap_err();
    assert_eq!(hidden.code, error_code::TASK_NOT_FOUND, "{hidden}");
    let listing = ListTasksRequest {
        context_id: None,
        status: None,
        page_size: None,
        page_token: None,
        history_length: None,
        status_timestamp_after: None,
        include_artifacts: None,
        tenant: None,
    };
    let refused = client.sdk().list_tasks(&listing).await.unwrap_err();
    assert!(
        refused.message.contains("ListTasks does not allow"),
        "{refused}"
    );

    // A header claiming the boss's ID is removed before the agent reads it.
    let http = net::reqwest_client(world.config("client", SERVER)).unwrap();
    let answer: Value = http
        .post(format!("{}/a2a", world.server.base_url))
        .header("A2A-Version", "1.0")
        .header("x-spiffe-id", BOSS)
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "SendMessage",
            "params": {"message": {"messageId": "m1", "role": "ROLE_USER",
                "parts": [{"text": "tell me"}], "metadata": {"skill": "secret"}}}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["error"]["code"], REFUSED_CODE, "{answer}");
    assert_eq!(answer["error"]["message"], expected.as_str(), "{answer}");

    // Each decision is an audit event with the caller's SPIFFE ID.
    let denied = audit_events("secret", CLIENT);
    assert!(denied.len() >= 3, "{denied:?}");
    assert!(
        denied
            .iter()
            .all(|l| l.contains("decision=denied") && l.contains("trust_domain=example.org"))
    );
    let allowed = audit_events("secret", BOSS);
    assert!(
        allowed
            .iter()
            .any(|l| l.contains("decision=accepted") && l.contains("method=SendMessage"))
    );
    assert!(
        allowed
            .iter()
            .any(|l| l.contains("method=SendStreamingMessage"))
    );

    assert_clean_log(&world.keys(), agents::SECRET);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_during_a_conversation_fails_no_call() {
    let world = World::start().await;
    // A new connection, so a full handshake, for every call.
    let http = net::reqwest_builder(world.config("client", SERVER))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let agent = AgentClient::with_client(http, &world.server.base_url)
        .await
        .unwrap();
    let leaf = |hint: &str| {
        world
            .source
            .x509_context()
            .unwrap()
            .svid_by_hint(hint)
            .unwrap()
            .leaf()
            .clone()
    };
    let (first_server, first_client) = (leaf("server"), leaf("client"));
    let mut keys = world.keys();

    let dev = &world.dev;
    let rotations = async {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            dev.rotate_svids().await;
        }
    };
    let conversation = async {
        let started = Instant::now();
        let (mut calls, mut failed) = (0u32, Vec::new());
        while started.elapsed() < Duration::from_millis(2400) || calls < 10 {
            calls += 1;
            let text = format!("message #{calls}");
            let reply = if calls % 2 == 0 {
                agent.send_text_streaming(&text, None).await
            } else {
                agent.send_text(&text, Some("echo")).await
            };
            match reply {
                Ok(reply) if reply == text => {}
                other => failed.push(format!("call {calls}: {other:?}")),
            }
            if calls > 10_000 {
                break;
            }
        }
        (calls, failed)
    };
    let ((), (calls, failed)) = tokio::join!(rotations, conversation);
    assert!(
        failed.is_empty(),
        "{} of {calls} calls failed: {failed:?}",
        failed.len()
    );
    assert!(calls >= 10, "{calls}");
    println!("{calls} calls during 6 rotations of both SVIDs, 0 failed");
    // Both sides rotated during the conversation.
    assert_ne!(leaf("server"), first_server);
    assert_ne!(leaf("client"), first_client);
    keys.extend(world.keys());
    assert_clean_log(&keys, agents::SECRET);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_declares_mutual_tls_in_both_dialects_without_key_material() {
    let world = World::start().await;
    let http = net::reqwest_client(world.config("client", SERVER)).unwrap();
    let card_url = format!("{}/.well-known/agent-card.json", world.server.base_url);
    let fetch = |version: Option<&'static str>| {
        let mut request = http.get(&card_url);
        if let Some(version) = version {
            request = request.header("A2A-Version", version);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let (both, v1, v03) = (
        fetch(None).await,
        fetch(Some("1.0")).await,
        fetch(Some("0.3")).await,
    );

    let context = world.source.x509_context().unwrap();
    let server = context.svid_by_hint("server").unwrap();
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    // The card carries no key and no bundle; the signature's header holds the SVID chain
    // (public certificates, what the handshake shows anyway).
    let secrets = [
        b64(server.private_key().secret_der()),
        b64(world.dev.roots()[0].as_ref()),
    ];
    for text in [&both, &v1, &v03] {
        assert!(!text.contains("-----BEGIN"), "{text}");
        for secret in &secrets {
            assert!(!text.contains(&secret[..40]), "{text}");
        }
    }

    let both: Value = serde_json::from_str(&both).unwrap();
    let endpoint = format!("{}/a2a", world.server.base_url);
    assert_eq!(both["supportedInterfaces"][0]["url"], endpoint.as_str());
    assert_eq!(both["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
    assert_eq!(both["supportedInterfaces"][0]["protocolVersion"], "1.0");
    assert!(
        both["securitySchemes"]["mtls"]["mtlsSecurityScheme"]["description"]
            .as_str()
            .unwrap()
            .contains(SERVER)
    );
    assert_eq!(
        both["securityRequirements"],
        json!([{"schemes": {"mtls": {"list": []}}}])
    );
    assert_eq!(both["url"], endpoint.as_str());
    assert_eq!(both["protocolVersion"], "0.3.0");
    assert_eq!(both["preferredTransport"], "JSONRPC");
    assert_eq!(both["securitySchemes"]["mtls"]["type"], "mutualTLS");
    assert_eq!(both["security"], json!([{"mtls": []}]));
    for skill in both["skills"].as_array().unwrap() {
        assert_eq!(
            skill["securityRequirements"],
            json!([{"schemes": {"mtls": {"list": []}}}])
        );
        assert_eq!(skill["security"], json!([{"mtls": []}]));
    }
    let skills: Vec<&str> = both["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["echo", "secret"]);

    // The SDK's v1.0 type reads the two-dialect document too.
    let read: spiffe_mtls::a2a::protocol::AgentCard = serde_json::from_value(both.clone()).unwrap();
    assert!(matches!(
        read.security_schemes.unwrap()["mtls"],
        spiffe_mtls::a2a::protocol::SecurityScheme::MutualTls(_)
    ));
    let v1: Value = serde_json::from_str(&v1).unwrap();
    assert!(v1.get("url").is_none() && v1.get("security").is_none());
    let v1: spiffe_mtls::a2a::protocol::AgentCard = serde_json::from_value(v1).unwrap();
    assert_eq!(v1.skills.len(), 2);
    let v03: Value = serde_json::from_str(&v03).unwrap();
    assert!(v03.get("supportedInterfaces").is_none());
    assert_eq!(
        v03["securitySchemes"]["mtls"],
        json!({
            "type": "mutualTLS",
            "description": both["securitySchemes"]["mtls"]["description"].clone(),
        })
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v0_3_calls_are_answered_in_v0_3_shape() {
    let world = World::start().await;
    let http = net::reqwest_client(world.config("client", SERVER)).unwrap();
    let endpoint = format!("{}/a2a", world.server.base_url);
    let call = |body: Value| {
        let request = http.post(&endpoint).json(&body);
        async move { request.send().await.unwrap() }
    };
    let message = |text: &str, skill: &str| {
        json!({"kind": "message", "messageId": format!("m-{text}"), "role": "user",
            "parts": [{"kind": "text", "text": text}], "metadata": {"skill": skill}})
    };

    let answer: Value = call(
        json!({"jsonrpc": "2.0", "id": "a", "method": "message/send",
        "params": {"message": message("hello", "echo")}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let task = &answer["result"];
    assert_eq!(answer["id"], "a");
    assert_eq!(task["kind"], "task", "{answer}");
    assert_eq!(task["status"]["state"], "completed", "{answer}");
    assert_eq!(task["status"]["message"]["kind"], "message");
    assert_eq!(task["status"]["message"]["role"], "agent");
    assert_eq!(
        task["artifacts"][0]["parts"][0],
        json!({"kind": "text", "text": "hello"})
    );
    assert_eq!(task["history"][0]["role"], "user");

    let got: Value = call(json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get",
        "params": {"id": task["id"].clone()}}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(got["result"]["kind"], "task", "{got}");
    assert_eq!(got["result"]["id"], task["id"]);

    let refused: Value = call(json!({"jsonrpc": "2.0", "id": 3, "method": "message/send",
        "params": {"message": message("tell me", "secret")}}))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(refused["error"]["code"], REFUSED_CODE, "{refused}");
    assert_eq!(
        refused["error"]["message"],
        format!("skill \"secret\" does not allow {CLIENT}").as_str()
    );

    let stream = call(
        json!({"jsonrpc": "2.0", "id": 4, "method": "message/stream",
        "params": {"message": message("streamed", "echo")}}),
    )
    .await;
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = stream.text().await.unwrap();
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["result"]["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"artifact-update"), "{body}");
    let last = &events.last().unwrap()["result"];
    assert_eq!(last["kind"], "status-update", "{body}");
    assert_eq!(last["final"], true);
    assert_eq!(last["status"]["state"], "completed");

    let bad: Value =
        call(json!({"jsonrpc": "2.0", "id": 5, "method": "message/send", "params": []}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let unknown: Value = call(json!({"jsonrpc": "2.0", "id": 6, "method": "tasks/pushNotificationConfig/set", "params": {}}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    world.stop().await;
}
