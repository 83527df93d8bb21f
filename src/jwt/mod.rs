//! JWT-SVIDs (the SPIFFE JWT-SVID specification): bearer identity for agents behind proxies
//! and load balancers, where mutual TLS does not reach end to end.
//!
//! - [`JwtSvidValidator`] validates a token for an audience against the [`JwtBundleSet`],
//!   choosing the key by `kid` from the bundle of the trust domain in `sub` only; every rule of
//!   the specification is a [`JwtError`] variant naming it.
//! - [`JwtBundle`] reads the JWT keys of a JWK Set or SPIFFE bundle document.
//! - [`JwtSigner`] mints tokens (the dev server's issuer, tests).
//! - Sources: [`JwtSource`] (a Workload API: bundles streamed, tokens cached per audience set
//!   and refreshed at half their lifetime), [`JwtBundleFiles`] (`<trust-domain>.jwks` files),
//!   [`StaticJwtBundles`].
//!
//! The rules are this crate's; the signatures are checked by the rustls crypto provider's
//! algorithms (the same that verify X.509-SVIDs), and ES512 by RustCrypto's `p521` where the
//! provider has no P-521 (ring).

mod algorithm;
mod bundle;
mod der;
pub(crate) mod json_object;
mod key;
mod signer;
mod source;
pub(crate) mod token;
mod validate;
#[cfg(feature = "workload-api")]
mod workload_source;

pub use algorithm::Algorithm;
pub use bundle::{JwtBundle, JwtBundleError, JwtBundleSet};
pub use key::JwtKey;
pub use signer::{JwtSignError, JwtSigner};
pub use source::{
    JwtBundleFiles, JwtBundleSource, JwtSourceError, StaticJwtBundles, jwt_bundle_file_name,
    jwt_bundle_file_trust_domain,
};
pub use validate::{
    DEFAULT_MAX_TOKEN_BYTES, JwtError, JwtSvid, JwtSvidValidator, MAX_NUMERIC_DATE,
};
#[cfg(feature = "workload-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
pub use workload_source::{CachedJwtSvid, JwtSource, MAX_CACHED_AUDIENCE_SETS};
