//! `--status ADDR`: plain HTTP/1.1 with three endpoints.
//!
//! - `GET /healthz`: `200 ok` while an SVID is current (unexpired, not withdrawn), else `503`.
//! - `GET /_status`: JSON: `mode`, `spiffe_id`, `svid_serial` (hex), `svid_expires_at`
//!   (RFC 3339), `svid_seconds_left`, `trust_domains` (of the bundles), `source`,
//!   `connections` (`active`, `accepted`, `refused`), `rotations`, `last_rotation`
//!   (RFC 3339 or `null`), `workload_api_reconnects`; `healthy`.
//! - `GET /metrics`: the [`Metrics`](super::metrics) in the Prometheus text format
//!   (OpenMetrics 1.0).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::address::Address;
use super::http::ProxyBody;
use super::identity::Identity;
use super::metrics::Metrics;

/// Starts the status port when `--status` was given; the proxy's own SPIFFE ID, for its
/// start line (empty while it has no SVID).
pub async fn start_if_asked(
    address: Option<&Address>,
    identity: &Arc<Identity>,
    metrics: &Arc<Metrics>,
    mode: &'static str,
) -> Result<String, String> {
    if let Some(address) = address {
        start(address, Arc::clone(identity), Arc::clone(metrics), mode).await?;
    }
    Ok(identity
        .context()
        .map(|c| c.default_svid().spiffe_id().to_string())
        .unwrap_or_default())
}

/// Binds `address` and serves it in the background.
async fn start(
    address: &Address,
    identity: Arc<Identity>,
    metrics: Arc<Metrics>,
    mode: &'static str,
) -> Result<(), String> {
    let listener = address.bind().await.map_err(|e| format!("--status: {e}"))?;
    println!("status on http://{}", listener.local());
    tokio::spawn(async move {
        // Bounded: a status port is for a few scrapers.
        let slots = Arc::new(tokio::sync::Semaphore::new(64));
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let (identity, metrics) = (Arc::clone(&identity), Arc::clone(&metrics));
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(&request, &identity, &metrics, mode);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(60), connection).await;
                drop(slot);
            });
        }
    });
    Ok(())
}

fn respond(
    request: &Request<Incoming>,
    identity: &Identity,
    metrics: &Metrics,
    mode: &str,
) -> Response<ProxyBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let context = identity.context();
    let seconds_left = context.as_ref().map(|c| {
        match c
            .default_svid()
            .expires_at()
            .duration_since(SystemTime::now())
        {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        }
    });
    metrics.expiry_seconds.set(seconds_left.unwrap_or(0.0));
    match request.uri().path() {
        "/healthz" => match &context {
            Some(_) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no current SVID\n".into(),
            ),
        },
        "/_status" => {
            let svid = context.as_ref().map(|c| c.default_svid());
            let mut trust_domains: Vec<String> = context
                .as_ref()
                .map(|c| {
                    c.bundles()
                        .iter()
                        .map(|b| b.trust_domain().to_string())
                        .collect()
                })
                .unwrap_or_default();
            trust_domains.sort_unstable();
            let refused: u64 = [
                "unauthorized",
                "untrusted_certificate",
                "no_certificate",
                "handshake_timeout",
                "handshake_failed",
                "target_unreachable",
            ]
            .into_iter()
            .map(|reason| metrics.refused_count(reason))
            .sum();
            let body = serde_json::json!({
                "mode": mode,
                "healthy": context.is_some(),
                "spiffe_id": svid.map(|s| s.spiffe_id().to_string()),
                "svid_serial": svid.map(crate::fetch::serial),
                "svid_expires_at": svid.map(|s| crate::fetch::rfc3339(s.expires_at())),
                "svid_seconds_left": seconds_left.map(f64::floor),
                "trust_domains": trust_domains,
                "source": identity.origin,
                "connections": {
                    "active": metrics.active.get(),
                    "accepted": metrics.accepted.get(),
                    "refused": refused,
                    "route_denied": metrics.refused_count("route_denied"),
                },
                "rotations": metrics.rotations.get(),
                "last_rotation": identity.last_rotation().map(crate::fetch::rfc3339),
                "workload_api_reconnects": metrics.reconnects.get(),
            });
            let mut text = serde_json::to_string_pretty(&body).unwrap_or_default();
            text.push('\n');
            reply(StatusCode::OK, "application/json", text)
        }
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /healthz, /_status, /metrics\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
