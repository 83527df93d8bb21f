//! A tower layer that authorizes each request's route by a [`Policy`], from the verified peer
//! identity of its connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};

use super::canonical_path::{canonical_path, canonicalize_request, refuse_path};
use super::refusal::{RouteRefusal, refusal_response};
use crate::authorize::{Policy, PolicyRef, WatchedPolicy};
use crate::tls::{self, PeerIdentity};

/// Authorizes every request by a [`Policy`]: a function of the request names its route (by
/// default [`PathPrefixRoute`], the longest route of the policy that is a path prefix of the
/// request's path), and [`Policy::authorize_route`] decides on the SPIFFE ID of the request's
/// [`PeerIdentity`] extension (inserted by [`serve_http`](super::serve_http)).
///
/// - Allowed: the request goes on to the inner service.
/// - Refused: `403 Forbidden`, `text/plain`, body
///   `forbidden: route "/admin" does not allow spiffe://example.org/agent/x`; the inner service
///   is not called. A route the policy does not name is refused.
/// - A path with no [canonical form](super::canonical_path) (`/admin%2Fx`, `//admin`,
///   `/public/..%2fadmin`, `/a;b`, ...): `400 Bad Request`, body
///   `bad request: path "/admin%2Fx" refused: the path has an encoded separator "%2F"`, with an
///   audit event (`rule="canonical path"`); the inner service is not called. Otherwise the
///   route is chosen on the canonical path, and the inner service receives the request with
///   that path (and the query as sent), so the route decided and the path served are the same.
/// - No `PeerIdentity` extension (a service not behind `serve_http`, say): `403`, body
///   `forbidden: route "/admin" needs a verified SPIFFE ID`. Never allowed.
///
/// Each decision is one audit event (target [`AUDIT_TARGET`](crate::tls::AUDIT_TARGET)) with
/// `side`, `peer`, `trust_domain`, `decision`, `rule`, `route` and, for a denial, `reason`
/// (also in a [`RouteRefusal`](super::RouteRefusal) in the refusal's extensions);
/// see [`crate::tls`]'s audit module docs. The refusal body names the route and the peer, not
/// the rule: the rule is in the audit event.
///
/// # Example
/// ```
/// use axum::{Router, routing::get};
/// use spiffe_mtls::{Policy, net::RoutePolicyLayer};
///
/// let policy = Policy::from_toml(r#"
///     [routes."/api"]
///     trust_domains = ["example.org"]
///     [routes."/api/admin"]
///     ids = ["spiffe://example.org/ops"]
/// "#)?;
/// let app: Router = Router::new()
///     .route("/api/items", get(|| async { "items\n" }))
///     .route("/api/admin/users", get(|| async { "users\n" }))
///     .layer(RoutePolicyLayer::new(policy));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With routes chosen by another function, the A2A skill of a header say:
/// ```
/// use axum::{Router, body::Body, routing::post};
/// use http::Request;
/// use spiffe_mtls::{Policy, net::RoutePolicyLayer};
///
/// fn skill(request: &Request<Body>) -> String {
///     let skill = request.headers().get("x-skill").and_then(|v| v.to_str().ok());
///     skill.unwrap_or("-").to_owned()
/// }
/// let policy = Policy::from_toml("[routes.echo]\ntrust_domains = [\"example.org\"]\n")?;
/// let app: Router = Router::new()
///     .route("/", post(|| async { "done\n" }))
///     .layer(RoutePolicyLayer::new(policy).route_by(skill));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RoutePolicyLayer<R = PathPrefixRoute> {
    policy: PolicyRef,
    route: R,
}

impl RoutePolicyLayer {
    /// The layer for `policy`, routes chosen by [`PathPrefixRoute`].
    ///
    /// # Example
    /// See [`RoutePolicyLayer`].
    pub fn new(policy: Policy) -> Self {
        let route = PathPrefixRoute::new(&policy);
        Self {
            policy: PolicyRef::Fixed(Arc::new(policy)),
            route,
        }
    }

    /// The layer for a policy file that is reloaded while it serves: each request is
    /// decided by the policy in force when it arrives (its routes and its rules), routes
    /// chosen by [`PathPrefixRoute::following`].
    pub fn watched(policy: WatchedPolicy) -> Self {
        Self {
            route: PathPrefixRoute::following(&policy),
            policy: PolicyRef::Watched(policy),
        }
    }
}

impl<R> RoutePolicyLayer<R> {
    /// Chooses each request's route with `route` (a function or closure
    /// `Fn(&Request<B>) -> String`, or any [`ChooseRoute`]) instead.
    ///
    /// # Example
    /// See [`RoutePolicyLayer`].
    pub fn route_by<F>(self, route: F) -> RoutePolicyLayer<F> {
        RoutePolicyLayer {
            policy: self.policy,
            route,
        }
    }

    /// The policy in force now.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::{Policy, net::RoutePolicyLayer};
    /// let layer = RoutePolicyLayer::new(Policy::from_toml("[routes.\"/api\"]\n")?);
    /// assert_eq!(layer.policy().route_names().collect::<Vec<_>>(), ["/api"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }
}

impl<S, R: Clone> tower::Layer<S> for RoutePolicyLayer<R> {
    type Service = RoutePolicy<S, R>;

    fn layer(&self, inner: S) -> RoutePolicy<S, R> {
        RoutePolicy {
            inner,
            policy: self.policy.clone(),
            route: self.route.clone(),
        }
    }
}

/// Names the route of a request, for [`RoutePolicyLayer`]. Implemented by every
/// `Fn(&Request<B>) -> String` and by [`PathPrefixRoute`].
///
/// # Example
/// ```
/// use http::Request;
/// use spiffe_mtls::net::ChooseRoute;
///
/// #[derive(Clone)]
/// struct ByMethod;
/// impl<B> ChooseRoute<B> for ByMethod {
///     fn route(&self, request: &Request<B>) -> String {
///         request.method().as_str().to_owned()
///     }
/// }
/// assert_eq!(ByMethod.route(&Request::get("/").body(()).unwrap()), "GET");
/// ```
pub trait ChooseRoute<B> {
    /// The route of `request`: a name the policy may hold.
    fn route(&self, request: &Request<B>) -> String;
}

impl<B, F> ChooseRoute<B> for F
where
    F: Fn(&Request<B>) -> String,
{
    fn route(&self, request: &Request<B>) -> String {
        self(request)
    }
}

/// `(canonical form, the policy's name)` of each path route, longest canonical form first.
type Prefixes = Arc<[(String, String)]>;

/// The default route of [`RoutePolicyLayer`]: of the policy's routes whose name starts with
/// `/`, the longest that is a path prefix of the request's path, segment by segment (`/api`
/// covers `/api` and `/api/items`, not `/apis`; `/` covers every path). A path no route covers
/// is its own route, which the policy does not name, so it is refused.
///
/// The path is compared in its [canonical form](super::canonical_path) (`/%61dmin` is
/// `/admin`, `/caf%c3%a9` is `/café`), and so are the route names (a policy names `/café` or
/// `/caf%C3%A9` alike; [`Policy`] refuses a path route with no canonical form). A path that has
/// none (an encoded `/`, a dot segment, `//`, a `;`, ...) is its own route, which no policy
/// names. [`RoutePolicyLayer`] refuses such a path with `400` before choosing a route, and hands
/// the inner service the canonical path.
///
/// # Example
/// ```
/// use spiffe_mtls::{Policy, net::PathPrefixRoute};
///
/// let policy = Policy::from_toml("[routes.\"/api\"]\n[routes.\"/api/admin\"]\n")?;
/// let routes = PathPrefixRoute::new(&policy);
/// assert_eq!(routes.route_of("/api/admin/users"), "/api/admin");
/// assert_eq!(routes.route_of("/api/items"), "/api");
/// assert_eq!(routes.route_of("/apis"), "/apis");
/// assert_eq!(routes.route_of("/api/../admin"), "/api/../admin");
/// assert_eq!(routes.route_of("/%61pi/admin/x"), "/api/admin");
///
/// let policy = Policy::from_toml("[routes.\"/café\"]\n")?;
/// assert_eq!(PathPrefixRoute::new(&policy).route_of("/caf%c3%a9/menu"), "/café");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PathPrefixRoute {
    /// `(canonical form, the policy's name)`, longest canonical form first.
    prefixes: Prefixes,
    /// With [`following`](Self::following): the policy whose routes these are, and the
    /// generation `prefixes` were computed for.
    following: Option<Following>,
}

#[derive(Debug, Clone)]
struct Following {
    policy: WatchedPolicy,
    computed: Arc<std::sync::Mutex<(u64, Prefixes)>>,
}

impl PathPrefixRoute {
    /// The path routes of `policy`.
    ///
    /// # Example
    /// See [`PathPrefixRoute`].
    pub fn new(policy: &Policy) -> Self {
        Self {
            prefixes: path_prefixes(policy),
            following: None,
        }
    }

    /// The path routes of a watched policy, as they are at each request (computed again
    /// after each reload).
    pub fn following(policy: &WatchedPolicy) -> Self {
        let prefixes = path_prefixes(&policy.current());
        Self {
            following: Some(Following {
                policy: policy.clone(),
                computed: Arc::new(std::sync::Mutex::new((
                    policy.generation(),
                    Arc::clone(&prefixes),
                ))),
            }),
            prefixes,
        }
    }

    /// The prefixes in force now.
    fn prefixes(&self) -> Prefixes {
        let Some(following) = &self.following else {
            return Arc::clone(&self.prefixes);
        };
        let mut computed = following
            .computed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = following.policy.generation();
        if computed.0 != generation {
            *computed = (generation, path_prefixes(&following.policy.current()));
        }
        Arc::clone(&computed.1)
    }

    /// The route of `path`.
    ///
    /// # Example
    /// See [`PathPrefixRoute`].
    pub fn route_of(&self, path: &str) -> String {
        let Ok(path) = canonical_path(path) else {
            return path.to_owned();
        };
        self.prefixes()
            .iter()
            .find(|(prefix, _)| covers(prefix, &path))
            .map_or_else(|| path.into_owned(), |(_, name)| name.clone())
    }
}

/// The path routes of `policy`: `(canonical form, name)`, longest canonical form first.
fn path_prefixes(policy: &Policy) -> Prefixes {
    // `Policy` refused path routes with no canonical form; one built otherwise keeps its
    // name, which then matches only itself.
    let mut prefixes: Vec<(String, String)> = policy
        .route_names()
        .filter(|name| name.starts_with('/'))
        .map(|name| {
            let canonical = canonical_path(name).map_or_else(|_| name.into(), |c| c.into());
            (canonical, name.to_owned())
        })
        .collect();
    prefixes.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    prefixes.into()
}

impl<B> ChooseRoute<B> for PathPrefixRoute {
    fn route(&self, request: &Request<B>) -> String {
        self.route_of(request.uri().path())
    }
}

/// Whether the route `prefix` covers `path`, segment by segment.
fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The service of [`RoutePolicyLayer`].
///
/// # Example
/// ```
/// use tower::Layer;
/// use spiffe_mtls::{Policy, net::{RoutePolicy, RoutePolicyLayer}};
///
/// let layer = RoutePolicyLayer::new(Policy::from_toml("")?);
/// let service: RoutePolicy<_> = layer.layer(tower::service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RoutePolicy<S, R = PathPrefixRoute> {
    inner: S,
    policy: PolicyRef,
    route: R,
}

impl<S, R, ReqBody, ResBody> tower::Service<Request<ReqBody>> for RoutePolicy<S, R>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: ChooseRoute<ReqBody>,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Err(error) = canonicalize_request(&mut request) {
            return Box::pin(std::future::ready(Ok(refuse_path(&request, &error))));
        }
        let route = self.route.route(&request);
        let refusal = |rule: String, reason: &str| RouteRefusal {
            route: Some(route.clone()),
            path: request.uri().path().to_owned(),
            rule,
            reason: reason.to_owned(),
        };
        let Some(peer) = request.extensions().get::<PeerIdentity>() else {
            let (rule, reason) = (
                "verified SPIFFE ID",
                "the request carries no verified peer identity",
            );
            let method = request.method().as_str();
            tls::route_denied(None, &route, &rule, &reason, &|event| {
                tls::request_evidence(event, method, None, None)
            });
            let body = format!("forbidden: route {route:?} needs a verified SPIFFE ID\n");
            let refusal = refusal(rule.to_owned(), reason);
            return Box::pin(std::future::ready(Ok(refusal_response(
                StatusCode::FORBIDDEN,
                body,
                refusal,
            ))));
        };
        let id = peer.spiffe_id();
        // The handshake checked the certificate once; a connection can outlive it.
        if peer.is_expired() {
            let (rule, reason) = (
                "a certificate valid now",
                "the peer's certificate expired after its handshake",
            );
            let method = request.method().as_str();
            tls::route_denied(Some(id), &route, &rule, &reason, &|event| {
                tls::request_evidence(event, method, Some(peer), None)
            });
            let body = format!(
                "forbidden: route {route:?} needs a certificate valid now; {id}'s expired after the handshake\n"
            );
            let refusal = refusal(rule.to_owned(), reason);
            return Box::pin(std::future::ready(Ok(refusal_response(
                StatusCode::FORBIDDEN,
                body,
                refusal,
            ))));
        }
        // The policy in force for this request (a watched file's may have changed since the
        // connection's handshake).
        let policy = self.policy.current();
        let method = request.method().as_str();
        let evidence = |event| tls::request_evidence(event, method, Some(peer), policy.sha256());
        match policy.authorize_route(&route, id) {
            Ok(()) => {
                match policy.route(&route) {
                    Some(rule) => tls::route_allowed(
                        id,
                        &route,
                        &format_args!("route {route:?} allows {rule}"),
                        &evidence,
                    ),
                    None => {
                        tls::route_allowed(id, &route, &format_args!("route {route:?}"), &evidence)
                    }
                }
                Box::pin(self.inner.call(request))
            }
            Err(error) => {
                let reason = "the rule does not allow this SPIFFE ID";
                tls::route_denied(Some(id), &route, &error.rule, &reason, &evidence);
                let body = format!("forbidden: route {route:?} does not allow {id}\n");
                let refusal = refusal(error.rule.to_string(), reason);
                Box::pin(std::future::ready(Ok(refusal_response(
                    StatusCode::FORBIDDEN,
                    body,
                    refusal,
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(names: &[&str]) -> PathPrefixRoute {
        let text: String = names
            .iter()
            .map(|name| format!("[routes.{name:?}]\n"))
            .collect();
        PathPrefixRoute::new(&Policy::from_toml(&text).unwrap())
    }

    #[test]
    fn longest_segment_prefix_wins() {
        let r = routes(&["/", "/api", "/api/admin/", "skill"]);
        assert_eq!(r.route_of("/"), "/");
        assert_eq!(r.route_of("/index.html"), "/");
        assert_eq!(r.route_of("/api"), "/api");
        assert_eq!(r.route_of("/api/"), "/api");
        assert_eq!(r.route_of("/apis"), "/");
        assert_eq!(r.route_of("/api/admin"), "/api/admin/");
        assert_eq!(r.route_of("/api/admin/x/y"), "/api/admin/");
        assert_eq!(r.route_of("/api/administrators"), "/api");
        // Names without a leading slash are never path routes.
        assert_eq!(r.route_of("/skill"), "/");
    }

    #[test]
    fn uncovered_and_odd_paths_are_their_own_route() {
        let r = routes(&["/", "/api"]);
        for path in [
            "*",
            "",
            "/api/./x",
            "/api/..",
            "/x/%2e%2E/api",
            "/api/%2E",
            "/./",
            "//api",
            "/api%2Fx",
            "/x/..%2fapi",
            "/api;x",
        ] {
            assert_eq!(r.route_of(path), path);
        }
        // Route names in any spelling match the one canonical form.
        let named = routes(&["/", "/café", "/v1:admin", "/it's"]);
        for (path, route) in [
            ("/caf%C3%A9/x", "/café"),
            ("/caf%c3%a9/x", "/café"),
            ("/café", "/café"),
            ("/v1%3Aadmin/secret", "/v1:admin"),
            ("/it%27s/secret", "/it's"),
            ("/cafe", "/"),
        ] {
            assert_eq!(named.route_of(path), route, "{path}");
        }
        let encoded = routes(&["/", "/caf%c3%a9", "/%61dmin"]);
        assert_eq!(encoded.route_of("/café/x"), "/caf%c3%a9");
        assert_eq!(encoded.route_of("/admin/x"), "/%61dmin");
        // Encoded unreserved characters name the path they decode to.
        assert_eq!(r.route_of("/%61pi/x"), "/api");
        assert_eq!(routes(&["/api"]).route_of("/%61pix"), "/apix");
        // Dots inside a segment are fine.
        assert_eq!(r.route_of("/api/v1.2/..x"), "/api");
        let none = routes(&["/api"]);
        assert_eq!(none.route_of("/other"), "/other");
    }

    /// A connection can outlive its peer's certificate: a request made after the leaf's
    /// notAfter is refused even on a route that allows the ID; its good twin (the same ID,
    /// a certificate still valid) is let through.
    #[cfg(feature = "dev-server")]
    #[tokio::test]
    async fn a_request_after_the_peers_certificate_expired_is_refused() {
        use std::time::{Duration, SystemTime};
        use tower::{Layer, Service, ServiceExt};

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
        let policy =
            Policy::from_toml("[routes.\"/api\"]\nids = [\"spiffe://example.org/agent/client\"]\n")
                .unwrap();
        let mut service = RoutePolicyLayer::new(policy).layer(tower::service_fn(
            |_request: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
            },
        ));
        for (not_after, status) in [
            (SystemTime::now() + Duration::from_secs(600), StatusCode::OK),
            (
                SystemTime::now() - Duration::from_secs(60),
                StatusCode::FORBIDDEN,
            ),
        ] {
            let mut request = Request::get("/api/items").body(String::new()).unwrap();
            request.extensions_mut().insert(peer(not_after));
            let response = service.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.status(), status);
            if status == StatusCode::FORBIDDEN {
                let refusal = response.extensions().get::<RouteRefusal>().unwrap();
                assert_eq!(refusal.rule, "a certificate valid now");
                assert!(response.body().contains("expired after the handshake"));
            }
        }
    }
}
