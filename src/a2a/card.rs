//! Agent cards that declare mutual TLS with X.509-SVIDs, in the v1.0 and v0.3 dialects.

use std::collections::HashMap;
use std::sync::Arc;

use a2a_protocol::{
    AgentCapabilities, AgentCard, AgentInterface, AgentSkill, ClientCredentialsOAuthFlow,
    HttpAuthSecurityScheme, MutualTlsSecurityScheme, OAuth2SecurityScheme, OAuthFlows,
    SecurityScheme, TRANSPORT_PROTOCOL_JSONRPC,
};
use serde_json::{Value, json};

use super::{AgentAuth, CardSignatureError, CardSigner, MTLS_SCHEME, OAUTH_SCHEME, SpiffeProfile};
use crate::spiffe_id::SpiffeId;

/// Which card document: a dialect, or both in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CardDialect {
    /// The v1.0 card ([`MtlsAgentCard::v1_0_json`]).
    V1_0,
    /// The v0.3 card ([`MtlsAgentCard::v0_3_json`]).
    V0_3,
    /// Both dialects in one document ([`MtlsAgentCard::to_json`]).
    Both,
}

/// The protocol version a v0.3 card declares.
const V0_3: &str = "0.3.0";

/// An agent card for an agent reached over SPIFFE mutual TLS, in both card dialects:
///
/// - v1.0 ([`v1_0`](Self::v1_0), the SDK's [`AgentCard`]): `supportedInterfaces` with the
///   JSON-RPC endpoint and `protocolVersion` `"1.0"`, `securitySchemes:
///   {"mtls": {"mtlsSecurityScheme": {"description": ...}}}`, `securityRequirements`
///   naming `mtls`, and the same requirement on every skill;
/// - v0.3 ([`v0_3_json`](Self::v0_3_json)): `url`, `protocolVersion` `"0.3.0"`,
///   `preferredTransport` `"JSONRPC"`, `securitySchemes: {"mtls": {"type": "mutualTLS"}}`,
///   `security: [{"mtls": []}]`, and `security` on every skill;
/// - both in one document ([`to_json`](Self::to_json)), what
///   [`agent_router`](super::agent_router) serves to a client that names no version: the
///   v1.0 card plus the v0.3 fields (the `mtls` scheme carries `mtlsSecurityScheme` and
///   `type`), which each dialect's readers skip where they do not know them.
///
/// With [`auth`](Self::auth) `Jwt` or `Both`, the card also (or instead) declares a bearer
/// scheme `jwt` for JWT-SVIDs (v1.0 `httpAuthSecurityScheme` with `scheme` `Bearer` and
/// `bearerFormat` `JWT`; v0.3 `{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}`),
/// and the requirements list each accepted scheme as an alternative.
///
/// The card says how to authenticate, never with what: it holds no certificate, key or
/// bundle. The scheme's description names the server's SPIFFE ID when one is given, which is
/// public.
///
/// # Example
/// ```
/// use spiffe_mtls::a2a::MtlsAgentCard;
///
/// let card = MtlsAgentCard::new("echo agent", "https://127.0.0.1:8443/a2a")
///     .server_id("spiffe://example.org/agent/server".parse()?)
///     .skill("echo", "Echo", "Replies with the text it was sent");
/// let json = card.to_json();
/// assert_eq!(json["supportedInterfaces"][0]["protocolVersion"], "1.0");
/// assert_eq!(json["securitySchemes"]["mtls"]["type"], "mutualTLS");
/// assert!(json["securitySchemes"]["mtls"]["mtlsSecurityScheme"].is_object());
/// assert_eq!(json["security"][0]["mtls"], serde_json::json!([]));
/// assert_eq!(json["url"], "https://127.0.0.1:8443/a2a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct MtlsAgentCard {
    name: String,
    description: String,
    version: String,
    url: String,
    server_id: Option<SpiffeId>,
    streaming: bool,
    auth: AgentAuth,
    skills: Vec<(String, String, String)>,
    bundle_endpoint: Option<String>,
    signer: Option<Arc<CardSigner>>,
    oauth: Option<OAuthDeclaration>,
}

/// The `oauth2` scheme a card declares: the token URL, the scopes it knows, the scopes every
/// call needs, and those each skill needs besides.
#[derive(Debug, Clone, Default)]
struct OAuthDeclaration {
    token_url: String,
    scopes: Vec<(String, String)>,
    required: Vec<String>,
    by_skill: HashMap<String, Vec<String>>,
}

impl MtlsAgentCard {
    /// A card for the agent `name` whose JSON-RPC endpoint is `url` (an `https://` URL),
    /// version `1.0.0`, streaming declared, no skill yet.
    ///
    /// # Example
    /// See [`MtlsAgentCard`].
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            description: format!("{name}, reached over SPIFFE mutual TLS"),
            name,
            version: "1.0.0".to_owned(),
            url: url.into(),
            server_id: None,
            streaming: true,
            auth: AgentAuth::Mtls,
            skills: Vec::new(),
            bundle_endpoint: None,
            signer: None,
            oauth: None,
        }
    }

    /// Declares an OAuth 2.0 `oauth2` scheme (client credentials at `token_url`, with these
    /// scopes and their descriptions), required beside the other credentials: every call
    /// needs a token with the scopes of [`require_scopes`](Self::require_scopes), each skill
    /// those of [`skill_scopes`](Self::skill_scopes) too. The requirements name the scopes,
    /// so a signature covers them; [`SkillPolicy::scopes_from_card`](super::SkillPolicy::scopes_from_card)
    /// enforces them.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::a2a::MtlsAgentCard;
    ///
    /// let json = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a")
    ///     .skill("echo", "Echo", "echoes")
    ///     .skill("records", "Records", "reads personal records")
    ///     .oauth2("https://auth.example.org/token", [("agent:execute", "call the agent"), ("data:pii", "personal data")])
    ///     .require_scopes(["agent:execute"])
    ///     .skill_scopes("records", ["data:pii"])
    ///     .v0_3_json();
    /// assert_eq!(json["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["tokenUrl"], "https://auth.example.org/token");
    /// assert_eq!(json["security"], serde_json::json!([{"mtls": [], "oauth2": ["agent:execute"]}]));
    /// assert_eq!(json["skills"][1]["security"], serde_json::json!([{"mtls": [], "oauth2": ["agent:execute", "data:pii"]}]));
    /// ```
    pub fn oauth2(
        mut self,
        token_url: impl Into<String>,
        scopes: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Self {
        let declaration = self.oauth.get_or_insert_with(OAuthDeclaration::default);
        declaration.token_url = token_url.into();
        declaration.scopes = scopes
            .into_iter()
            .map(|(scope, description)| (scope.into(), description.into()))
            .collect();
        self
    }

    /// The scopes every call needs (with [`oauth2`](Self::oauth2)).
    ///
    /// # Example
    /// See [`oauth2`](Self::oauth2).
    pub fn require_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let declaration = self.oauth.get_or_insert_with(OAuthDeclaration::default);
        declaration.required = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The scopes a call of `skill` needs besides the card's (with [`oauth2`](Self::oauth2)).
    ///
    /// # Example
    /// See [`oauth2`](Self::oauth2).
    pub fn skill_scopes(
        mut self,
        skill: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let declaration = self.oauth.get_or_insert_with(OAuthDeclaration::default);
        declaration
            .by_skill
            .insert(skill.into(), scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The security requirements (alternatives) of the card, or of `skill`: one per accepted
    /// credential, each with the `oauth2` scopes needed when the scheme is declared.
    fn requirements(&self, skill: Option<&str>) -> Vec<HashMap<String, Vec<String>>> {
        let scopes = self.oauth.as_ref().map(|oauth| {
            let mut scopes = oauth.required.clone();
            if let Some(extra) = skill.and_then(|skill| oauth.by_skill.get(skill)) {
                for scope in extra {
                    if !scopes.contains(scope) {
                        scopes.push(scope.clone());
                    }
                }
            }
            scopes
        });
        self.auth
            .schemes()
            .iter()
            .map(|name| {
                let mut requirement = HashMap::from([((*name).to_owned(), Vec::new())]);
                if let Some(scopes) = &scopes {
                    requirement.insert(OAUTH_SCHEME.to_owned(), scopes.clone());
                }
                requirement
            })
            .collect()
    }

    /// The `oauth2` scheme's client credentials flow, when declared.
    fn oauth_flow(&self) -> Option<ClientCredentialsOAuthFlow> {
        let oauth = self.oauth.as_ref()?;
        Some(ClientCredentialsOAuthFlow {
            token_url: oauth.token_url.clone(),
            scopes: oauth.scopes.iter().cloned().collect(),
            refresh_url: None,
        })
    }

    /// Which credentials the card declares (mutual TLS by default).
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::a2a::{AgentAuth, MtlsAgentCard};
    ///
    /// let json = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").auth(AgentAuth::Both).to_json();
    /// assert_eq!(json["securitySchemes"]["jwt"]["httpAuthSecurityScheme"]["bearerFormat"], "JWT");
    /// assert_eq!(json["securitySchemes"]["jwt"]["type"], "http");
    /// assert_eq!(json["security"], serde_json::json!([{"mtls": []}, {"jwt": []}]));
    /// ```
    pub fn auth(mut self, auth: AgentAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the description.
    ///
    /// # Example
    /// ```
    /// let card = spiffe_mtls::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").description("says hello");
    /// assert_eq!(card.v1_0().description, "says hello");
    /// ```
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the agent's version (`1.0.0` by default).
    ///
    /// # Example
    /// ```
    /// let card = spiffe_mtls::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").version("2.1.0");
    /// assert_eq!(card.v1_0().version, "2.1.0");
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Names the server's SPIFFE ID: in the scheme's description and in the card's
    /// [SPIFFE profile](SpiffeProfile) (an extension in `capabilities.extensions` with the
    /// trust domain and the ID). A card [signed](Self::signed_by) without one declares the
    /// signer's ID.
    ///
    /// # Example
    /// See [`MtlsAgentCard`].
    pub fn server_id(mut self, id: SpiffeId) -> Self {
        self.server_id = Some(id);
        self
    }

    /// Adds the URL of the trust domain's SPIFFE bundle endpoint to the SPIFFE profile.
    ///
    /// # Example
    /// ```
    /// let json = spiffe_mtls::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a")
    ///     .server_id("spiffe://example.org/a".parse()?)
    ///     .bundle_endpoint("https://example.org:8443/")
    ///     .v1_0_json();
    /// let params = &json["capabilities"]["extensions"][0]["params"];
    /// assert_eq!(params["bundleEndpointUrl"], "https://example.org:8443/");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bundle_endpoint(mut self, url: impl Into<String>) -> Self {
        self.bundle_endpoint = Some(url.into());
        self
    }

    /// Signs every document [`document`](Self::document) makes (and so every card
    /// [`agent_router`](super::agent_router) serves) with `signer`'s current SVID: an A2A
    /// `AgentCardSignature` whose header carries the SVID chain. Give the signer the source
    /// and hint of the TLS server, so that the card is signed by the identity clients meet in
    /// the handshake.
    ///
    /// # Example
    /// See [`CardSigner`].
    pub fn signed_by(mut self, signer: CardSigner) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }

    /// The SPIFFE profile the card declares: with the server's ID, when given.
    fn profile(&self) -> Option<SpiffeProfile> {
        let profile = SpiffeProfile::new(self.server_id.clone()?);
        Some(match &self.bundle_endpoint {
            Some(url) => profile.bundle_endpoint_url(url.clone()),
            None => profile,
        })
    }

    /// The card document of `dialect`, signed when a signer is set (see
    /// [`signed_by`](Self::signed_by)).
    ///
    /// # Errors
    /// [`CardSignatureError`] when the signer has no SVID, the card declares a server ID
    /// that is not the signer's, or signing fails.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::a2a::{CardDialect, MtlsAgentCard};
    /// let card = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a");
    /// assert_eq!(card.document(CardDialect::V0_3)?, card.v0_3_json());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn document(&self, dialect: CardDialect) -> Result<Value, CardSignatureError> {
        let Some(signer) = &self.signer else {
            return Ok(self.unsigned(dialect));
        };
        let mut mismatch = None;
        let signed = signer.sign_built(|signer_id| match &self.server_id {
            Some(declared) if declared != signer_id => {
                mismatch = Some((declared.clone(), signer_id.clone()));
                Value::Null
            }
            Some(_) => self.unsigned(dialect),
            None => self.clone().server_id(signer_id.clone()).unsigned(dialect),
        });
        if let Some((declared, signer)) = mismatch {
            return Err(CardSignatureError::DeclaredIdNotSigner {
                declared: Box::new(declared),
                signer: Box::new(signer),
            });
        }
        signed
    }

    fn unsigned(&self, dialect: CardDialect) -> Value {
        match dialect {
            CardDialect::V1_0 => self.v1_0_json(),
            CardDialect::V0_3 => self.v0_3_json(),
            CardDialect::Both => self.to_json(),
        }
    }

    /// Declares streaming (`SendStreamingMessage`, `message/stream`) or not (declared by
    /// default).
    ///
    /// # Example
    /// ```
    /// let card = spiffe_mtls::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").streaming(false);
    /// assert_eq!(card.v1_0().capabilities.streaming, Some(false));
    /// ```
    pub fn streaming(mut self, streaming: bool) -> Self {
        self.streaming = streaming;
        self
    }

    /// Adds a skill: its ID (the policy's `[routes.<id>]`), a name and a description.
    ///
    /// # Example
    /// See [`MtlsAgentCard`].
    pub fn skill(
        mut self,
        id: impl Into<String>,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        self.skills
            .push((id.into(), name.into(), description.into()));
        self
    }

    /// The JSON-RPC endpoint.
    ///
    /// # Example
    /// ```
    /// let card = spiffe_mtls::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a");
    /// assert_eq!(card.url(), "https://127.0.0.1:1/a2a");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The scheme's description.
    fn scheme_description(&self) -> String {
        let mut text = "Mutual TLS with X.509-SVIDs (SPIFFE): the client presents its SVID \
                        and verifies the server's against its trust domain bundle"
            .to_owned();
        if let Some(id) = &self.server_id {
            text.push_str(&format!("; the server is {id}"));
        }
        text
    }

    /// The bearer scheme's description.
    fn jwt_description(&self) -> String {
        let mut text = "A JWT-SVID (SPIFFE) in Authorization: Bearer".to_owned();
        if let Some(id) = &self.server_id {
            text.push_str(&format!(", for the audience {id}"));
        }
        text
    }

    /// The v1.0 schemes the card declares, by name.
    fn v1_0_schemes(&self) -> HashMap<String, SecurityScheme> {
        self.auth
            .schemes()
            .iter()
            .map(|name| {
                let scheme = if *name == MTLS_SCHEME {
                    SecurityScheme::MutualTls(MutualTlsSecurityScheme {
                        description: Some(self.scheme_description()),
                    })
                } else {
                    SecurityScheme::HttpAuth(HttpAuthSecurityScheme {
                        scheme: "Bearer".to_owned(),
                        description: Some(self.jwt_description()),
                        bearer_format: Some("JWT".to_owned()),
                    })
                };
                ((*name).to_owned(), scheme)
            })
            .chain(self.oauth_flow().map(|flow| {
                let scheme = SecurityScheme::OAuth2(OAuth2SecurityScheme {
                    flows: OAuthFlows::ClientCredentials(flow),
                    description: Some(
                        "OAuth 2.0 client credentials; the client authenticates with its \
                         SPIFFE SVID (no client secret)"
                            .to_owned(),
                    ),
                    oauth2_metadata_url: None,
                });
                (OAUTH_SCHEME.to_owned(), scheme)
            }))
            .collect()
    }

    /// The v0.3 schemes and the `security` list (one alternative per scheme).
    fn v0_3_schemes(&self) -> (Value, Value) {
        let mut schemes = serde_json::Map::new();
        for name in self.auth.schemes() {
            let scheme = if *name == MTLS_SCHEME {
                json!({ "type": "mutualTLS", "description": self.scheme_description() })
            } else {
                json!({
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": self.jwt_description(),
                })
            };
            schemes.insert((*name).to_owned(), scheme);
        }
        if let Some(flow) = self.oauth_flow() {
            schemes.insert(
                OAUTH_SCHEME.to_owned(),
                json!({
                    "type": "oauth2",
                    "description": "OAuth 2.0 client credentials; the client authenticates \
                                    with its SPIFFE SVID (no client secret)",
                    "flows": {"clientCredentials": {"tokenUrl": flow.token_url, "scopes": flow.scopes}},
                }),
            );
        }
        (
            Value::Object(schemes),
            v0_3_security(&self.requirements(None)),
        )
    }

    /// The v1.0 card, as the SDK's type.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::a2a::{MtlsAgentCard, protocol::SecurityScheme};
    ///
    /// let card = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").skill("echo", "Echo", "echoes").v1_0();
    /// assert!(matches!(card.security_schemes.unwrap()["mtls"], SecurityScheme::MutualTls(_)));
    /// assert_eq!(card.skills[0].security_requirements.as_ref().unwrap()[0]["mtls"], Vec::<String>::new());
    /// ```
    pub fn v1_0(&self) -> AgentCard {
        AgentCard {
            name: self.name.clone(),
            description: self.description.clone(),
            version: self.version.clone(),
            supported_interfaces: vec![AgentInterface::new(
                self.url.clone(),
                TRANSPORT_PROTOCOL_JSONRPC,
            )],
            capabilities: AgentCapabilities {
                streaming: Some(self.streaming),
                push_notifications: Some(false),
                extensions: self
                    .profile()
                    .and_then(|profile| serde_json::from_value(profile.to_extension()).ok())
                    .map(|extension| vec![extension]),
                extended_agent_card: None,
            },
            default_input_modes: vec!["text/plain".to_owned()],
            default_output_modes: vec!["text/plain".to_owned()],
            skills: self
                .skills
                .iter()
                .map(|(id, name, description)| AgentSkill {
                    id: id.clone(),
                    name: name.clone(),
                    description: description.clone(),
                    tags: vec![id.clone()],
                    examples: None,
                    input_modes: None,
                    output_modes: None,
                    security_requirements: Some(self.requirements(Some(id))),
                })
                .collect(),
            provider: None,
            documentation_url: None,
            icon_url: None,
            security_schemes: Some(self.v1_0_schemes()),
            security_requirements: Some(self.requirements(None)),
            signatures: None,
        }
    }

    /// The v1.0 card as JSON.
    ///
    /// # Example
    /// ```
    /// let json = spiffe_mtls::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").v1_0_json();
    /// assert_eq!(json["securityRequirements"][0]["schemes"]["mtls"]["list"], serde_json::json!([]));
    /// assert!(json.get("url").is_none());
    /// ```
    pub fn v1_0_json(&self) -> Value {
        serde_json::to_value(self.v1_0()).unwrap_or(Value::Null)
    }

    /// The v0.3 card as JSON.
    ///
    /// # Example
    /// ```
    /// let json = spiffe_mtls::a2a::MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a").v0_3_json();
    /// assert_eq!(json["protocolVersion"], "0.3.0");
    /// assert_eq!(json["preferredTransport"], "JSONRPC");
    /// assert_eq!(json["securitySchemes"]["mtls"]["type"], "mutualTLS");
    /// assert!(json.get("supportedInterfaces").is_none());
    /// ```
    pub fn v0_3_json(&self) -> Value {
        let (schemes, security) = self.v0_3_schemes();
        let skills: Vec<Value> = self
            .skills
            .iter()
            .map(|(id, name, description)| {
                json!({
                    "id": id,
                    "name": name,
                    "description": description,
                    "tags": [id],
                    "security": v0_3_security(&self.requirements(Some(id))),
                })
            })
            .collect();
        let mut capabilities = json!({ "streaming": self.streaming, "pushNotifications": false });
        if let (Some(profile), Some(members)) = (self.profile(), capabilities.as_object_mut()) {
            members.insert("extensions".to_owned(), json!([profile.to_extension()]));
        }
        json!({
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "url": self.url,
            "protocolVersion": V0_3,
            "preferredTransport": TRANSPORT_PROTOCOL_JSONRPC,
            "capabilities": capabilities,
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": skills,
            "securitySchemes": schemes,
            "security": security,
        })
    }

    /// Both dialects in one document: the v1.0 card plus the v0.3 fields.
    ///
    /// # Example
    /// See [`MtlsAgentCard`].
    pub fn to_json(&self) -> Value {
        let mut card = self.v1_0_json();
        let legacy = self.v0_3_json();
        let Some(object) = card.as_object_mut() else {
            return legacy;
        };
        for key in ["url", "protocolVersion", "preferredTransport", "security"] {
            object.insert(key.to_owned(), legacy[key].clone());
        }
        // Each scheme carries both dialects' members: v1.0's wrapper object and v0.3's fields.
        if let (Some(schemes), Some(legacy_schemes)) = (
            object
                .get_mut("securitySchemes")
                .and_then(Value::as_object_mut),
            legacy["securitySchemes"].as_object(),
        ) {
            for (name, legacy_scheme) in legacy_schemes {
                if let (Some(scheme), Some(fields)) = (
                    schemes.get_mut(name).and_then(Value::as_object_mut),
                    legacy_scheme.as_object(),
                ) {
                    for (field, value) in fields {
                        scheme.insert(field.clone(), value.clone());
                    }
                }
            }
        }
        if let Some(skills) = object.get_mut("skills").and_then(Value::as_array_mut) {
            for (index, skill) in skills.iter_mut().enumerate() {
                if let Some(skill) = skill.as_object_mut() {
                    skill.insert(
                        "security".to_owned(),
                        legacy["skills"][index]["security"].clone(),
                    );
                }
            }
        }
        card
    }
}

/// Requirements in the v0.3 shape: `[{"mtls": [], "oauth2": ["scope"]}]`.
fn v0_3_security(requirements: &[HashMap<String, Vec<String>>]) -> Value {
    Value::Array(
        requirements
            .iter()
            .map(|requirement| {
                Value::Object(
                    requirement
                        .iter()
                        .map(|(name, scopes)| (name.clone(), json!(scopes)))
                        .collect(),
                )
            })
            .collect(),
    )
}
