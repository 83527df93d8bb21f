//! Serving the monitor: the answer to each path, and an `axum::Router` of them.

use std::sync::LazyLock;

use base64::Engine as _;

use super::HealthMonitor;

/// The dashboard page: one self-contained document, its script and style inline.
const PAGE: &str = include_str!("page.html");

/// The page's Content-Security-Policy: its own inline script and style (by their SHA-256),
/// requests to its own origin only, nothing else.
static PAGE_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        inline_hashes(PAGE, "script"),
        inline_hashes(PAGE, "style"),
    )
});

/// The CSP sources (`'sha256-...'`) of the inline `<tag>` elements of `page`.
fn inline_hashes(page: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut sources = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else {
            break;
        };
        // Without a hash (no crypto provider) the element is not allowed: the page shows no
        // data rather than run without its policy.
        if let Some(digest) = crate::crypto::sha256(&body.as_bytes()[..end]) {
            sources.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &body[end..];
    }
    if sources.is_empty() {
        "'none'".to_owned()
    } else {
        sources.join(" ")
    }
}

/// Headers of every answer: never cached, never sniffed, no referrer.
const COMMON_HEADERS: [(&str, &str); 3] = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// The answer to one request of a status listener.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers, `content-type` among them.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

impl Answer {
    fn new(status: u16, content_type: &'static str, body: String) -> Self {
        let mut headers = vec![("content-type", content_type.to_owned())];
        headers.extend(COMMON_HEADERS.map(|(name, value)| (name, value.to_owned())));
        Self {
            status,
            headers,
            body,
        }
    }
}

impl HealthMonitor {
    /// The answer to `GET path`: `/` (the page), `/_status`, `/metrics`, `/healthz`; `405`
    /// for another method than GET or HEAD, `404` for another path.
    pub fn answer(&self, method: &str, path: &str) -> Answer {
        if method != "GET" && method != "HEAD" {
            return Answer::new(405, "text/plain; charset=utf-8", "GET only\n".into());
        }
        match path {
            "/" | "/index.html" => {
                let mut answer = Answer::new(200, "text/html; charset=utf-8", PAGE.to_owned());
                answer
                    .headers
                    .push(("content-security-policy", PAGE_POLICY.clone()));
                answer
            }
            "/_status" => {
                let mut text = serde_json::to_string_pretty(&self.status()).unwrap_or_default();
                text.push('\n');
                Answer::new(200, "application/json", text)
            }
            "/metrics" => {
                let mut registry = prometheus_client::registry::Registry::default();
                self.register_metrics(&mut registry);
                self.refresh_metrics();
                let mut text = String::new();
                if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
                    text.clear();
                }
                Answer::new(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            }
            "/healthz" => match self.source().map(|s| s.x509_context()) {
                Some(Ok(_)) => Answer::new(200, "text/plain; charset=utf-8", "ok\n".into()),
                _ => Answer::new(503, "text/plain; charset=utf-8", "no current SVID\n".into()),
            },
            _ => Answer::new(
                404,
                "text/plain; charset=utf-8",
                "not found: try /, /_status, /metrics, /healthz\n".into(),
            ),
        }
    }

    /// An `axum::Router` serving [`HealthMonitor::answer`] at `/`, `/_status`, `/metrics`
    /// and `/healthz`. Mount it on a listener only operators reach (loopback, a Unix
    /// socket): it names the workload's peers and decisions.
    pub fn router(&self) -> axum::Router {
        let handler = |monitor: HealthMonitor| {
            move |request: axum::extract::Request| {
                let monitor = monitor.clone();
                async move {
                    to_response(&monitor.answer(request.method().as_str(), request.uri().path()))
                }
            }
        };
        axum::Router::new()
            .route("/", axum::routing::any(handler(self.clone())))
            .fallback(handler(self.clone()))
    }
}

/// `answer` as an HTTP response.
fn to_response(answer: &Answer) -> axum::response::Response {
    let mut response = axum::response::Response::new(axum::body::Body::from(answer.body.clone()));
    *response.status_mut() = http::StatusCode::from_u16(answer.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &answer.headers {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}
