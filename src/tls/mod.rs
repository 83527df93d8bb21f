//! Hot-reloading rustls configs for mutual TLS between SPIFFE workloads.
//!
//! A config is built once from a [source](crate::source) and an [`Authorizer`]. At every
//! handshake it presents the source's current SVID and verifies the peer against the current
//! bundle of the peer's own trust domain, then authorizes the peer's SPIFFE ID: a rotated SVID
//! or bundle is used by the next handshake, with no restart.
//!
//! ```
//! # #[cfg(all(unix, feature = "dev-server", feature = "net"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use spiffe_mtls::{authorize, tls};
//! # use spiffe_mtls::dev_server::{DevCa, SvidRequest};
//! # use spiffe_mtls::source::{StaticSource, X509Context};
//! # let ca = DevCa::new("example.org".parse()?, std::time::Duration::from_secs(3600))?;
//! # let svid = ca.issue(&SvidRequest::new("spiffe://example.org/server".parse()?, std::time::Duration::from_secs(600)))?;
//! # let source = StaticSource::new(X509Context::new(vec![svid], [ca.bundle()].into_iter().collect())?);
//!
//! // Clients of example.org only; the server presents the source's SVID.
//! let config = tls::server_config(source, authorize::member_of(["example.org".parse()?]))
//!     .alpn_protocols([b"h2".to_vec(), b"http/1.1".to_vec()])
//!     .build()?;
//! let acceptor = spiffe_mtls::tokio_rustls::TlsAcceptor::from(Arc::new(config));
//! # Ok(())
//! # }
//! # #[cfg(not(all(unix, feature = "dev-server", feature = "net")))]
//! # fn main() {}
//! ```
//!
//! Besides mutual TLS, the modes of go-spiffe's `tlsconfig`: a TLS-only client
//! ([`tls_client_config`]) and server ([`tls_server_config`]), and web modes, where one side
//! uses web PKI ([`mtls_web_server_config`], [`mtls_web_client_config`]).
//!
//! The handshake path takes no lock: the source read is an atomic pointer load, the SVID's
//! signing key and the bundles' parsed roots are prepared once per update, and a chain
//! verified before comes from a bounded cache (see `verification_cache`). Session resumption
//! is off by default, so every connection presents its certificate, proves its key and is
//! authorized; the mTLS builders' `resumption` switch turns on resumption that re-checks the
//! stored peer chain at every resumed handshake (see [`ServerConfigBuilder::resumption`]).
//! The key exchange, which decides most of a handshake's cost, is chosen here rather than
//! left to the provider's default order: X25519MLKEM768 first where the provider has it
//! (aws-lc-rs), then X25519, P-256, P-384 (see [`PostQuantum`] and the builders'
//! `key_exchange_groups`). Every decision is an audit
//! event (see [`AUDIT_TARGET`]).

pub(crate) mod audit;
mod authorized;
mod cache;
mod identity;
mod key_exchange;
mod resolver;
mod resumption;
mod table;
mod verifier;
mod web;

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

#[cfg(feature = "net")]
pub(crate) use audit::no_certificate;
pub use audit::{AUDIT_TARGET, Side};
#[cfg(all(feature = "http", feature = "jwt"))]
pub(crate) use audit::{jwt_accepted, jwt_denied};
#[cfg(all(feature = "http", feature = "jwt"))]
pub(crate) use audit::{no_evidence, with_peer};
#[cfg(feature = "http")]
pub(crate) use audit::{request_evidence, route_allowed, route_denied};
#[cfg(feature = "oauth")]
pub(crate) use audit::{token_accepted, token_denied};
pub use cache::{DEFAULT_VERIFICATION_CACHE_ENTRIES, MAX_CACHED_ENTRY_BYTES};
pub use identity::PeerIdentity;
#[cfg(feature = "a2a")]
pub(crate) use identity::leaf_spiffe_id;
pub use key_exchange::{ParsePostQuantumError, PostQuantum};
pub use modes::{
    MtlsWebClientConfigBuilder, MtlsWebServerConfigBuilder, TlsClientConfigBuilder,
    TlsServerConfigBuilder, WebCertificate, mtls_web_client_config, mtls_web_server_config,
    tls_client_config, tls_server_config,
};
#[cfg(feature = "net")]
pub(crate) use resumption::accept_resumed;
pub use resumption::{DEFAULT_TICKET_LIFETIME, MAX_TICKET_LIFETIME};

use crate::authorize::Authorizer;
use crate::source::X509Source;
use resolver::SvidResolver;
use verifier::{PeerCheck, SpiffeClientVerifier, SpiffeServerVerifier};

/// Why a config could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No crypto provider is installed or enabled by a feature.
    #[error("no rustls crypto provider: install one or enable the `ring` or `aws-lc-rs` feature")]
    NoCryptoProvider,
    /// rustls refused the settings (a protocol version the provider cannot do, say).
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The web-PKI server verifier could not be built (an empty root store, say).
    #[error("web PKI server verifier: {0}")]
    WebPki(#[from] rustls::client::VerifierBuilderError),
    /// [`PostQuantum::Require`] with a crypto provider that has no post-quantum group (ring),
    /// or with `key_exchange_groups` that name none.
    #[error(
        "post-quantum key exchange required, but the crypto provider has no post-quantum \
         group (X25519MLKEM768 needs the aws-lc-rs provider)"
    )]
    NoPostQuantumGroup,
    /// No key-exchange group is left to offer (`key_exchange_groups` given none, or only
    /// post-quantum ones with [`PostQuantum::Off`]).
    #[error("no key-exchange group to offer")]
    NoKeyExchangeGroup,
    /// Session resumption was asked for, but no ticket encryption is built in (it comes with
    /// the `ring` or `aws-lc-rs` feature).
    #[error(
        "session resumption needs the `ring` or `aws-lc-rs` feature (its session tickets are          encrypted with that provider's AEAD)"
    )]
    NoTicketSealer,
    /// A ticket lifetime of zero or over [`MAX_TICKET_LIFETIME`] (7 days).
    #[error("ticket lifetime {0:?}: it must be between 1 s and 7 days")]
    TicketLifetime(std::time::Duration),
}

/// Settings every builder shares.
#[derive(Debug)]
struct Settings {
    source: Arc<dyn X509Source>,
    provider: Option<Arc<CryptoProvider>>,
    alpn: Vec<Vec<u8>>,
    versions: &'static [&'static SupportedProtocolVersion],
    hint: Option<String>,
    cache: bool,
    cache_entries: usize,
    post_quantum: PostQuantum,
    kx_groups: Option<Vec<&'static dyn SupportedKxGroup>>,
}

impl Settings {
    fn new(source: Arc<dyn X509Source>) -> Self {
        Self {
            source,
            provider: None,
            alpn: Vec::new(),
            versions: rustls::DEFAULT_VERSIONS,
            hint: None,
            cache: true,
            cache_entries: DEFAULT_VERIFICATION_CACHE_ENTRIES,
            post_quantum: PostQuantum::default(),
            kx_groups: None,
        }
    }

    /// The caller's provider (else the default one) with its key-exchange groups in the
    /// order [`key_exchange::groups`] chooses.
    fn provider(&self) -> Result<Arc<CryptoProvider>, TlsConfigError> {
        let provider = self
            .provider
            .clone()
            .or_else(crate::crypto::default_provider)
            .ok_or(TlsConfigError::NoCryptoProvider)?;
        let kx_groups = key_exchange::groups(
            &provider.kx_groups,
            self.kx_groups.as_deref(),
            self.post_quantum,
        )?;
        let unchanged = kx_groups.len() == provider.kx_groups.len()
            && kx_groups
                .iter()
                .zip(&provider.kx_groups)
                .all(|(ours, theirs)| ours.name() == theirs.name());
        if unchanged {
            return Ok(provider);
        }
        Ok(Arc::new(CryptoProvider {
            kx_groups,
            ..CryptoProvider::clone(&provider)
        }))
    }

    /// The SPIFFE check of the peer, deciding on `side` by `authorizer`.
    fn check(
        &self,
        provider: &CryptoProvider,
        side: Side,
        authorizer: &Authorizer,
    ) -> Arc<PeerCheck> {
        Arc::new(PeerCheck::new(
            Arc::clone(&self.source),
            authorizer.clone(),
            provider,
            side,
            self.cache,
            self.cache_entries,
        ))
    }

    /// The resolver presenting the source's SVID.
    fn resolver(&self) -> Arc<SvidResolver> {
        Arc::new(SvidResolver::new(
            Arc::clone(&self.source),
            self.hint.clone(),
        ))
    }

    fn server_builder(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, TlsConfigError> {
        Ok(ServerConfig::builder_with_provider(provider).with_protocol_versions(self.versions)?)
    }

    fn client_builder(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, TlsConfigError> {
        Ok(ClientConfig::builder_with_provider(provider).with_protocol_versions(self.versions)?)
    }

    /// ALPN, and no resumption: no session cache, no tickets.
    fn finish_server(self, mut config: ServerConfig) -> ServerConfig {
        config.alpn_protocols = self.alpn;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config
    }

    /// ALPN, and no resumption.
    fn finish_client(self, mut config: ClientConfig) -> ClientConfig {
        config.alpn_protocols = self.alpn;
        config.resumption = rustls::client::Resumption::disabled();
        config
    }
}

/// The setters of every builder.
macro_rules! connection_setters {
    () => {
        /// The ALPN protocols to offer, most preferred first (`h2`, `http/1.1`, ...).
        #[must_use]
        pub fn alpn_protocols(mut self, protocols: impl IntoIterator<Item = Vec<u8>>) -> Self {
            self.settings.alpn = protocols.into_iter().collect();
            self
        }

        /// The crypto provider (default: the process default, else the `ring` or `aws-lc-rs`
        /// feature's). Its key-exchange groups are offered in this crate's order, not its
        /// own: see [`Self::post_quantum`] and [`Self::key_exchange_groups`].
        #[must_use]
        pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
            self.settings.provider = Some(provider);
            self
        }

        /// The TLS versions (default: TLS 1.3 and 1.2).
        #[must_use]
        pub fn protocol_versions(
            mut self,
            versions: &'static [&'static SupportedProtocolVersion],
        ) -> Self {
            self.settings.versions = versions;
            self
        }

        /// Whether post-quantum hybrid key exchange (X25519MLKEM768) is offered first
        /// ([`PostQuantum::Prefer`](crate::tls::PostQuantum::Prefer), the default; only a
        /// provider that has it offers it: aws-lc-rs, not ring), left out
        /// ([`PostQuantum::Off`](crate::tls::PostQuantum::Off)) or required
        /// ([`PostQuantum::Require`](crate::tls::PostQuantum::Require): a peer without it
        /// fails the handshake, and `build` fails with a provider without it). The classical
        /// groups follow in this order: X25519, P-256, P-384; see
        /// [`PostQuantum`](crate::tls::PostQuantum) for what each costs.
        #[must_use]
        pub fn post_quantum(mut self, post_quantum: $crate::tls::PostQuantum) -> Self {
            self.settings.post_quantum = post_quantum;
            self
        }

        /// The key-exchange groups to offer, most preferred first, taken as given instead of
        /// this crate's order (X25519MLKEM768 where the provider has it, X25519, P-256,
        /// P-384; a provider's own default order is not used, as it changes between rustls
        /// releases). [`Self::post_quantum`] still applies: `Off` drops the post-quantum
        /// groups, `Require` keeps only them. To keep a provider's order, pass its
        /// `kx_groups`.
        #[must_use]
        pub fn key_exchange_groups(
            mut self,
            groups: impl IntoIterator<Item = &'static dyn ::rustls::crypto::SupportedKxGroup>,
        ) -> Self {
            self.settings.kx_groups = Some(groups.into_iter().collect());
            self
        }
    };
}

/// The setter of builders that verify the peer's SVID.
macro_rules! cache_setter {
    () => {
        /// Whether a chain already verified against the current bundles is taken from a
        /// cache (default: yes). A hit needs the same certificates, an unchanged source and a
        /// time within every validity period of the path; it skips the chain's parsing and
        /// signature checks. The peer's handshake signature and the authorization are
        /// checked every time. Size: [`Self::verification_cache_entries`].
        #[must_use]
        pub fn verification_cache(mut self, enabled: bool) -> Self {
            self.settings.cache = enabled;
            self
        }

        /// How many verified chains the cache holds: at least as many as distinct peers
        /// reconnect (default [`DEFAULT_VERIFICATION_CACHE_ENTRIES`](crate::tls::DEFAULT_VERIFICATION_CACHE_ENTRIES), 4,096; rounded up to
        /// a multiple of 8, at most 2^20). The table that hands a verified peer's ID to the
        /// audit (on even with the cache off) has the same size.
        ///
        /// Memory is bounded whatever peers send: an entry copies at most
        /// [`MAX_CACHED_ENTRY_BYTES`](crate::tls::MAX_CACHED_ENTRY_BYTES) (4 KiB) of certificates and SPIFFE ID (a larger chain
        /// is verified every time, never cached) plus a header of at most 256 bytes and 16
        /// bytes of table, allocator overhead aside. With the default size that is at most
        /// 17.1 MiB per table, and 2.9 MiB for typical SVIDs (a 533-byte leaf, no
        /// intermediates). Lookups and inserts take no lock; a full table makes room by
        /// evicting entries not hit lately first.
        #[must_use]
        pub fn verification_cache_entries(mut self, entries: usize) -> Self {
            self.settings.cache_entries = entries;
            self
        }
    };
}

/// The setter of builders that present an SVID.
macro_rules! hint_setter {
    () => {
        /// Presents the SVID with this Workload API hint instead of the default SVID.
        #[must_use]
        pub fn svid_hint(mut self, hint: impl Into<String>) -> Self {
            self.settings.hint = Some(hint.into());
            self
        }
    };
}

macro_rules! shared_setters {
    () => {
        connection_setters!();
        cache_setter!();
        hint_setter!();
    };
}

// After the setter macros, which it uses.
mod modes;

/// Builds a [`ServerConfig`] that requires client certificates; see [`server_config`].
#[derive(Debug)]
pub struct ServerConfigBuilder {
    settings: Settings,
    authorizer: Authorizer,
    client_certificate_optional: bool,
    resumption: Option<std::time::Duration>,
}

impl ServerConfigBuilder {
    shared_setters!();

    /// Asks for a client certificate without requiring one: a client that presents an SVID
    /// is verified and authorized as always (a bad or unauthorized one still fails the
    /// handshake), one that presents none connects anonymously. For servers that accept
    /// another credential too (a JWT-SVID bearer token with `net::JwtAuthLayer`); serve
    /// them with `net::HttpServer::allow_anonymous_clients`.
    #[must_use]
    pub fn client_certificate_optional(mut self) -> Self {
        self.client_certificate_optional = true;
        self
    }

    /// Turns on session resumption (off by default), with tickets usable for `lifetime` at
    /// most ([`DEFAULT_TICKET_LIFETIME`] is a good start). A resumed handshake skips the
    /// peer's signature but not its checks: a ticket is tied to this config and to its
    /// generation (a rotated SVID or bundle, or a reloaded policy, retires every ticket), and
    /// the peer's stored chain is checked again as in a full handshake — current bundle,
    /// validity, authorizer — before the handshake completes; a ticket that fails falls back
    /// to a full handshake, with an audit event. See the crate's README, "Session
    /// resumption".
    #[must_use]
    pub fn resumption(mut self, lifetime: std::time::Duration) -> Self {
        self.resumption = Some(lifetime);
        self
    }

    /// The config. Resumption is off unless [`Self::resumption`] turned it on: no session
    /// cache, no tickets.
    ///
    /// # Errors
    /// [`TlsConfigError`] without a crypto provider or with versions it cannot do.
    pub fn build(self) -> Result<ServerConfig, TlsConfigError> {
        let lifetime = self.resumption.map(ticket_lifetime).transpose()?;
        let provider = self.settings.provider()?;
        let check = self
            .settings
            .check(&provider, Side::Server, &self.authorizer);
        let config = self
            .settings
            .server_builder(provider)?
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier {
                check: Arc::clone(&check),
                mandatory: !self.client_certificate_optional,
            }))
            .with_cert_resolver(self.settings.resolver());
        let mut config = self.settings.finish_server(config);
        if let Some(lifetime) = lifetime {
            config.ticketer = Arc::new(resumption::SessionTickets::new(check, lifetime)?);
            config.send_tls13_tickets = 2;
        }
        Ok(config)
    }
}

/// Builds a [`ClientConfig`] that presents an SVID; see [`client_config`].
#[derive(Debug)]
pub struct ClientConfigBuilder {
    settings: Settings,
    authorizer: Authorizer,
    resumption: Option<std::time::Duration>,
}

impl ClientConfigBuilder {
    shared_setters!();

    /// Turns on session resumption (off by default): TLS 1.3 tickets kept by this config,
    /// offered for `lifetime` at most and dropped when the config generation changes (a
    /// rotated SVID or bundle, a reloaded policy). A connection made with `net::connect`
    /// re-checks the server's chain of a resumed session (current bundle, validity,
    /// authorizer) before it returns; used without `net::connect`, the config keeps the
    /// generation and lifetime checks only. See [`ServerConfigBuilder::resumption`].
    #[must_use]
    pub fn resumption(mut self, lifetime: std::time::Duration) -> Self {
        self.resumption = Some(lifetime);
        self
    }

    /// The config. Resumption is off unless [`Self::resumption`] turned it on.
    ///
    /// # Errors
    /// As [`ServerConfigBuilder::build`].
    pub fn build(self) -> Result<ClientConfig, TlsConfigError> {
        let lifetime = self.resumption.map(ticket_lifetime).transpose()?;
        let provider = self.settings.provider()?;
        let check = self
            .settings
            .check(&provider, Side::Client, &self.authorizer);
        let config = self
            .settings
            .client_builder(provider)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier(Arc::clone(&check))))
            .with_client_cert_resolver(self.settings.resolver());
        let mut config = self.settings.finish_client(config);
        if let Some(lifetime) = lifetime {
            #[cfg(feature = "net")]
            resumption::register_client(&config.client_auth_cert_resolver, &check);
            let cache = resumption::SessionCache::new(check, lifetime);
            config.resumption = rustls::client::Resumption::store(Arc::new(cache))
                .tls12_resumption(rustls::client::Tls12Resumption::Disabled);
        }
        Ok(config)
    }
}

/// A ticket lifetime the builders take.
fn ticket_lifetime(lifetime: std::time::Duration) -> Result<std::time::Duration, TlsConfigError> {
    if lifetime.as_secs() == 0 || lifetime > MAX_TICKET_LIFETIME {
        return Err(TlsConfigError::TicketLifetime(lifetime));
    }
    Ok(lifetime)
}

/// A server config: presents `source`'s SVID, requires a client SVID that verifies against
/// the client's trust domain bundle in `source`, and lets in the IDs `authorizer` allows.
pub fn server_config(
    source: impl X509Source + 'static,
    authorizer: Authorizer,
) -> ServerConfigBuilder {
    ServerConfigBuilder {
        settings: Settings::new(Arc::new(source)),
        authorizer,
        client_certificate_optional: false,
        resumption: None,
    }
}

/// A client config: presents `source`'s SVID and accepts a server whose SVID verifies against
/// its trust domain bundle in `source` and whose ID `authorizer` allows. The server name
/// given to rustls is used for SNI only.
pub fn client_config(
    source: impl X509Source + 'static,
    authorizer: Authorizer,
) -> ClientConfigBuilder {
    ClientConfigBuilder {
        settings: Settings::new(Arc::new(source)),
        authorizer,
        resumption: None,
    }
}
