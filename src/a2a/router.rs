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

use super::legacy;
use super::{CardDialect, MtlsAgentCard};
use crate::net::IdentityHeaderLayer;
use crate::tls::PeerIdentity;

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
        .layer(tower::util::MapRequestLayer::new(scope_header))
}

/// The scopes header the [`SkillPolicy`](super::SkillPolicy) reads, from the validated token
/// an [`OAuthLayer`](crate::oauth::OAuthLayer) in front left in the request, never from the
/// client: a client's own header is removed.
fn scope_header<B>(mut request: Request<B>) -> Request<B> {
    request
        .headers_mut()
        .remove(super::skill::SCOPE_HEADER_NAME);
    #[cfg(feature = "oauth")]
    if let Some(token) = request
        .extensions()
        .get::<crate::oauth::VerifiedAccessToken>()
    {
        let scopes: Vec<&str> = token.scopes().iter().map(String::as_str).collect();
        if let Ok(value) = axum::http::HeaderValue::from_str(&scopes.join(" ")) {
            request
                .headers_mut()
                .insert(super::skill::SCOPE_HEADER_NAME, value);
        }
    }
    request
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
    let dialect = match requested_major(headers) {
        Some(0) => CardDialect::V0_3,
        Some(1) => CardDialect::V1_0,
        _ => CardDialect::Both,
    };
    match card.document(dialect) {
        // A signed card is signed by the SVID in use: a cache must not keep it past a
        // rotation (the SVID it names could expire while cached).
        Ok(document) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "max-age=60")],
            axum::Json(document),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "cannot serve the agent card");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the agent card cannot be served now: {error}\n"),
            )
                .into_response()
        }
    }
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
    // The handshake checked the caller's certificate once; a connection can outlive it.
    if let Some(peer) = parts.extensions.get::<PeerIdentity>()
        && peer.is_expired()
    {
        let caller = peer.spiffe_id();
        super::audit::refused(
            caller,
            method,
            "-",
            "-",
            &"a certificate valid now",
            super::audit::CallEvidence::default(),
        );
        let id = parsed
            .as_ref()
            .and_then(|v| v.get("id").cloned())
            .and_then(|id| serde_json::from_value(id).ok())
            .unwrap_or(JsonRpcId::Null);
        return rpc_error(
            id,
            super::REFUSED_CODE,
            &format!(
                "{method} needs a certificate valid now; {caller}'s expired after the handshake"
            ),
        );
    }
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
    fn the_scope_header_comes_from_the_validated_token_never_from_the_client() {
        let forged = Request::get("/a2a")
            .header("x-oauth-scope", "data:pii")
            .body(())
            .unwrap();
        assert!(
            scope_header(forged)
                .headers()
                .get("x-oauth-scope")
                .is_none()
        );
        #[cfg(feature = "oauth")]
        {
            let mut request = Request::get("/a2a")
                .header("x-oauth-scope", "data:pii admin:all")
                .body(())
                .unwrap();
            request
                .extensions_mut()
                .insert(crate::oauth::VerifiedAccessToken::granting(&[
                    "agent:execute",
                ]));
            let request = scope_header(request);
            assert_eq!(request.headers()["x-oauth-scope"], "agent:execute");
        }
    }

    /// An executor that answers nothing: the calls below are decided before it.
    struct Silent;

    impl a2a_server::AgentExecutor for Silent {
        fn execute(
            &self,
            _: a2a_server::ExecutorContext,
        ) -> futures_util::stream::BoxStream<'static, Result<a2a_protocol::StreamResponse, A2AError>>
        {
            Box::pin(futures_util::stream::empty())
        }

        fn cancel(
            &self,
            _: a2a_server::ExecutorContext,
        ) -> futures_util::stream::BoxStream<'static, Result<a2a_protocol::StreamResponse, A2AError>>
        {
            Box::pin(futures_util::stream::empty())
        }
    }

    /// A call from a peer whose certificate expired after its handshake is refused (the
    /// JSON-RPC refusal, naming the method and the caller), before the SDK or any policy
    /// sees it; its good twin, the same call from a peer still valid, goes on to the SDK.
    #[cfg(feature = "dev-server")]
    #[tokio::test]
    async fn a_call_after_the_callers_certificate_expired_is_refused() {
        use std::time::{Duration, SystemTime};

        use crate::dev_server::{DevCa, SvidRequest};

        let ca = DevCa::new("example.org".parse().unwrap(), Duration::from_secs(3600)).unwrap();
        let peer = |not_after: SystemTime| {
            let request = SvidRequest::new(
                "spiffe://example.org/agent/client".parse().unwrap(),
                Duration::from_secs(600),
            )
            .valid_between(SystemTime::now() - Duration::from_secs(120), not_after);
            PeerIdentity::for_tests(ca.issue(&request).unwrap().chain().to_vec()).unwrap()
        };
        let handler =
            a2a_server::DefaultRequestHandler::new(Silent, a2a_server::InMemoryTaskStore::new());
        let card = MtlsAgentCard::new("test agent", "https://127.0.0.1:8443/a2a");
        let router = agent_router(Arc::new(handler), card);
        let call = |peer: PeerIdentity| {
            let body = json!({
                "jsonrpc": "2.0", "id": 7, "method": "SendMessage",
                "params": {"message": {"messageId": "m1", "role": "ROLE_USER",
                    "parts": [{"text": "hi"}]}},
            });
            let mut request = Request::post("/a2a")
                .header("a2a-version", "1.0")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            request.extensions_mut().insert(peer);
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await.unwrap();
                let bytes = axum::body::to_bytes(response.into_body(), MAX_BODY)
                    .await
                    .unwrap();
                serde_json::from_slice::<Value>(&bytes).unwrap()
            }
        };
        let refused = call(peer(SystemTime::now() - Duration::from_secs(60))).await;
        assert_eq!(refused["id"], 7, "{refused}");
        assert_eq!(
            refused["error"]["code"],
            super::super::REFUSED_CODE,
            "{refused}"
        );
        assert_eq!(
            refused["error"]["message"],
            "SendMessage needs a certificate valid now; \
             spiffe://example.org/agent/client's expired after the handshake"
        );
        let answered = call(peer(SystemTime::now() + Duration::from_secs(600))).await;
        assert!(
            !answered.to_string().contains("certificate valid now"),
            "{answered}"
        );
    }

    #[test]
    fn endpoint_is_the_path_of_the_url() {
        assert_eq!(endpoint_path("https://127.0.0.1:8443/a2a"), "/a2a");
        assert_eq!(endpoint_path("https://127.0.0.1:8443"), "/");
        assert_eq!(endpoint_path("not a url"), "/");
    }
}
