//! A2A v0.3 JSON-RPC in terms of v1.0: method names, and the shapes of messages, tasks and
//! events (v0.3 tags each object with `kind`, names roles and states in lower case, and nests
//! file parts; v1.0 uses field presence and upper-case enum names).

use serde_json::{Map, Value, json};

/// The v1.0 method of a v0.3 method name.
pub(crate) fn method_to_v1(method: &str) -> Option<&'static str> {
    use a2a_protocol::jsonrpc::methods;
    Some(match method {
        "message/send" => methods::SEND_MESSAGE,
        "message/stream" => methods::SEND_STREAMING_MESSAGE,
        "tasks/get" => methods::GET_TASK,
        "tasks/cancel" => methods::CANCEL_TASK,
        "tasks/resubscribe" => methods::SUBSCRIBE_TO_TASK,
        "agent/getAuthenticatedExtendedCard" => methods::GET_EXTENDED_AGENT_CARD,
        _ => return None,
    })
}

/// Whether `method` has the shape of a v0.3 method name (`group/name`).
pub(crate) fn is_legacy_method(method: &str) -> bool {
    method.contains('/')
}

fn object(value: Value, what: &str) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("{what} must be an object, not {other}")),
    }
}

/// A v0.3 part (`{"kind": "text", "text": ..}`, `data`, `file`) as v1.0.
fn part_to_v1(part: Value) -> Result<Value, String> {
    let mut part = object(part, "a part")?;
    let kind = part.remove("kind");
    let mut out = Map::new();
    if let Some(metadata) = part.remove("metadata") {
        out.insert("metadata".into(), metadata);
    }
    match (
        kind.as_ref().and_then(Value::as_str),
        part.remove("text"),
        part.remove("data"),
        part.remove("file"),
    ) {
        (Some("text") | None, Some(text), _, _) => {
            out.insert("text".into(), text);
        }
        (Some("data") | None, None, Some(data), _) => {
            out.insert("data".into(), data);
        }
        (Some("file") | None, None, None, Some(file)) => {
            let mut file = object(file, "a file part's file")?;
            if let Some(uri) = file.remove("uri") {
                out.insert("url".into(), uri);
            } else if let Some(bytes) = file.remove("bytes") {
                out.insert("raw".into(), bytes);
            } else {
                return Err("a file part needs uri or bytes".into());
            }
            if let Some(media_type) = file.remove("mimeType") {
                out.insert("mediaType".into(), media_type);
            }
            if let Some(name) = file.remove("name") {
                out.insert("filename".into(), name);
            }
        }
        _ => {
            return Err(format!(
                "unsupported part kind {}",
                kind.unwrap_or(Value::Null)
            ));
        }
    }
    Ok(Value::Object(out))
}

/// A v1.0 part as v0.3.
fn part_to_v0_3(part: Value) -> Value {
    let Value::Object(mut part) = part else {
        return part;
    };
    let mut out = Map::new();
    if let Some(text) = part.remove("text") {
        out.insert("kind".into(), json!("text"));
        out.insert("text".into(), text);
    } else if let Some(data) = part.remove("data") {
        out.insert("kind".into(), json!("data"));
        out.insert("data".into(), data);
    } else {
        let mut file = Map::new();
        if let Some(url) = part.remove("url") {
            file.insert("uri".into(), url);
        } else if let Some(raw) = part.remove("raw") {
            file.insert("bytes".into(), raw);
        }
        if let Some(media_type) = part.remove("mediaType") {
            file.insert("mimeType".into(), media_type);
        }
        if let Some(name) = part.remove("filename") {
            file.insert("name".into(), name);
        }
        out.insert("kind".into(), json!("file"));
        out.insert("file".into(), Value::Object(file));
    }
    if let Some(metadata) = part.remove("metadata") {
        out.insert("metadata".into(), metadata);
    }
    Value::Object(out)
}

/// A v0.3 message as v1.0.
pub(crate) fn message_to_v1(message: Value) -> Result<Value, String> {
    let mut message = object(message, "message")?;
    message.remove("kind");
    let role = match message.remove("role").as_ref().and_then(Value::as_str) {
        Some("user") => "ROLE_USER",
        Some("agent") => "ROLE_AGENT",
        other => {
            return Err(format!(
                "message role must be \"user\" or \"agent\", not {other:?}"
            ));
        }
    };
    message.insert("role".into(), json!(role));
    let parts = match message.remove("parts") {
        Some(Value::Array(parts)) => parts
            .into_iter()
            .map(part_to_v1)
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("message parts must be an array".into()),
    };
    message.insert("parts".into(), Value::Array(parts));
    Ok(Value::Object(message))
}

/// A v1.0 message as v0.3.
fn message_to_v0_3(message: Value) -> Value {
    let Value::Object(mut message) = message else {
        return message;
    };
    let role = match message.get("role").and_then(Value::as_str) {
        Some("ROLE_AGENT") => "agent",
        _ => "user",
    };
    message.insert("role".into(), json!(role));
    if let Some(Value::Array(parts)) = message.remove("parts") {
        message.insert(
            "parts".into(),
            Value::Array(parts.into_iter().map(part_to_v0_3).collect()),
        );
    }
    message.insert("kind".into(), json!("message"));
    Value::Object(message)
}

/// `TASK_STATE_INPUT_REQUIRED` as `input-required`.
fn state_to_v0_3(state: &str) -> String {
    let state = state.strip_prefix("TASK_STATE_").unwrap_or(state);
    match state {
        "UNSPECIFIED" => "unknown".to_owned(),
        other => other.to_ascii_lowercase().replace('_', "-"),
    }
}

fn status_to_v0_3(status: Value) -> Value {
    let Value::Object(mut status) = status else {
        return status;
    };
    if let Some(state) = status.get("state").and_then(Value::as_str) {
        let state = state_to_v0_3(state);
        status.insert("state".into(), json!(state));
    }
    if let Some(message) = status.remove("message") {
        status.insert("message".into(), message_to_v0_3(message));
    }
    Value::Object(status)
}

fn artifact_to_v0_3(artifact: Value) -> Value {
    let Value::Object(mut artifact) = artifact else {
        return artifact;
    };
    if let Some(Value::Array(parts)) = artifact.remove("parts") {
        artifact.insert(
            "parts".into(),
            Value::Array(parts.into_iter().map(part_to_v0_3).collect()),
        );
    }
    Value::Object(artifact)
}

/// A v1.0 task as v0.3.
fn task_to_v0_3(task: Value) -> Value {
    let Value::Object(mut task) = task else {
        return task;
    };
    if let Some(status) = task.remove("status") {
        task.insert("status".into(), status_to_v0_3(status));
    }
    if let Some(Value::Array(artifacts)) = task.remove("artifacts") {
        task.insert(
            "artifacts".into(),
            Value::Array(artifacts.into_iter().map(artifact_to_v0_3).collect()),
        );
    }
    if let Some(Value::Array(history)) = task.remove("history") {
        task.insert(
            "history".into(),
            Value::Array(history.into_iter().map(message_to_v0_3).collect()),
        );
    }
    task.insert("kind".into(), json!("task"));
    Value::Object(task)
}

/// A v1.0 `SendMessage` result or stream event (`{"task": ..}`, `{"message": ..}`,
/// `{"statusUpdate": ..}`, `{"artifactUpdate": ..}`) as the v0.3 object with its `kind`. A bare
/// task (the result of `GetTask`, `CancelTask`) is recognized by its `status`.
pub(crate) fn result_to_v0_3(result: Value) -> Value {
    let Value::Object(mut result) = result else {
        return result;
    };
    if let Some(task) = result.remove("task") {
        return task_to_v0_3(task);
    }
    if let Some(message) = result.remove("message") {
        return message_to_v0_3(message);
    }
    if let Some(Value::Object(mut update)) = result.remove("statusUpdate") {
        let terminal = update
            .get("status")
            .and_then(|s| s.get("state"))
            .and_then(Value::as_str)
            .map(state_to_v0_3)
            .is_some_and(|state| {
                matches!(
                    state.as_str(),
                    "completed"
                        | "failed"
                        | "canceled"
                        | "rejected"
                        | "input-required"
                        | "auth-required"
                )
            });
        if let Some(status) = update.remove("status") {
            update.insert("status".into(), status_to_v0_3(status));
        }
        update.insert("final".into(), json!(terminal));
        update.insert("kind".into(), json!("status-update"));
        return Value::Object(update);
    }
    if let Some(Value::Object(mut update)) = result.remove("artifactUpdate") {
        if let Some(artifact) = update.remove("artifact") {
            update.insert("artifact".into(), artifact_to_v0_3(artifact));
        }
        update.insert("kind".into(), json!("artifact-update"));
        return Value::Object(update);
    }
    if result.contains_key("status") && result.contains_key("id") {
        return task_to_v0_3(Value::Object(result));
    }
    Value::Object(result)
}

/// v0.3 `message/send` or `message/stream` params as v1.0 `SendMessage` params.
pub(crate) fn send_params_to_v1(params: Value) -> Result<Value, String> {
    let mut params = object(params, "params")?;
    let message = params
        .remove("message")
        .ok_or_else(|| "params.message is required".to_owned())?;
    let mut out = Map::new();
    out.insert("message".into(), message_to_v1(message)?);
    if let Some(Value::Object(mut configuration)) = params.remove("configuration") {
        let mut v1 = Map::new();
        // A webhook: the policy decides it as CreateTaskPushNotificationConfig, as in v1.0.
        match configuration.remove("pushNotificationConfig") {
            None | Some(Value::Null) => {}
            Some(config) => {
                v1.insert(
                    "taskPushNotificationConfig".into(),
                    push_config_to_v1(config)?,
                );
            }
        }
        if let Some(modes) = configuration.remove("acceptedOutputModes") {
            v1.insert("acceptedOutputModes".into(), modes);
        }
        if let Some(length) = configuration.remove("historyLength") {
            v1.insert("historyLength".into(), length);
        }
        if let Some(Value::Bool(blocking)) = configuration.remove("blocking") {
            v1.insert("returnImmediately".into(), json!(!blocking));
        }
        out.insert("configuration".into(), Value::Object(v1));
    }
    if let Some(metadata) = params.remove("metadata") {
        out.insert("metadata".into(), metadata);
    }
    Ok(Value::Object(out))
}

/// A v0.3 push notification config (`url`, `id`, `token`, `authentication` with a list of
/// `schemes` and `credentials`) as v1.0's `TaskPushNotificationConfig` (one
/// `authentication.scheme`; the task is the message's).
fn push_config_to_v1(config: Value) -> Result<Value, String> {
    const WHAT: &str = "configuration.pushNotificationConfig";
    let mut config = object(config, WHAT)?;
    let mut out = Map::new();
    match config.remove("url") {
        Some(Value::String(url)) if !url.is_empty() => {
            out.insert("url".into(), Value::String(url));
        }
        other => {
            return Err(format!(
                "{WHAT}.url must be a non-empty string, not {}",
                other.unwrap_or(Value::Null)
            ));
        }
    }
    for name in ["id", "token"] {
        match config.remove(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(value)) => {
                out.insert(name.into(), Value::String(value));
            }
            Some(other) => return Err(format!("{WHAT}.{name} must be a string, not {other}")),
        }
    }
    match config.remove("authentication") {
        None | Some(Value::Null) => {}
        Some(authentication) => {
            let mut authentication = object(authentication, &format!("{WHAT}.authentication"))?;
            let scheme = match authentication.remove("schemes") {
                Some(Value::Array(schemes)) => match schemes.as_slice() {
                    [Value::String(scheme)] => scheme.clone(),
                    _ => {
                        return Err(format!(
                            "{WHAT}.authentication.schemes must name exactly one scheme, not {}",
                            Value::Array(schemes)
                        ));
                    }
                },
                other => {
                    return Err(format!(
                        "{WHAT}.authentication.schemes must be an array, not {}",
                        other.unwrap_or(Value::Null)
                    ));
                }
            };
            let mut v1 = Map::new();
            v1.insert("scheme".into(), Value::String(scheme));
            if let Some(credentials) = authentication.remove("credentials") {
                v1.insert("credentials".into(), credentials);
            }
            out.insert("authentication".into(), Value::Object(v1));
        }
    }
    Ok(Value::Object(out))
}

/// v0.3 `tasks/get`, `tasks/cancel`, `tasks/resubscribe` params as v1.0 (the same fields,
/// less v0.3's metadata on `tasks/get` and `tasks/resubscribe`).
pub(crate) fn task_params_to_v1(method: &str, params: Value) -> Result<Value, String> {
    let mut params = object(params, "params")?;
    let id = params
        .remove("id")
        .ok_or_else(|| "params.id is required".to_owned())?;
    let mut out = Map::new();
    out.insert("id".into(), id);
    match method {
        "tasks/get" => {
            if let Some(length) = params.remove("historyLength") {
                out.insert("historyLength".into(), length);
            }
        }
        "tasks/cancel" => {
            if let Some(metadata) = params.remove("metadata") {
                out.insert("metadata".into(), metadata);
            }
        }
        _ => {}
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let v03 = json!({
            "kind": "message", "messageId": "m1", "role": "user",
            "parts": [{"kind": "text", "text": "hi"}, {"kind": "file", "file": {"uri": "https://x/y", "mimeType": "text/plain"}}],
            "metadata": {"skill": "echo"}
        });
        let v1 = message_to_v1(v03).unwrap();
        assert_eq!(v1["role"], "ROLE_USER");
        assert_eq!(v1["parts"][0], json!({"text": "hi"}));
        assert_eq!(
            v1["parts"][1],
            json!({"url": "https://x/y", "mediaType": "text/plain"})
        );
        let back = message_to_v0_3(v1);
        assert_eq!(back["kind"], "message");
        assert_eq!(back["role"], "user");
        assert_eq!(back["parts"][0], json!({"kind": "text", "text": "hi"}));
        assert_eq!(back["parts"][1]["file"]["uri"], "https://x/y");
    }

    #[test]
    fn results_get_their_kind() {
        let task = json!({"task": {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_INPUT_REQUIRED"}}});
        let v03 = result_to_v0_3(task);
        assert_eq!(v03["kind"], "task");
        assert_eq!(v03["status"]["state"], "input-required");
        let update = json!({"statusUpdate": {"taskId": "t", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}});
        let v03 = result_to_v0_3(update);
        assert_eq!(v03["kind"], "status-update");
        assert_eq!(v03["final"], true);
        let artifact = json!({"artifactUpdate": {"taskId": "t", "contextId": "c", "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}}});
        assert_eq!(
            result_to_v0_3(artifact)["artifact"]["parts"][0]["kind"],
            "text"
        );
    }

    #[test]
    fn a_push_config_is_carried_to_v1_for_the_policy_to_decide() {
        let v1 = send_params_to_v1(json!({
            "message": {"messageId": "m1", "role": "user", "parts": []},
            "configuration": {"blocking": true, "pushNotificationConfig": {
                "url": "https://hooks.example.org/a2a", "token": "t",
                "authentication": {"schemes": ["Bearer"], "credentials": "c"}}}
        }))
        .unwrap();
        assert_eq!(
            v1["configuration"],
            json!({"returnImmediately": false, "taskPushNotificationConfig": {
                "url": "https://hooks.example.org/a2a", "token": "t",
                "authentication": {"scheme": "Bearer", "credentials": "c"}}})
        );
        let typed: a2a_protocol::SendMessageRequest = serde_json::from_value(v1).unwrap();
        let config = typed.configuration.unwrap().task_push_notification_config;
        assert_eq!(config.unwrap().url, "https://hooks.example.org/a2a");
        // `null` is no webhook.
        let v1 = send_params_to_v1(json!({
            "message": {"role": "user", "parts": []},
            "configuration": {"pushNotificationConfig": null}
        }))
        .unwrap();
        assert_eq!(v1["configuration"], json!({}));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(send_params_to_v1(json!([])).is_err());
        assert!(send_params_to_v1(json!({})).is_err());
        assert!(send_params_to_v1(json!({"message": {"role": "boss", "parts": []}})).is_err());
        assert!(
            send_params_to_v1(json!({"message": {"role": "user", "parts": [{"kind": "video"}]}}))
                .is_err()
        );
        assert!(task_params_to_v1("tasks/get", json!({})).is_err());
        let with_hook = |config: Value| {
            send_params_to_v1(json!({
                "message": {"role": "user", "parts": []},
                "configuration": {"pushNotificationConfig": config}
            }))
        };
        assert!(with_hook(json!("https://hooks.example.org")).is_err());
        assert!(with_hook(json!({"url": 7})).is_err());
        assert!(with_hook(json!({"url": "https://h", "authentication": {"schemes": []}})).is_err());
        assert!(with_hook(json!({"url": "https://h", "token": 1})).is_err());
        assert_eq!(method_to_v1("message/send"), Some("SendMessage"));
        assert_eq!(method_to_v1("SendMessage"), None);
    }
}
