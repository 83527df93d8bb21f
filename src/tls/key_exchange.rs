//! The key-exchange groups a config offers, in an order chosen on purpose.
//!
//! The key exchange decides most of a handshake's cost, and a provider's default order is
//! not stable: rustls 0.23.48 put P-384 first for ring, making every handshake about four
//! times slower. So every config this crate builds sets its order itself:
//!
//! 1. X25519MLKEM768 (post-quantum hybrid), when the provider has it (aws-lc-rs does, ring
//!    does not) and [`PostQuantum::Prefer`] (the default);
//! 2. X25519;
//! 3. P-256 (secp256r1);
//! 4. P-384 (secp384r1);
//! 5. any other group of the provider, in the provider's order.
//!
//! Only groups the provider has are offered: a provider without X25519 (a FIPS build, say)
//! is not given one. A server picks, in this order, the first group the client sent a key
//! share for (else asks the client for the first one they share); a client sends its key
//! share for the first group (and, with X25519MLKEM768 first, one for X25519 too).
//! [`PostQuantum`] and `key_exchange_groups` on every builder change the order.

use std::fmt;
use std::str::FromStr;

use rustls::NamedGroup;
use rustls::crypto::SupportedKxGroup;

use super::TlsConfigError;

/// Whether a config offers post-quantum hybrid key exchange (X25519MLKEM768, as ghostunnel
/// and SPIRE negotiate by default). Set with `post_quantum` on every config builder, and
/// with `--post-quantum` on `spiffe-mtls proxy`.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use spiffe_mtls::rustls::{ServerConfig, crypto::CryptoProvider};
/// use spiffe_mtls::source::StaticSource;
/// use spiffe_mtls::tls::{self, PostQuantum};
/// use spiffe_mtls::authorize;
///
/// /// Lets in only clients that do X25519MLKEM768 (an aws-lc-rs rustls, Go 1.24 or later,
/// /// ...); `provider` is one that has it, such as
/// /// `rustls::crypto::aws_lc_rs::default_provider()`.
/// fn config(
///     source: StaticSource,
///     provider: Arc<CryptoProvider>,
/// ) -> Result<ServerConfig, Box<dyn std::error::Error>> {
///     let config = tls::server_config(source, authorize::member_of(["example.org".parse()?]))
///         .crypto_provider(provider)
///         .post_quantum(PostQuantum::Require)
///         .build()?;
///     Ok(config)
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PostQuantum {
    /// X25519MLKEM768 first when the provider has it (aws-lc-rs), then the classical groups;
    /// with a provider without it (ring), the classical groups alone. The default.
    #[default]
    Prefer,
    /// Classical groups only (X25519, P-256, P-384): the cheapest handshake.
    Off,
    /// Post-quantum hybrid groups only: a peer without one fails the handshake, and so does
    /// TLS 1.2, which has none. Building fails with a provider that has none (ring).
    Require,
}

impl PostQuantum {
    /// The flag value: `prefer`, `off` or `require`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefer => "prefer",
            Self::Off => "off",
            Self::Require => "require",
        }
    }
}

impl fmt::Display for PostQuantum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A post-quantum setting that is none of `prefer`, `off`, `require`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("post-quantum setting {0:?}: expected prefer, off or require")]
pub struct ParsePostQuantumError(String);

impl FromStr for PostQuantum {
    type Err = ParsePostQuantumError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "prefer" => Ok(Self::Prefer),
            "off" => Ok(Self::Off),
            "require" => Ok(Self::Require),
            other => Err(ParsePostQuantumError(other.to_owned())),
        }
    }
}

/// Whether `group` carries a post-quantum KEM (ML-KEM alone or in a hybrid).
pub(crate) fn is_post_quantum(group: NamedGroup) -> bool {
    matches!(u16::from(group), 0x0200..=0x0202 | 0x11eb..=0x11ed)
}

/// The classical groups in the order this crate prefers them.
const CLASSICAL: [NamedGroup; 3] = [
    NamedGroup::X25519,
    NamedGroup::secp256r1,
    NamedGroup::secp384r1,
];

/// The groups a config offers, most preferred first.
///
/// `explicit` (the builder's `key_exchange_groups`) is taken as given; else `provider`'s
/// groups are put in this crate's order (see the module docs). `post_quantum` then drops the
/// post-quantum groups (`Off`) or keeps only them (`Require`).
///
/// # Errors
/// [`TlsConfigError::NoPostQuantumGroup`] when `Require` leaves nothing,
/// [`TlsConfigError::NoKeyExchangeGroup`] when nothing is left otherwise.
pub(crate) fn groups(
    provider: &[&'static dyn SupportedKxGroup],
    explicit: Option<&[&'static dyn SupportedKxGroup]>,
    post_quantum: PostQuantum,
) -> Result<Vec<&'static dyn SupportedKxGroup>, TlsConfigError> {
    let ordered = match explicit {
        Some(groups) => groups.to_vec(),
        None => preferred(provider, post_quantum),
    };
    let kept: Vec<_> = ordered
        .into_iter()
        .filter(|group| match post_quantum {
            PostQuantum::Prefer => true,
            PostQuantum::Off => !is_post_quantum(group.name()),
            PostQuantum::Require => is_post_quantum(group.name()),
        })
        .collect();
    match (kept.is_empty(), post_quantum) {
        (false, _) => Ok(kept),
        (true, PostQuantum::Require) => Err(TlsConfigError::NoPostQuantumGroup),
        (true, _) => Err(TlsConfigError::NoKeyExchangeGroup),
    }
}

/// `provider`'s groups in this crate's order: X25519MLKEM768 (unless `Off`), X25519, P-256,
/// P-384, then the rest in the provider's order.
fn preferred(
    provider: &[&'static dyn SupportedKxGroup],
    post_quantum: PostQuantum,
) -> Vec<&'static dyn SupportedKxGroup> {
    let rank = |group: NamedGroup| -> usize {
        if group == NamedGroup::X25519MLKEM768 && post_quantum != PostQuantum::Off {
            return 0;
        }
        CLASSICAL
            .iter()
            .position(|classical| *classical == group)
            .map_or(CLASSICAL.len() + 1, |index| index + 1)
    };
    let mut ordered = provider.to_vec();
    // Stable: groups of equal rank (the rest) keep the provider's order.
    ordered.sort_by_key(|group| rank(group.name()));
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(groups: &[&'static dyn SupportedKxGroup]) -> Vec<NamedGroup> {
        groups.iter().map(|group| group.name()).collect()
    }

    #[test]
    fn post_quantum_parses_and_prints_its_flag_values() {
        for value in [PostQuantum::Prefer, PostQuantum::Off, PostQuantum::Require] {
            assert_eq!(value.to_string().parse::<PostQuantum>(), Ok(value));
        }
        assert_eq!(
            "on".parse::<PostQuantum>().unwrap_err().to_string(),
            "post-quantum setting \"on\": expected prefer, off or require"
        );
        assert_eq!(PostQuantum::default(), PostQuantum::Prefer);
    }

    #[test]
    fn post_quantum_groups_are_told_apart() {
        assert!(is_post_quantum(NamedGroup::X25519MLKEM768));
        assert!(is_post_quantum(NamedGroup::secp256r1MLKEM768));
        assert!(is_post_quantum(NamedGroup::MLKEM768));
        assert!(is_post_quantum(NamedGroup::Unknown(0x11ed)));
        assert!(!is_post_quantum(NamedGroup::X25519));
        assert!(!is_post_quantum(NamedGroup::secp384r1));
    }

    /// In-memory handshakes between this crate's configs, with certificates made on the
    /// spot: the group each side ends up with.
    mod handshake {
        use std::sync::Arc;
        use std::time::Duration;

        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose, SanType,
        };
        use rustls::crypto::CryptoProvider;
        use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
        use rustls::{ClientConfig, ClientConnection, NamedGroup, ServerConfig, ServerConnection};

        use crate::source::{StaticSource, X509Context};
        use crate::tls::{self, TlsConfigError};
        use crate::{X509Bundle, X509Svid, authorize};

        const SERVER: &str = "spiffe://example.org/server";
        const CLIENT: &str = "spiffe://example.org/client";

        fn params(san: &str) -> CertificateParams {
            let mut params = CertificateParams::default();
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - Duration::from_secs(3600);
            params.not_after = now + Duration::from_secs(3600);
            params.subject_alt_names = vec![SanType::URI(san.try_into().unwrap())];
            params
        }

        /// A source holding a server and a client SVID of `example.org` (hints `server`,
        /// `client`) and the bundle of their root.
        pub(super) fn source(provider: &CryptoProvider) -> StaticSource {
            let mut root = params("spiffe://example.org");
            root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let root_key = KeyPair::generate().unwrap();
            let root_der = root.self_signed(&root_key).unwrap().der().clone();
            let issuer = Issuer::from_params(&root, &root_key);
            let svid = |id: &str, hint: &str| {
                let mut leaf = params(id);
                leaf.is_ca = IsCa::ExplicitNoCa;
                leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                leaf.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                let key = KeyPair::generate().unwrap();
                let der = leaf.signed_by(&key, &issuer).unwrap().der().clone();
                let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
                X509Svid::from_der_with_provider(vec![der], key, provider)
                    .unwrap()
                    .with_hint(hint)
            };
            let bundle = X509Bundle::new(
                "example.org".parse().unwrap(),
                [CertificateDer::from(root_der.to_vec())],
            )
            .unwrap();
            let context = X509Context::new(
                vec![svid(SERVER, "server"), svid(CLIENT, "client")],
                [bundle].into_iter().collect(),
            )
            .unwrap();
            StaticSource::new(context)
        }

        /// A server config of `source` as `edit` sets it up.
        pub(super) fn server(
            source: &Arc<StaticSource>,
            edit: impl FnOnce(tls::ServerConfigBuilder) -> tls::ServerConfigBuilder,
        ) -> Result<ServerConfig, TlsConfigError> {
            edit(
                tls::server_config(Arc::clone(source), authorize::id(CLIENT.parse().unwrap()))
                    .svid_hint("server"),
            )
            .build()
        }

        /// A client config of `source` as `edit` sets it up.
        pub(super) fn client(
            source: &Arc<StaticSource>,
            edit: impl FnOnce(tls::ClientConfigBuilder) -> tls::ClientConfigBuilder,
        ) -> Result<ClientConfig, TlsConfigError> {
            edit(
                tls::client_config(Arc::clone(source), authorize::id(SERVER.parse().unwrap()))
                    .svid_hint("client"),
            )
            .build()
        }

        /// One full handshake in memory: the group both sides negotiated, or why it failed.
        pub(super) fn negotiated(
            server: ServerConfig,
            client: ClientConfig,
        ) -> Result<NamedGroup, rustls::Error> {
            let name = ServerName::try_from("server.example.org").unwrap();
            let mut client = ClientConnection::new(Arc::new(client), name)?;
            let mut server = ServerConnection::new(Arc::new(server))?;
            let mut buffer = Vec::new();
            for _ in 0..10 {
                if !client.is_handshaking() && !server.is_handshaking() {
                    break;
                }
                buffer.clear();
                while client.wants_write() {
                    client.write_tls(&mut buffer).unwrap();
                }
                let mut input = &buffer[..];
                while !input.is_empty() {
                    server.read_tls(&mut input).unwrap();
                }
                server.process_new_packets()?;
                buffer.clear();
                while server.wants_write() {
                    server.write_tls(&mut buffer).unwrap();
                }
                let mut input = &buffer[..];
                while !input.is_empty() {
                    client.read_tls(&mut input).unwrap();
                }
                client.process_new_packets()?;
            }
            assert!(!client.is_handshaking() && !server.is_handshaking());
            let ours = client.negotiated_key_exchange_group().unwrap().name();
            let theirs = server.negotiated_key_exchange_group().unwrap().name();
            assert_eq!(ours, theirs);
            Ok(ours)
        }
    }

    // rustls 0.23.48 deprecates ring's provider (it has no post-quantum group).
    #[cfg(feature = "ring")]
    #[allow(deprecated)]
    mod ring {
        use std::sync::Arc;

        use rustls::crypto::CryptoProvider;
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};

        use super::*;
        use crate::source::X509Source;

        /// rustls 0.23.48's default order for ring.
        const P384_FIRST: &[&dyn SupportedKxGroup] = &[SECP384R1, X25519, SECP256R1];

        #[test]
        fn a_provider_order_with_p384_first_becomes_x25519_p256_p384() {
            for post_quantum in [PostQuantum::Prefer, PostQuantum::Off] {
                let ordered = groups(P384_FIRST, None, post_quantum).unwrap();
                assert_eq!(
                    names(&ordered),
                    [
                        NamedGroup::X25519,
                        NamedGroup::secp256r1,
                        NamedGroup::secp384r1
                    ]
                );
            }
        }

        #[test]
        fn only_the_providers_groups_are_offered() {
            let ordered = groups(&[SECP384R1, SECP256R1], None, PostQuantum::Prefer).unwrap();
            assert_eq!(
                names(&ordered),
                [NamedGroup::secp256r1, NamedGroup::secp384r1]
            );
        }

        #[test]
        fn explicit_groups_are_taken_as_given() {
            let ordered = groups(P384_FIRST, Some(P384_FIRST), PostQuantum::Prefer).unwrap();
            assert_eq!(names(&ordered), names(P384_FIRST));
        }

        fn provider() -> Arc<CryptoProvider> {
            Arc::new(rustls::crypto::ring::default_provider())
        }

        #[test]
        fn a_default_handshake_negotiates_x25519() {
            let source = Arc::new(handshake::source(&provider()));
            let group = handshake::negotiated(
                handshake::server(&source, |b| b.crypto_provider(provider())).unwrap(),
                handshake::client(&source, |b| b.crypto_provider(provider())).unwrap(),
            );
            assert_eq!(group.unwrap(), NamedGroup::X25519);
            // And with no provider named: the `ring` feature's (the process has no default).
            if CryptoProvider::get_default().is_none() && cfg!(not(feature = "aws-lc-rs")) {
                let group = handshake::negotiated(
                    handshake::server(&source, |b| b).unwrap(),
                    handshake::client(&source, |b| b).unwrap(),
                );
                assert_eq!(group.unwrap(), NamedGroup::X25519);
            }
        }

        #[test]
        fn a_provider_with_p384_first_still_negotiates_x25519() {
            // rustls 0.23.48's ring default, whatever version this build resolved.
            let p384_first = || {
                Arc::new(CryptoProvider {
                    kx_groups: P384_FIRST.to_vec(),
                    ..rustls::crypto::ring::default_provider()
                })
            };
            let source = Arc::new(handshake::source(&provider()));
            let server = handshake::server(&source, |b| b.crypto_provider(p384_first())).unwrap();
            let kx: Vec<_> = server
                .crypto_provider()
                .kx_groups
                .iter()
                .map(|g| g.name())
                .collect();
            assert_eq!(
                kx,
                [
                    NamedGroup::X25519,
                    NamedGroup::secp256r1,
                    NamedGroup::secp384r1
                ]
            );
            let client = handshake::client(&source, |b| b.crypto_provider(p384_first())).unwrap();
            assert_eq!(
                handshake::negotiated(server, client).unwrap(),
                NamedGroup::X25519
            );
        }

        #[test]
        fn every_mode_offers_x25519_first() {
            let source = Arc::new(handshake::source(&provider()));
            let p384_first = Arc::new(CryptoProvider {
                kx_groups: P384_FIRST.to_vec(),
                ..rustls::crypto::ring::default_provider()
            });
            let first = |provider: &Arc<CryptoProvider>| provider.kx_groups[0].name();
            let any = crate::authorize::any;
            let svid = source.x509_context().unwrap().default_svid().clone();
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(
                    source
                        .x509_context()
                        .unwrap()
                        .bundles()
                        .iter()
                        .next()
                        .unwrap()
                        .roots()
                        .next()
                        .unwrap()
                        .clone(),
                )
                .unwrap();
            let servers = [
                crate::tls::tls_server_config(Arc::clone(&source))
                    .crypto_provider(Arc::clone(&p384_first))
                    .build()
                    .unwrap(),
                crate::tls::mtls_web_server_config(
                    Arc::clone(svid.certified_key()),
                    Arc::clone(&source),
                    any(),
                )
                .crypto_provider(Arc::clone(&p384_first))
                .build()
                .unwrap(),
            ];
            for server in servers {
                assert_eq!(first(server.crypto_provider()), NamedGroup::X25519);
            }
            let clients = [
                crate::tls::tls_client_config(Arc::clone(&source), any())
                    .crypto_provider(Arc::clone(&p384_first))
                    .build()
                    .unwrap(),
                crate::tls::mtls_web_client_config(Arc::clone(&source), roots)
                    .crypto_provider(Arc::clone(&p384_first))
                    .build()
                    .unwrap(),
            ];
            for client in clients {
                assert_eq!(first(client.crypto_provider()), NamedGroup::X25519);
            }
        }

        #[test]
        fn a_group_chosen_by_the_caller_is_negotiated() {
            let source = Arc::new(handshake::source(&provider()));
            let p384 = |b: crate::tls::ServerConfigBuilder| {
                b.crypto_provider(provider())
                    .key_exchange_groups([SECP384R1])
            };
            let group = handshake::negotiated(
                handshake::server(&source, p384).unwrap(),
                handshake::client(&source, |b| b.crypto_provider(provider())).unwrap(),
            );
            assert_eq!(group.unwrap(), NamedGroup::secp384r1);
        }

        #[test]
        fn requiring_post_quantum_from_ring_is_refused() {
            let source = Arc::new(handshake::source(&provider()));
            let built = handshake::server(&source, |b| {
                b.crypto_provider(provider())
                    .post_quantum(PostQuantum::Require)
            });
            assert!(matches!(built, Err(TlsConfigError::NoPostQuantumGroup)));
            let error = groups(P384_FIRST, None, PostQuantum::Require).unwrap_err();
            assert!(matches!(error, TlsConfigError::NoPostQuantumGroup));
            assert_eq!(
                error.to_string(),
                "post-quantum key exchange required, but the crypto provider has no \
                 post-quantum group (X25519MLKEM768 needs the aws-lc-rs provider)"
            );
            assert!(matches!(
                groups(P384_FIRST, Some(&[]), PostQuantum::Off),
                Err(TlsConfigError::NoKeyExchangeGroup)
            ));
        }
    }

    #[cfg(feature = "aws-lc-rs")]
    mod aws_lc_rs {
        use std::sync::Arc;

        use rustls::crypto::CryptoProvider;
        use rustls::crypto::aws_lc_rs::kx_group::{
            SECP256R1, SECP256R1MLKEM768, SECP384R1, X25519, X25519MLKEM768,
        };

        use super::*;

        fn provider() -> Arc<CryptoProvider> {
            Arc::new(rustls::crypto::aws_lc_rs::default_provider())
        }

        #[test]
        fn a_default_handshake_negotiates_x25519mlkem768() {
            let source = Arc::new(handshake::source(&provider()));
            let group = handshake::negotiated(
                handshake::server(&source, |b| b.crypto_provider(provider())).unwrap(),
                handshake::client(&source, |b| b.crypto_provider(provider())).unwrap(),
            );
            assert_eq!(group.unwrap(), NamedGroup::X25519MLKEM768);
            if CryptoProvider::get_default().is_none() && cfg!(not(feature = "ring")) {
                let group = handshake::negotiated(
                    handshake::server(&source, |b| b).unwrap(),
                    handshake::client(&source, |b| b).unwrap(),
                );
                assert_eq!(group.unwrap(), NamedGroup::X25519MLKEM768);
            }
        }

        #[test]
        fn post_quantum_off_negotiates_x25519() {
            let source = Arc::new(handshake::source(&provider()));
            let off = |b: crate::tls::ClientConfigBuilder| {
                b.crypto_provider(provider()).post_quantum(PostQuantum::Off)
            };
            let group = handshake::negotiated(
                handshake::server(&source, |b| b.crypto_provider(provider())).unwrap(),
                handshake::client(&source, off).unwrap(),
            );
            assert_eq!(group.unwrap(), NamedGroup::X25519);
        }

        #[test]
        fn a_server_that_requires_post_quantum_refuses_a_classical_client() {
            let source = Arc::new(handshake::source(&provider()));
            let require = |b: crate::tls::ServerConfigBuilder| {
                b.crypto_provider(provider())
                    .post_quantum(PostQuantum::Require)
            };
            let off = |b: crate::tls::ClientConfigBuilder| {
                b.crypto_provider(provider()).post_quantum(PostQuantum::Off)
            };
            let refused = handshake::negotiated(
                handshake::server(&source, require).unwrap(),
                handshake::client(&source, off).unwrap(),
            );
            assert!(
                matches!(
                    refused,
                    Err(rustls::Error::PeerIncompatible(
                        rustls::PeerIncompatible::NoKxGroupsInCommon
                    ))
                ),
                "{refused:?}"
            );
            let group = handshake::negotiated(
                handshake::server(&source, require).unwrap(),
                handshake::client(&source, |b| b.crypto_provider(provider())).unwrap(),
            );
            assert_eq!(group.unwrap(), NamedGroup::X25519MLKEM768);
        }

        /// rustls' default for aws-lc-rs without `prefer-post-quantum`: the hybrid last.
        const HYBRID_LAST: &[&dyn SupportedKxGroup] = &[
            X25519,
            SECP256R1,
            SECP384R1,
            SECP256R1MLKEM768,
            X25519MLKEM768,
        ];

        #[test]
        fn the_hybrid_goes_first_unless_off() {
            let ordered = groups(HYBRID_LAST, None, PostQuantum::Prefer).unwrap();
            assert_eq!(
                names(&ordered),
                [
                    NamedGroup::X25519MLKEM768,
                    NamedGroup::X25519,
                    NamedGroup::secp256r1,
                    NamedGroup::secp384r1,
                    NamedGroup::secp256r1MLKEM768,
                ]
            );
            let off = groups(HYBRID_LAST, None, PostQuantum::Off).unwrap();
            assert_eq!(
                names(&off),
                [
                    NamedGroup::X25519,
                    NamedGroup::secp256r1,
                    NamedGroup::secp384r1
                ]
            );
            let required = groups(HYBRID_LAST, None, PostQuantum::Require).unwrap();
            assert_eq!(
                names(&required),
                [NamedGroup::X25519MLKEM768, NamedGroup::secp256r1MLKEM768]
            );
        }
    }
}
