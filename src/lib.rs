//! # spiffe-mtls
//!
//! SPIFFE workload identity and mutual TLS for Rust services and AI agents.
//!
//! This crate answers one question exactly: *is this certificate chain a valid X.509-SVID of a
//! trust domain we trust, and is its SPIFFE ID allowed?*, and asks it at every handshake of
//! rustls configs that follow rotating SVIDs and bundles.
//!
//! - [`SpiffeId`] and [`TrustDomain`] parse as strictly as the SPIFFE ID specification says
//!   (an upper-case scheme or trust domain is rejected, not folded).
//! - [`X509Bundle`] and [`BundleSet`] hold the roots of each trust domain, from PEM or a SPIFFE
//!   bundle document.
//! - [`SvidVerifier`] enforces every MUST of the X.509-SVID specification and RFC 5280 path
//!   validation against the bundle of the leaf's own trust domain only.
//! - [`X509Svid`] loads an SVID (chain and private key) and checks it the same way.
//! - [`authorize`] decides which verified SPIFFE IDs are allowed: per connection, per route and
//!   per A2A skill, in code or from a TOML [`Policy`] file.
//! - [`source`] keeps a workload's current SVIDs and bundles: from a Workload API (a SPIRE
//!   agent, the [`dev_server`]), PEM files or memory; lock-free reads, change notification,
//!   expired SVIDs never handed out.
//! - [`tls`] builds hot-reloading rustls server and client configs from a source and an
//!   authorizer; [`net`] runs them for tokio, hyper/axum, hyper-util and reqwest clients and
//!   tonic, hands the verified [`tls::PeerIdentity`] to handlers and clients, and authorizes
//!   routes per request ([`net::RoutePolicyLayer`]).
//!
//! ## Getting started
//! ```no_run
//! use spiffe_mtls::{authorize, BundleSet, SvidVerifier, TrustDomain, X509Bundle};
//! use spiffe_mtls::rustls::pki_types::{CertificateDer, UnixTime};
//!
//! # fn peer_chain() -> Vec<CertificateDer<'static>> { Vec::new() }
//! let td: TrustDomain = "example.org".parse()?;
//! let bundle = X509Bundle::parse(td.clone(), &std::fs::read("bundle.pem")?)?;
//! let bundles: BundleSet = [bundle].into_iter().collect();
//!
//! let svid = SvidVerifier::new()?.verify(&peer_chain(), &bundles, UnixTime::now())?;
//! let allowed = authorize::member_of([td]);
//! allowed.authorize(svid.spiffe_id())?;
//! println!("authenticated {}", svid.spiffe_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Features
//! The core (IDs, bundles, SVIDs, the verifier, authorizers and policy files, `tls` configs,
//! the static and file sources) needs only a crypto provider:
//! `default-features = false, features = ["ring"]` builds it from about 60 crates. The rest is
//! opt-in:
//!
//! | feature | what it adds |
//! |---|---|
//! | `ring` (default) / `aws-lc-rs` | the rustls crypto provider used when the process has no default installed |
//! | `logging` (default) | rustls and tokio-rustls log through the `log` crate |
//! | `workload-api` | `workload::WorkloadClient`, `source::WorkloadApiSource`, and the raw protocol (`workload::proto`) for mock servers |
//! | `jwt` (default) | `jwt`: JWT-SVID validation, JWT bundles, signing, sources; with `http`, `net::JwtAuthLayer` and `net::JwtBearerLayer` |
//! | `net` | `net`: tokio mutual TLS streams carrying the peer's identity |
//! | `http` (default) | `net::serve_http`: hyper/axum servers whose handlers see the peer |
//! | `grpc` (default) | `net::incoming`, `net::grpc_channel`: tonic servers and clients |
//! | `reqwest` (default) | `net::reqwest_client`: an mTLS reqwest 0.13 client |
//! | `dev-server` | `dev_server`: the SPIRE-compatible development Workload API server |
//! | `a2a` (default) | `a2a`: A2A agents over SPIFFE mutual TLS with the official A2A SDK (per-skill policy, audit, agent cards in both dialects) |
//! | `dashboard` (with `cli`) | `health`: the identity-health dashboard, `/_status` JSON and per-peer metrics as an `axum::Router` |
//! | `cli` (default) | the `spiffe-mtls` command (with `dev-server`, `workload-api`, `net`, `http`, `jwt`) |
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "a2a")]
#[cfg_attr(docsrs, doc(cfg(feature = "a2a")))]
pub mod a2a;
pub mod audit;
pub mod authorize;
pub mod bundle;
pub mod crypto;
#[cfg(any(feature = "http", feature = "workload-api"))]
mod deadline;
#[cfg(all(unix, feature = "dev-server"))]
#[cfg_attr(docsrs, doc(cfg(all(unix, feature = "dev-server"))))]
pub mod dev_server;
#[cfg(feature = "federation")]
#[cfg_attr(docsrs, doc(cfg(feature = "federation")))]
pub mod federation;
#[cfg(feature = "dashboard")]
#[cfg_attr(docsrs, doc(cfg(feature = "dashboard")))]
pub mod health;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub mod net;
#[cfg(feature = "oauth")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth")))]
pub mod oauth;
pub mod pem;
pub mod source;
pub mod spiffe_id;
pub mod svid;
pub mod tls;
pub mod verify;
pub mod workload;

/// The rustls this crate is built against, so users never mix versions.
pub use rustls;
/// The tokio-rustls this crate is built against.
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use tokio_rustls;

pub use authorize::{AuthorizeError, Authorizer, Policy, PolicyError};
pub use bundle::{BundleError, BundleSet, X509Bundle};
pub use spiffe_id::{IdError, SpiffeId, TrustDomain};
pub use svid::{SvidError, X509Svid};
pub use verify::{SvidVerifier, VerifiedSvid, VerifyError, verify_svid};

/// The README's code blocks, compiled as doc tests (they use the default features).
#[cfg(all(doctest, unix, feature = "cli", feature = "http", feature = "grpc"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
