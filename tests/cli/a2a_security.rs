//! A2A agents against callers who try more than the policy gives them: a webhook smuggled
//! into a message (issue 16, finding 6) and a listing of other callers' tasks (finding 7).
//! Each attack next to its good twin, two SPIFFE IDs over mutual TLS from a dev server (the
//! harness of `tests/a2a.rs`), the agent the examples run (`SkillsExecutor`) behind the
//! library's pieces, with a push configuration store.
#![cfg(all(feature = "a2a", feature = "dev-server"))]

use crate::agents;
use crate::common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use serde_json::{Value, json};
use spiffe_mtls::a2a::a2a_server::{DefaultRequestHandler, InMemoryTaskStore, PushConfigStore};
use spiffe_mtls::a2a::protocol::{
    A2AError, ListTasksRequest, ListTasksResponse, Message, Part, Role, SendMessageRequest,
    SendMessageResponse, Task, TaskPushNotificationConfig, error_code,
};
use spiffe_mtls::a2a::{
    self, AgentClient, InterceptingHandler, MtlsAgentCard, PUSH_CONFIG_ROUTE, PeerInterceptor,
    REFUSED_CODE, SkillPolicy, TaskOwners,
};
use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
use spiffe_mtls::source::WorkloadApiSource;
use spiffe_mtls::tls::AUDIT_TARGET;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::{Policy, authorize, net, tls};

const SERVER: &str = "spiffe://example.org/agent/server";
const CLIENT: &str = "spiffe://example.org/agent/client";
const BOSS: &str = "spiffe://example.org/agent/boss";

/// Everyone in the trust domain may echo and list tasks; only the boss may register webhooks.
const POLICY: &str = r#"
[connect]
trust_domains = ["example.org"]
[routes.echo]
trust_domains = ["example.org"]
[routes.ListTasks]
trust_domains = ["example.org"]
[routes.CreateTaskPushNotificationConfig]
ids = ["spiffe://example.org/agent/boss"]
"#;

/// Every audit event of every test, its fields on one line.
fn audit_log() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let capture = common::capture::Capture::new(|target, fields| {
            if target != AUDIT_TARGET {
                return;
            }
            let line = fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(log) = LOG.get() {
                log.lock().unwrap().push(format!("{line} "));
            }
        });
        let _ = tracing::subscriber::set_global_default(capture);
        Mutex::new(Vec::new())
    })
}

/// The audit events that contain every one of `parts`.
fn audit_events(parts: &[&str]) -> Vec<String> {
    audit_log()
        .lock()
        .unwrap()
        .iter()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .cloned()
        .collect()
}

/// A push configuration store that records what is registered and delivers nothing: its
/// `list` is empty, so the agent never calls the test URLs (a failed delivery would fail the
/// task). What the policy governs is the registration.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<TaskPushNotificationConfig>>>);

impl Hooks {
    fn urls(&self) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.url.clone())
            .collect()
    }

    fn all(&self) -> Vec<TaskPushNotificationConfig> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl PushConfigStore for Hooks {
    async fn save(
        &self,
        mut config: TaskPushNotificationConfig,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        let mut hooks = self.0.lock().unwrap();
        config.id = Some(format!("hook-{}", hooks.len()));
        hooks.push(config.clone());
        Ok(config)
    }

    async fn get(
        &self,
        task_id: &str,
        config_id: &str,
    ) -> Result<TaskPushNotificationConfig, A2AError> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.task_id == task_id && c.id.as_deref() == Some(config_id))
            .cloned()
            .ok_or_else(|| A2AError::task_not_found(task_id))
    }

    async fn list(&self, _task_id: &str) -> Result<Vec<TaskPushNotificationConfig>, A2AError> {
        Ok(Vec::new())
    }

    async fn delete(&self, _task_id: &str, _config_id: &str) -> Result<(), A2AError> {
        Ok(())
    }

    async fn delete_all(&self, _task_id: &str) -> Result<(), A2AError> {
        Ok(())
    }
}

struct World {
    _dir: tempfile::TempDir,
    dev: DevServer,
    source: Arc<WorkloadApiSource>,
    base_url: String,
    hooks: Hooks,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl World {
    /// A dev server giving the server, the client and the boss their SVIDs, and the agent
    /// under [`POLICY`], wired as the module docs of `spiffe_mtls::a2a` show.
    async fn start() -> Self {
        audit_log();
        let dir = tempfile::tempdir().unwrap();
        let uid = common::my_uid();
        let entry = |id: &str, hint: &str| {
            format!(
                "[[entry]]\nspiffe_id = \"{id}\"\nselectors = [\"unix:uid:{uid}\"]\nhint = \"{hint}\"\n"
            )
        };
        let config = format!(
            "trust_domain = \"example.org\"\n{}{}{}",
            entry(SERVER, "server"),
            entry(CLIENT, "client"),
            entry(BOSS, "boss")
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

        let policy = Policy::from_toml(POLICY).unwrap();
        let mut config = tls::server_config(Arc::clone(&source), policy.connect().clone())
            .svid_hint("server")
            .build()
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let card = MtlsAgentCard::new("security test agent", format!("{base_url}/a2a")).skill(
            "echo",
            "Echo",
            "Replies with the text it was sent",
        );
        // The SDK's webhook sender builds its own reqwest client on the process's default
        // crypto provider.
        #[allow(deprecated)] // rustls 0.23.48: ring has no post-quantum group
        let _ = spiffe_mtls::rustls::crypto::ring::default_provider().install_default();
        let hooks = Hooks::default();
        let owners = TaskOwners::default();
        let tasks = owners.handler(
            DefaultRequestHandler::new(
                owners.executor(agents::SkillsExecutor),
                InMemoryTaskStore::new(),
            )
            .with_authorizer(owners.clone())
            .with_push_config_store(hooks.clone()),
        );
        let handler = InterceptingHandler::new(tasks)
            .with_interceptor(PeerInterceptor::new())
            .with_interceptor(SkillPolicy::new(policy));
        let app = a2a::agent_router(Arc::new(handler), card);
        let server = tokio::spawn(net::HttpServer::new(listener, Arc::new(config)).serve(app));
        Self {
            _dir: dir,
            dev,
            source,
            base_url,
            hooks,
            server,
        }
    }

    fn config(&self, hint: &str) -> spiffe_mtls::rustls::ClientConfig {
        tls::client_config(
            Arc::clone(&self.source),
            authorize::id(SERVER.parse().unwrap()),
        )
        .svid_hint(hint)
        .build()
        .unwrap()
    }

    async fn agent(&self, hint: &str) -> AgentClient {
        AgentClient::connect(self.config(hint), &self.base_url)
            .await
            .unwrap()
    }

    /// One JSON-RPC call as `hint`: the responses (one, or one per server-sent event).
    async fn call(&self, hint: &str, method: &str, params: Value) -> Vec<Value> {
        let http = net::reqwest_client(self.config(hint)).unwrap();
        let mut request = http
            .post(format!("{}/a2a", self.base_url))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
        if !method.contains('/') {
            request = request.header("A2A-Version", "1.0");
        }
        let response = request.send().await.unwrap();
        let streamed = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let body = response.text().await.unwrap();
        if streamed {
            body.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| serde_json::from_str(d.trim()).unwrap())
                .collect()
        } else {
            vec![serde_json::from_str(&body).unwrap()]
        }
    }

    async fn stop(self) {
        self.server.abort();
        self.dev.shutdown().await;
    }
}

/// The four ways into a message, each with its method name, dialect and v0.3 shapes.
const SEND_METHODS: [&str; 4] = [
    "SendMessage",
    "SendStreamingMessage",
    "message/send",
    "message/stream",
];

/// `message/send` params (in the dialect of `method`) asking `echo` to repeat `text`, with
/// `configuration` if given.
fn send_params(method: &str, text: &str, configuration: Option<Value>) -> Value {
    let mut params = if method.contains('/') {
        json!({"message": {"kind": "message", "messageId": format!("m-{text}"), "role": "user",
            "parts": [{"kind": "text", "text": text}], "metadata": {"skill": "echo"}}})
    } else {
        json!({"message": {"messageId": format!("m-{text}"), "role": "ROLE_USER",
            "parts": [{"text": text}], "metadata": {"skill": "echo"}}})
    };
    if let Some(configuration) = configuration {
        params["configuration"] = configuration;
    }
    params
}

/// The error of a refused call: its code and message.
fn refusal(responses: &[Value]) -> Option<(i64, String)> {
    let error = &responses.first()?["error"];
    Some((
        error["code"].as_i64()?,
        error["message"].as_str()?.to_owned(),
    ))
}

/// The task a successful message call ended with: its ID and last state (either dialect, unary
/// or streamed). Panics, naming the responses, when any response is an error.
fn finished_task(responses: &[Value]) -> (String, String) {
    assert!(!responses.is_empty());
    let mut found = None;
    for response in responses {
        assert!(response.get("error").is_none(), "{responses:?}");
        let result = &response["result"];
        for object in [&result["task"], &result["statusUpdate"], result] {
            let id = object["id"].as_str().or(object["taskId"].as_str());
            let state = object["status"]["state"].as_str();
            if let (Some(id), Some(state)) = (id, state) {
                found = Some((id.to_owned(), state.to_owned()));
                break;
            }
        }
    }
    found.unwrap_or_else(|| panic!("no task in {responses:?}"))
}

/// Starts a task of `agent` with `echo`.
async fn start(agent: &AgentClient, text: &str) -> Task {
    let mut request = SendMessageRequest {
        message: Message::new(Role::User, vec![Part::text(text)]),
        configuration: None,
        metadata: None,
        tenant: None,
    };
    request.message.metadata = Some([("skill".to_owned(), json!("echo"))].into());
    match agent.sdk().send_message(&request).await.unwrap() {
        SendMessageResponse::Task(task) => task,
        other => panic!("no task: {other:?}"),
    }
}

fn is_completed(state: &str) -> bool {
    state == "TASK_STATE_COMPLETED" || state == "completed"
}

fn list_request(page_size: Option<i32>, page_token: Option<&str>) -> ListTasksRequest {
    ListTasksRequest {
        context_id: None,
        status: None,
        page_size,
        page_token: page_token.map(str::to_owned),
        history_length: None,
        status_timestamp_after: None,
        include_artifacts: None,
        tenant: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_in_a_message_needs_the_create_push_config_route() {
    let world = World::start().await;
    let expected = (
        i64::from(REFUSED_CODE),
        format!("{PUSH_CONFIG_ROUTE} does not allow {CLIENT}"),
    );

    // A direct CreateTaskPushNotificationConfig on the client's own task: refused by the
    // policy. This is the refusal a smuggled webhook must get too.
    let own = world
        .call(
            "client",
            "SendMessage",
            send_params("SendMessage", "own", None),
        )
        .await;
    let (own_task, state) = finished_task(&own);
    assert!(is_completed(&state), "{own:?}");
    let direct = world
        .call(
            "client",
            PUSH_CONFIG_ROUTE,
            json!({"taskId": own_task, "url": "https://hooks.example.org/direct"}),
        )
        .await;
    assert_eq!(refusal(&direct), Some(expected.clone()), "{direct:?}");

    // The attack: each way into a message, each spelling of the webhook the SDK reads.
    let mut attacks = 0;
    for method in SEND_METHODS {
        // v1.0: the JSON name and the proto field name (the SDK's router reads both); the
        // v0.3 names, which the SDK's v1.0 router ignores (no webhook, the message answered).
        let spellings: &[&str] = if method.contains('/') {
            &["pushNotificationConfig"]
        } else {
            &[
                "taskPushNotificationConfig",
                "task_push_notification_config",
                "pushNotificationConfig",
                "push_notification_config",
            ]
        };
        for spelling in spellings {
            let url = format!("https://hooks.example.org/{method}/{spelling}");
            let configuration = json!({ *spelling: {"url": url} });
            let text = format!("attack {method} {spelling}");
            let responses = world
                .call(
                    "client",
                    method,
                    send_params(method, &text, Some(configuration)),
                )
                .await;
            if spelling.starts_with("push") && !method.contains('/') {
                let (_, state) = finished_task(&responses);
                assert!(is_completed(&state), "{method} {spelling}: {responses:?}");
            } else {
                assert_eq!(
                    refusal(&responses),
                    Some(expected.clone()),
                    "{method} {spelling}: {responses:?}"
                );
            }
            assert!(world.hooks.all().is_empty(), "{method} {spelling}");
            attacks += 1;
        }
    }
    assert_eq!(attacks, 10);
    assert!(world.hooks.all().is_empty(), "{:?}", world.hooks.all());
    // Nothing ran for a refused message: the client owns its first task and the two whose
    // webhook the SDK ignored.
    let listed = world
        .agent("client")
        .await
        .sdk()
        .list_tasks(&list_request(None, None))
        .await
        .unwrap();
    assert_eq!(listed.total_size, 5, "{listed:?}");

    // Each refusal is an audit event naming the route decided, with the caller and skill.
    for method in ["SendMessage", "SendStreamingMessage"] {
        let denied = audit_events(&[
            "decision=denied",
            &format!("peer={CLIENT} "),
            &format!("method={method} "),
            "skill=echo ",
            &format!("route={PUSH_CONFIG_ROUTE} "),
        ]);
        // v1.0 (two spellings) and v0.3 (translated to the same method).
        assert_eq!(denied.len(), 3, "{method}: {denied:?}");
        let rule = format!("rule=route \"{PUSH_CONFIG_ROUTE}\" allows");
        assert!(denied.iter().all(|l| l.contains(&rule)), "{denied:?}");
        // A refused call gets no "accepted" event for its skill.
        let accepted = audit_events(&[
            "decision=accepted",
            &format!("peer={CLIENT} "),
            &format!("method={method} "),
            &format!("route={PUSH_CONFIG_ROUTE} "),
        ]);
        assert!(accepted.is_empty(), "{accepted:?}");
    }

    // Good twin: the same messages without a webhook (or with `null`) are answered.
    for method in SEND_METHODS {
        for configuration in [None, Some(json!({"taskPushNotificationConfig": null}))] {
            let configuration = configuration.map(|c| {
                if method.contains('/') {
                    json!({"pushNotificationConfig": null})
                } else {
                    c
                }
            });
            let responses = world
                .call(
                    "client",
                    method,
                    send_params(method, "plain", configuration.clone()),
                )
                .await;
            let (_, state) = finished_task(&responses);
            assert!(is_completed(&state), "{method} {configuration:?}");
        }
    }
    assert!(world.hooks.all().is_empty());

    // Good twin: a caller the policy allows CreateTaskPushNotificationConfig registers its
    // webhook through every way in, for the task the message started.
    let mut expected_urls = BTreeSet::new();
    let mut boss_tasks = BTreeSet::new();
    for method in SEND_METHODS {
        let spelling = if method.contains('/') {
            "pushNotificationConfig"
        } else {
            "taskPushNotificationConfig"
        };
        let url = format!("https://hooks.example.org/boss/{method}");
        let configuration = json!({ spelling: {"url": url, "token": "t"} });
        let responses = world
            .call(
                "boss",
                method,
                send_params(method, &format!("boss {method}"), Some(configuration)),
            )
            .await;
        let (task, state) = finished_task(&responses);
        assert!(is_completed(&state), "{method}: {responses:?}");
        expected_urls.insert(url);
        boss_tasks.insert(task);
    }
    assert_eq!(world.hooks.urls(), expected_urls);
    let hooked: BTreeSet<String> = world.hooks.all().into_iter().map(|c| c.task_id).collect();
    assert_eq!(hooked, boss_tasks);
    let accepted = audit_events(&[
        "decision=accepted",
        &format!("peer={BOSS} "),
        &format!("route={PUSH_CONFIG_ROUTE} "),
    ]);
    assert_eq!(accepted.len(), 4, "{accepted:?}");
    // ...and the direct call on its own task.
    let boss_task = boss_tasks.first().unwrap().clone();
    let direct = world
        .call(
            "boss",
            PUSH_CONFIG_ROUTE,
            json!({"taskId": boss_task, "url": "https://hooks.example.org/boss/direct"}),
        )
        .await;
    assert!(direct[0].get("error").is_none(), "{direct:?}");
    assert!(
        world
            .hooks
            .urls()
            .contains("https://hooks.example.org/boss/direct")
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_tasks_shows_each_caller_only_its_own_tasks() {
    let world = World::start().await;
    let client = world.agent("client").await;
    let boss = world.agent("boss").await;

    let mut client_tasks = BTreeSet::new();
    let mut client_contexts = Vec::new();
    for n in 0..3 {
        let task = start(&client, &format!("client {n}")).await;
        client_contexts.push(task.context_id.clone());
        client_tasks.insert(task.id);
    }
    let mut boss_tasks = BTreeSet::new();
    let mut boss_contexts = Vec::new();
    for n in 0..2 {
        let task = start(&boss, &format!("boss {n}")).await;
        boss_contexts.push(task.context_id.clone());
        boss_tasks.insert(task.id);
    }

    let ids = |response: &ListTasksResponse| -> BTreeSet<String> {
        response.tasks.iter().map(|t| t.id.clone()).collect()
    };
    // Each caller lists exactly its own tasks, counted alone.
    let mine = client
        .sdk()
        .list_tasks(&list_request(None, None))
        .await
        .unwrap();
    assert_eq!(ids(&mine), client_tasks);
    assert_eq!(mine.total_size, 3);
    assert_eq!(mine.next_page_token, "");
    assert!(mine.tasks.iter().all(|t| {
        t.artifacts.as_ref().unwrap()[0].parts[0]
            .as_text()
            .is_some_and(|text| text.starts_with("client"))
    }));
    let theirs = boss
        .sdk()
        .list_tasks(&list_request(None, None))
        .await
        .unwrap();
    assert_eq!(ids(&theirs), boss_tasks);
    assert_eq!(theirs.total_size, 2);

    // Paging walks the caller's tasks only: pages of two, then the rest; the total is 3.
    let first = client
        .sdk()
        .list_tasks(&list_request(Some(2), None))
        .await
        .unwrap();
    assert_eq!((first.tasks.len(), first.total_size), (2, 3), "{first:?}");
    assert_eq!(first.next_page_token, "2");
    let second = client
        .sdk()
        .list_tasks(&list_request(Some(2), Some(&first.next_page_token)))
        .await
        .unwrap();
    assert_eq!((second.tasks.len(), second.total_size), (1, 3));
    assert_eq!(second.next_page_token, "");
    let walked: BTreeSet<String> = ids(&first).union(&ids(&second)).cloned().collect();
    assert_eq!(walked, client_tasks);
    // The attack on paging: offsets past the caller's own tasks (where a shared listing
    // would hold the others') are empty, the total still the caller's.
    for token in ["3", "4", "5", "1000"] {
        let beyond = boss
            .sdk()
            .list_tasks(&list_request(Some(1), Some(token)))
            .await
            .unwrap();
        assert!(beyond.tasks.is_empty(), "{token}: {beyond:?}");
        assert_eq!(beyond.total_size, 2);
    }
    let mut boss_walk = BTreeSet::new();
    for token in [None, Some("1")] {
        let page = boss
            .sdk()
            .list_tasks(&list_request(Some(1), token))
            .await
            .unwrap();
        assert_eq!((page.tasks.len(), page.total_size), (1, 2), "{page:?}");
        boss_walk.extend(ids(&page));
    }
    assert_eq!(boss_walk, boss_tasks);
    let bad = client
        .sdk()
        .list_tasks(&list_request(None, Some("not-an-offset")))
        .await
        .unwrap_err();
    assert_eq!(bad.code, error_code::INVALID_PARAMS, "{bad}");
    assert!(bad.message.contains("\"not-an-offset\""), "{bad}");

    // The attack by filter: the other caller's context shows nothing, not even a count.
    for context in &boss_contexts {
        let mut probe = list_request(None, None);
        probe.context_id = Some(context.clone());
        let probed = client.sdk().list_tasks(&probe).await.unwrap();
        assert!(probed.tasks.is_empty(), "{probed:?}");
        assert_eq!(probed.total_size, 0);
    }
    // Its good twin: the caller's own context shows its task.
    let mut own = list_request(None, None);
    own.context_id = Some(client_contexts[0].clone());
    let owned = client.sdk().list_tasks(&own).await.unwrap();
    assert_eq!(owned.total_size, 1, "{owned:?}");
    assert!(client_tasks.contains(&owned.tasks[0].id));

    // Over raw JSON-RPC too, as a client of another SDK would ask.
    let raw = world
        .call("client", "ListTasks", json!({"pageSize": 10}))
        .await;
    let listed: BTreeSet<String> = raw[0]["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{raw:?}"))
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, client_tasks);
    assert_eq!(raw[0]["result"]["totalSize"], 3, "{raw:?}");
    world.stop().await;
}
