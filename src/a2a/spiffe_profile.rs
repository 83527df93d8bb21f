//! The SPIFFE profile of the `mtls` scheme: an A2A extension, declared in the card's
//! `capabilities.extensions`, that says which SPIFFE identity serves the agent.
//!
//! A2A's mutual TLS scheme carries a description only, so a card alone cannot tell a client
//! which trust domain or SPIFFE ID to require. The profile does, in members that are never
//! empty (the A2A canonicalization drops empty members, which a signature then does not
//! cover):
//!
//! ```json
//! {"uri": "urn:spiffe-mtls:a2a:spiffe-profile:v1",
//!  "description": "...",
//!  "params": {"trustDomain": "example.org",
//!             "spiffeId": "spiffe://example.org/agent/server",
//!             "bundleEndpointUrl": "https://example.org:8443/bundle"}}
//! ```
//!
//! `bundleEndpointUrl` is optional and informational: where the trust domain publishes its
//! SPIFFE bundle (a client still decides for itself whether to trust what it serves).
//! A client believes the profile only in a card whose signature verifies
//! ([`verify_card`](super::verify_card)) by exactly the SPIFFE ID the profile declares.

use serde_json::{Value, json};

use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The URI of the SPIFFE profile extension (this project's, version 1).
pub const SPIFFE_PROFILE_URI: &str = "urn:spiffe-mtls:a2a:spiffe-profile:v1";

/// What the SPIFFE profile of a card declares.
///
/// # Example
/// ```
/// use spiffe_mtls::a2a::{MtlsAgentCard, SpiffeProfile};
///
/// let card = MtlsAgentCard::new("a", "https://127.0.0.1:1/a2a")
///     .server_id("spiffe://example.org/agent".parse()?)
///     .to_json();
/// let profile = SpiffeProfile::from_card(&card)?.expect("declared");
/// assert_eq!(profile.spiffe_id().to_string(), "spiffe://example.org/agent");
/// assert_eq!(profile.trust_domain().as_str(), "example.org");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeProfile {
    spiffe_id: SpiffeId,
    bundle_endpoint_url: Option<String>,
}

/// Why a card's SPIFFE profile cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The card declares the profile more than once (which one would be meant?).
    #[error("the card declares the SPIFFE profile ({SPIFFE_PROFILE_URI}) more than once")]
    Repeated,
    /// A member is missing or is not what it must be.
    #[error("the card's SPIFFE profile: {0}")]
    Invalid(String),
}

impl SpiffeProfile {
    /// The profile of the agent whose SPIFFE ID is `spiffe_id`.
    ///
    /// # Example
    /// See [`SpiffeProfile`].
    pub fn new(spiffe_id: SpiffeId) -> Self {
        Self {
            spiffe_id,
            bundle_endpoint_url: None,
        }
    }

    /// Adds where the trust domain's SPIFFE bundle is published.
    ///
    /// # Example
    /// ```
    /// use spiffe_mtls::a2a::SpiffeProfile;
    /// let profile = SpiffeProfile::new("spiffe://example.org/a".parse()?)
    ///     .bundle_endpoint_url("https://example.org/bundle");
    /// assert_eq!(profile.to_extension()["params"]["bundleEndpointUrl"], "https://example.org/bundle");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn bundle_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.bundle_endpoint_url = Some(url.into()).filter(|url| !url.is_empty());
        self
    }

    /// The agent's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The agent's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.spiffe_id.trust_domain()
    }

    /// Where the trust domain's bundle is published, if the card says.
    pub fn bundle_endpoint(&self) -> Option<&str> {
        self.bundle_endpoint_url.as_deref()
    }

    /// The extension object (`AgentExtension` of both card dialects).
    pub fn to_extension(&self) -> Value {
        let mut params = json!({
            "trustDomain": self.trust_domain().as_str(),
            "spiffeId": self.spiffe_id.to_string(),
        });
        if let (Some(url), Some(params)) = (&self.bundle_endpoint_url, params.as_object_mut()) {
            params.insert("bundleEndpointUrl".to_owned(), json!(url));
        }
        json!({
            "uri": SPIFFE_PROFILE_URI,
            "description": "SPIFFE identity of this agent: callers connect with mutual TLS \
                            and require this SPIFFE ID, verified against the bundle of its \
                            trust domain; the card is signed by the same identity",
            // No `"required": false`: absent means not required, and the protobuf-based
            // SDKs drop a false `required` before they canonicalize, so a signature over a
            // card holding one would not verify there.
            "params": params,
        })
    }

    /// The profile a card (either dialect, as JSON) declares in `capabilities.extensions`:
    /// `None` when it declares none.
    ///
    /// # Errors
    /// [`ProfileError`] when it is declared twice, or a member is missing, not a string, not
    /// a SPIFFE ID or trust domain, or the trust domain is not the SPIFFE ID's.
    ///
    /// # Example
    /// See [`SpiffeProfile`].
    pub fn from_card(card: &Value) -> Result<Option<Self>, ProfileError> {
        let extensions = card
            .pointer("/capabilities/extensions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut declared = extensions.iter().filter(|extension| {
            extension.get("uri").and_then(Value::as_str) == Some(SPIFFE_PROFILE_URI)
        });
        let Some(extension) = declared.next() else {
            return Ok(None);
        };
        if declared.next().is_some() {
            return Err(ProfileError::Repeated);
        }
        let invalid = |reason: &str| ProfileError::Invalid(reason.to_owned());
        let params = extension
            .get("params")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("no \"params\" object"))?;
        let text = |name: &str| -> Result<&str, ProfileError> {
            params
                .get(name)
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .ok_or_else(|| ProfileError::Invalid(format!("no \"{name}\" string")))
        };
        let spiffe_id: SpiffeId = text("spiffeId")?
            .parse()
            .map_err(|e| ProfileError::Invalid(format!("spiffeId: {e}")))?;
        let trust_domain: TrustDomain = text("trustDomain")?
            .parse()
            .map_err(|e| ProfileError::Invalid(format!("trustDomain: {e}")))?;
        if &trust_domain != spiffe_id.trust_domain() {
            return Err(ProfileError::Invalid(format!(
                "trustDomain {trust_domain} is not the trust domain of {spiffe_id}"
            )));
        }
        // Empty, it would not be covered by a signature (the A2A canonicalization drops it).
        let bundle_endpoint_url = match params.get("bundleEndpointUrl") {
            None => None,
            Some(Value::String(url)) if !url.is_empty() => Some(url.clone()),
            Some(_) => return Err(invalid("bundleEndpointUrl is not a non-empty string")),
        };
        Ok(Some(Self {
            spiffe_id,
            bundle_endpoint_url,
        }))
    }
}
