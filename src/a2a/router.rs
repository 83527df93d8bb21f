//! The agent's HTTP surface: its card, and JSON-RPC in both dialects on the card's endpoint.

use std::sync::Arc;

use a2a_protocol::{A2AError, JsonRpcId, SendMessageRequest};
use a2a_server::{RequestHandler, ServiceParams};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::MtlsAgentCard;
use super::legacy;
use crate::net::IdentityHeaderLayer;

/// Where the agent card is served.
pub const AGENT_CARD_PATH: &str = a2a_server::WELL_KNOWN_AGENT_CARD_PATH;

/// The largest JSON-RPC request body read (the SDK's own bound).
const MAX_BODY: usize = a2a_server::jsonrpc::MAX_REQUEST_BODY_BYTES;

/// The axum router of an agent reached over SPIFFE mutual TLS; serve it with
/// [`serve_http`](crate::net::serve_http) (whose server config's authorizer is the
/// connection rule, the policy's `[connect]`).
///
/// - `GET /.well-known/agent-card.json`: the card. A request with `A2A-Version: 0.3` gets the
///   v0.3 card, `1.0` the v1.0 card, and one without the header both dialects in one document
///   ([`MtlsAgentCard::to_json`]).
/// - `POST` on the path of the card's URL: JSON-RPC. v1.0 requests (`SendMessage`,
///   `SendStreamingMessage` with SSE, `GetTask`...) go to the SDK's JSON-RPC router with
///   `handler`, answered in the SDK's shapes. v0.3 requests (a `group/name` method:
///   `message/send`, `message/stream`, `tasks/get`, `tasks/cancel`, `tasks/resubscribe`) are
///   translated to v1.0 in front of it (the SDK's router rejects them), sent to the same
///   `handler`, and answered in v0.3 shapes (`kind` fields, lower-case roles and states). A
///   message's `configuration.pushNotificationConfig` is carried over as v1.0's
///   `taskPushNotificationConfig`, so the same policy decides it in both dialects.
///   The method name decides the dialect: a v1.0 method needs `A2A-Version: 1.0` (the SDK
///   reads a request without the header as v0.3 and refuses it with "version not supported").
/// - Everything behind an [`IdentityHeaderLayer`]: the `x-spiffe-id` header is the
///   handshake's verified ID, never a client's; a [`PeerInterceptor`](super::PeerInterceptor)
///   in `handler` makes it the call's user.
///
/// # Example
/// See the [module docs](super).
pub fn agent_router<H: RequestHandler>(handler: Arc<H>, card: MtlsAgentCard) -> Router {
    let endpoint = endpoint_path(card.url());
    let sdk = a2a_server::jsonrpc::jsonrpc_router(Arc::clone(&handler));
    let card = Arc::new(card);
    Router::new()
        .route(
            AGENT_CARD_PATH,
            get(move |headers: HeaderMap| {
                let card = Arc::clone(&card);
                async move { serve_card(&card, &headers) }
            }),
        )
        .route(
            &endpoint,
            post(move |request: Request<Body>| {
                let handler = Arc::clone(&handler);
                let sdk = sdk.clone();
                async move { jsonrpc(handler, sdk, request).await }
            }),
        )
        .layer(IdentityHeaderLayer::new())
}

/// The path of `url` (`/` when it has none or cannot be read).
fn endpoint_path(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(uri) if uri.path().starts_with('/') => uri.path().to_owned(),
        _ => "/".to_owned(),
    }
}

/// The major version a request's `A2A-Version` header names.
fn requested_major(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get("a2a-version")?.to_str().ok()?;
    value.trim().split('.').next()?.parse().ok()
}

fn serve_card(card: &MtlsAgentCard, headers: &HeaderMap) -> Response {
    let document = match requested_major(headers) {
        Some(0) => card.v0_3_json(),
        Some(1) => card.v1_0_json(),
        _ => card.to_json(),
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "max-age=300")],
        axum::Json(document),
    )
        .into_response()
}

async fn jsonrpc<H: RequestHandler>(
    handler: Arc<H>,
    sdk: Router,
    request: Request<Body>,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return rpc_error(
                JsonRpcId::Null,
                -32600,
                &format!("the request body is larger than {MAX_BODY} bytes or was cut"),
            );
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let method = parsed
        .as_ref()
        .and_then(|v| v.get("method"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if legacy::is_legacy_method(method)
        && let Some(request) = parsed
    {
        return legacy_call(handler.as_ref(), &parts.headers, request).await;
    }
    forward(sdk, parts, bytes).await
}

/// Hands a v1.0 (or malformed) request to the SDK's router.
async fn forward(sdk: Router, mut parts: axum::http::request::Parts, bytes: Bytes) -> Response {
    parts.uri = axum::http::Uri::from_static("/");
    let request = Request::from_parts(parts, Body::from(bytes));
    match sdk.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The request's headers as service parameters, as the SDK makes them.
fn service_params(headers: &HeaderMap) -> ServiceParams {
    let mut params = ServiceParams::new();
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            params
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    params
}

fn rpc_error(id: JsonRpcId, code: i32, message: &str) -> Response {
    axum::Json(json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    }))
    .into_response()
}

fn rpc_result(id: JsonRpcId, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn a2a_error(id: JsonRpcId, error: &A2AError) -> Response {
    rpc_error(id, error.code, &error.message)
}

/// A v0.3 call: translated to v1.0, answered by `handler`, translated back.
async fn legacy_call<H: RequestHandler>(
    handler: &H,
    headers: &HeaderMap,
    request: Value,
) -> Response {
    let id: JsonRpcId = request
        .get("id")
        .cloned()
        .and_then(|id| serde_json::from_value(id).ok())
        .unwrap_or(JsonRpcId::Null);
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let params = request.get("params").cloned().unwrap_or(Value::Null);
    let service = service_params(headers);
    let invalid = |id: JsonRpcId, message: String| {
        rpc_error(id, -32602, &format!("invalid params: {message}"))
    };
    match method.as_str() {
        "message/send" | "message/stream" => {
            let request: SendMessageRequest = match legacy::send_params_to_v1(params)
                .and_then(|v1| serde_json::from_value(v1).map_err(|e| e.to_string()))
            {
                Ok(request) => request,
                Err(message) => return invalid(id, message),
            };
            if method == "message/send" {
                match handler.send_message(&service, request).await {
                    Ok(result) => {
                        axum::Json(rpc_result(id, legacy::result_to_v0_3(to_json(&result))))
                            .into_response()
                    }
                    Err(error) => a2a_error(id, &error),
                }
            } else {
                match handler.send_streaming_message(&service, request).await {
                    Ok(stream) => legacy_stream(id, stream),
                    Err(error) => a2a_error(id, &error),
                }
            }
        }
        "tasks/get" | "tasks/cancel" | "tasks/resubscribe" => {
            let v1 = match legacy::task_params_to_v1(&method, params) {
                Ok(v1) => v1,
                Err(message) => return invalid(id, message),
            };
            macro_rules! parse {
                () => {
                    match serde_json::from_value(v1) {
                        Ok(request) => request,
                        Err(e) => return invalid(id, e.to_string()),
                    }
                };
            }
            let result = match method.as_str() {
                "tasks/get" => handler.get_task(&service, parse!()).await,
                "tasks/cancel" => handler.cancel_task(&service, parse!()).await,
                _ => {
                    return match handler.subscribe_to_task(&service, parse!()).await {
                        Ok(stream) => legacy_stream(id, stream),
                        Err(error) => a2a_error(id, &error),
                    };
                }
            };
            match result {
                Ok(task) => axum::Json(rpc_result(id, legacy::result_to_v0_3(to_json(&task))))
                    .into_response(),
                Err(error) => a2a_error(id, &error),
            }
        }
        other => {
            let message = match legacy::method_to_v1(other) {
                Some(v1) => format!("method {other} (v1.0 {v1}) is not served in v0.3"),
                None => format!("method not found: {other}"),
            };
            rpc_error(id, -32601, &message)
        }
    }
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A v1.0 event stream as v0.3 JSON-RPC responses over SSE.
fn legacy_stream(
    id: JsonRpcId,
    stream: futures_util::stream::BoxStream<
        'static,
        Result<a2a_protocol::StreamResponse, A2AError>,
    >,
) -> Response {
    let events = stream.map(move |item| {
        let data = match item {
            Ok(event) => rpc_result(id.clone(), legacy::result_to_v0_3(to_json(&event))),
            Err(error) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": error.code, "message": error.message },
            }),
        };
        Ok::<_, std::convert::Infallible>(Event::default().data(data.to_string()))
    });
    Sse::new(events).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_the_path_of_the_url() {
        assert_eq!(endpoint_path("https://127.0.0.1:8443/a2a"), "/a2a");
        assert_eq!(endpoint_path("https://127.0.0.1:8443"), "/");
        assert_eq!(endpoint_path("not a url"), "/");
    }
}
