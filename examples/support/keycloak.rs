//! A Keycloak for the agents: one started by `interop/keycloak.sh` (or named by the
//! `KEYCLOAK_*` variables its `keycloak.env` holds), a realm per use with the SPIFFE identity
//! provider reading our bundle endpoint, the `agent:execute` and `data:pii` scopes and a
//! federated-JWT client per agent; and the bundle endpoint itself, served with the web
//! certificate Keycloak trusts. Shared by `agents_demo --oauth` and the Keycloak tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use spiffe_mtls::federation::BundleEndpoint;
use spiffe_mtls::jwt::JwtBundleSource;
use spiffe_mtls::rustls::ServerConfig;
use spiffe_mtls::rustls::pki_types::pem::PemObject;
use spiffe_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use spiffe_mtls::source::X509Source;

/// The scopes each realm defines.
pub const SCOPES: [&str; 2] = ["agent:execute", "data:pii"];

/// A running Keycloak: its URL, admin credentials and the web certificate it trusts for
/// bundle endpoints. One this value started is stopped when it is dropped.
pub struct Keycloak {
    url: String,
    admin: String,
    password: String,
    web_cert: PathBuf,
    web_key: PathBuf,
    /// The state directory of a Keycloak started here.
    started: Option<tempfile::TempDir>,
}

impl Drop for Keycloak {
    fn drop(&mut self) {
        if let Some(state) = &self.started {
            let _ = Command::new(script())
                .arg("stop")
                .arg(state.path())
                .output();
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/keycloak.sh")
}

/// `KEY=value` lines.
fn read_env(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
}

impl Keycloak {
    /// The Keycloak the `KEYCLOAK_*` variables name, if they are set.
    pub fn from_env() -> Option<Self> {
        let var = |name| std::env::var(name).ok();
        Some(Self {
            url: var("KEYCLOAK_URL")?,
            admin: var("KEYCLOAK_ADMIN")?,
            password: var("KEYCLOAK_ADMIN_PASSWORD")?,
            web_cert: var("KEYCLOAK_WEB_CERT")?.into(),
            web_key: var("KEYCLOAK_WEB_KEY")?.into(),
            started: None,
        })
    }

    /// The Keycloak the variables name, else one started now with `interop/keycloak.sh`
    /// (installed first: a download of 164 MB the first time, cached), stopped when dropped.
    pub fn find_or_start(say: &mut (dyn FnMut(String) + Send)) -> Result<Self, String> {
        if let Some(keycloak) = Self::from_env() {
            return Ok(keycloak);
        }
        say("starting Keycloak with interop/keycloak.sh (install, cached after the first time; then start)".to_owned());
        let run = |args: &[&std::ffi::OsStr]| -> Result<String, String> {
            let output = Command::new(script())
                .args(args)
                .output()
                .map_err(|e| format!("cannot run interop/keycloak.sh: {e}"))?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() {
                Ok(text)
            } else {
                Err(format!(
                    "interop/keycloak.sh {:?} failed: {}{}",
                    args,
                    text,
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        };
        run(&["install".as_ref()])?;
        let state = tempfile::Builder::new()
            .prefix("spiffe-mtls-keycloak")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let text = match run(&["start".as_ref(), state.path().as_os_str()]) {
            Ok(text) => text,
            Err(error) => {
                // It may have started before failing: stop what the state directory names.
                let _ = run(&["stop".as_ref(), state.path().as_os_str()]);
                return Err(error);
            }
        };
        let value =
            |name| read_env(&text, name).ok_or(format!("interop/keycloak.sh start said no {name}"));
        let parsed = (|| {
            Ok::<_, String>((
                value("KEYCLOAK_URL")?,
                value("KEYCLOAK_ADMIN")?,
                value("KEYCLOAK_ADMIN_PASSWORD")?,
                value("KEYCLOAK_WEB_CERT")?,
                value("KEYCLOAK_WEB_KEY")?,
            ))
        })();
        match parsed {
            // From here on, dropping the value stops it.
            Ok((url, admin, password, web_cert, web_key)) => Ok(Self {
                url,
                admin,
                password,
                web_cert: web_cert.into(),
                web_key: web_key.into(),
                started: Some(state),
            }),
            Err(error) => {
                let _ = run(&["stop".as_ref(), state.path().as_os_str()]);
                Err(error)
            }
        }
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A TLS server config presenting the web certificate Keycloak trusts (for our bundle
    /// endpoints, `https://localhost:PORT/` or `https://127.0.0.1:PORT/`).
    pub fn web_config(&self) -> Result<ServerConfig, String> {
        let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(&self.web_cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("{}: {e}", self.web_cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&self.web_key)
            .map_err(|e| format!("{}: {e}", self.web_key.display()))?;
        let provider = spiffe_mtls::crypto::default_provider().ok_or("no crypto provider")?;
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| e.to_string())
    }

    /// Serves the bundle endpoint of `x509`'s trust domain (its roots and `jwt`'s keys, a
    /// refresh hint of 5 s) with [`web_config`](Self::web_config): its URL and task.
    pub async fn serve_bundle_endpoint(
        &self,
        x509: Arc<dyn X509Source>,
        jwt: Arc<dyn JwtBundleSource>,
    ) -> Result<(String, tokio::task::JoinHandle<()>), String> {
        let endpoint = BundleEndpoint::new(x509)
            .jwt_bundles(jwt)
            .refresh_hint(Duration::from_secs(5));
        let config = self.web_config()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "https://localhost:{}/",
            listener.local_addr().map_err(|e| e.to_string())?.port()
        );
        let task = tokio::spawn(async move {
            let _ = spiffe_mtls::net::HttpServer::new(listener, Arc::new(config))
                .allow_anonymous_clients()
                .serve(endpoint.router())
                .await;
        });
        Ok((url, task))
    }

    /// A new realm (its name unique to this process): the SPIFFE identity provider of
    /// `trust_domain` reading `bundle_endpoint`, the two [`SCOPES`], a federated-JWT client
    /// per `(client ID, SPIFFE ID, scopes it may ask for)` whose tokens name `audience`, and
    /// token exchange that may only narrow. Its issuer URL.
    pub async fn realm(
        &self,
        trust_domain: &str,
        bundle_endpoint: &str,
        audience: &str,
        clients: &[(&str, &str, &[&str])],
    ) -> Result<String, String> {
        static REALMS: AtomicUsize = AtomicUsize::new(0);
        let realm = format!(
            "agents-{}-{}",
            std::process::id(),
            REALMS.fetch_add(1, Ordering::SeqCst)
        );
        let admin = Admin::new(self).await?;
        admin
            .post("", json!({"realm": realm, "enabled": true}))
            .await?;
        let base = format!("/{realm}");
        admin
            .post(
                &format!("{base}/identity-provider/instances"),
                json!({"alias": "spiffe", "providerId": "spiffe", "enabled": true,
                       "config": {"trustDomain": format!("spiffe://{trust_domain}"),
                                  "bundleEndpoint": bundle_endpoint}}),
            )
            .await?;
        for scope in SCOPES {
            admin
                .post(
                    &format!("{base}/client-scopes"),
                    json!({"name": scope, "protocol": "openid-connect",
                           "attributes": {"include.in.token.scope": "true",
                                          "display.on.consent.screen": "false"}}),
                )
                .await?;
        }
        for (client_id, spiffe_id, scopes) in clients {
            admin
                .post(
                    &format!("{base}/clients"),
                    json!({
                        "clientId": client_id, "publicClient": false,
                        "standardFlowEnabled": false, "directAccessGrantsEnabled": false,
                        "serviceAccountsEnabled": true,
                        "clientAuthenticatorType": "federated-jwt",
                        "attributes": {"jwt.credential.issuer": "spiffe",
                                       "jwt.credential.sub": spiffe_id,
                                       "standard.token.exchange.enabled": "true"},
                        "optionalClientScopes": scopes,
                        "protocolMappers": [{
                            "name": "audience", "protocol": "openid-connect",
                            "protocolMapper": "oidc-audience-mapper",
                            "config": {"included.custom.audience": audience,
                                       "access.token.claim": "true"}
                        }],
                    }),
                )
                .await?;
        }
        admin
            .put(
                &format!("{base}/client-policies/profiles"),
                json!({"profiles": [{"name": "downscope-only", "executors": [
                    {"executor": "downscope-assertion-grant-enforcer", "configuration": {}}]}]}),
            )
            .await?;
        admin
            .put(
                &format!("{base}/client-policies/policies"),
                json!({"policies": [{"name": "downscope-token-exchange", "enabled": true,
                       "conditions": [{"condition": "grant-type", "configuration":
                           {"grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]}}],
                       "profiles": ["downscope-only"]}]}),
            )
            .await?;
        Ok(format!("{}/realms/{realm}", self.url))
    }
}

/// Keycloak's admin API with an admin token.
struct Admin {
    url: String,
    http: reqwest::Client,
    token: String,
}

impl Admin {
    async fn new(keycloak: &Keycloak) -> Result<Self, String> {
        let provider = spiffe_mtls::crypto::default_provider().ok_or("no crypto provider")?;
        let config = spiffe_mtls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(spiffe_mtls::rustls::RootCertStore::empty())
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let answer: Value = http
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                keycloak.url
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=password&client_id=admin-cli&username={}&password={}",
                keycloak.admin, keycloak.password
            ))
            .send()
            .await
            .map_err(|e| format!("Keycloak's admin token: {e}"))?
            .json()
            .await
            .map_err(|e| format!("Keycloak's admin token: {e}"))?;
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| format!("no admin token: {answer}"))?
            .to_owned();
        Ok(Self {
            url: keycloak.url.clone(),
            http,
            token,
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<(), String> {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn put(&self, path: &str, body: Value) -> Result<(), String> {
        self.send(reqwest::Method::PUT, path, body).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Result<(), String> {
        let response = self
            .http
            .request(method, format!("{}/admin/realms{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("Keycloak {path}: {e}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(format!("Keycloak {path}: HTTP {status}: {text}"))
    }
}
