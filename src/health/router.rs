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

/// Whether `host` (a `Host` header or a request target's authority, with or without a
/// port) names the listener in a way a page elsewhere cannot: an IP address, `localhost`, or
/// one of `allowed`. A browser sends the name it resolved, so a DNS-rebinding page sends its
/// own name, and is refused.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.');
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

impl HealthMonitor {
    /// Also answers requests whose `Host` is `name` (by default only IP addresses and
    /// `localhost` are answered: see [`HealthMonitor::answer`]).
    #[must_use]
    pub fn allow_host(self, name: impl Into<String>) -> Self {
        super::lock(&self.inner.allowed_hosts).push(name.into());
        self
    }

    /// The answer to `method path` with `Host: host` (`None` when the request has none):
    /// `GET` or `HEAD` of `/` (the page), `/_status`, `/metrics`, `/healthz`; `405` for
    /// another method, `404` for another path, and `421` for a `Host` that is not an IP
    /// address, `localhost` or a name given to [`HealthMonitor::allow_host`] (a page of
    /// another site reaching the listener through DNS rebinding sends its own name), except
    /// on `/healthz` (liveness probes send what they like; it tells nothing but `ok`).
    pub fn answer(&self, method: &str, host: Option<&str>, path: &str) -> Answer {
        if path != "/healthz"
            && let Some(refused) = self.misdirected(host)
        {
            return refused;
        }
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
                async move { to_response(&monitor.answer_request(&request)) }
            }
        };
        axum::Router::new()
            .route("/", axum::routing::any(handler(self.clone())))
            .fallback(handler(self.clone()))
    }
}

impl HealthMonitor {
    /// [`HealthMonitor::answer`] to an HTTP request: its `Host` header and the authority of
    /// an absolute request target must both be allowed.
    pub fn answer_request<B>(&self, request: &http::Request<B>) -> Answer {
        let (method, path) = (request.method().as_str(), request.uri().path());
        match self.misdirected_request(request) {
            Some(refused) if path != "/healthz" => refused,
            _ => self.answer(method, None, path),
        }
    }

    /// The `421` answer to a request whose `Host` header or request-target authority is not
    /// answered (see [`HealthMonitor::answer`]; `/healthz`, which tells nothing but `ok`,
    /// answers any); `None` when both are.
    pub fn misdirected_request<B>(&self, request: &http::Request<B>) -> Option<Answer> {
        let header = request
            .headers()
            .get(http::header::HOST)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"));
        let target = request.uri().authority().map(http::uri::Authority::as_str);
        self.misdirected(header)
            .or_else(|| self.misdirected(target))
    }

    /// The `421` answer for `host`, unless it is answered.
    fn misdirected(&self, host: Option<&str>) -> Option<Answer> {
        let host = host?;
        if host_allowed(host, &super::lock(&self.inner.allowed_hosts)) {
            return None;
        }
        Some(Answer::new(
            421,
            "text/plain; charset=utf-8",
            "misdirected: this status port answers requests for its IP address or localhost \
             only (another Host could be a page of another site, through DNS rebinding)\n"
                .into(),
        ))
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
