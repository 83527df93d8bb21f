//! Which rustls crypto provider to use when the caller names none.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::crypto::hash::{Hash, HashAlgorithm};

/// The process default provider if one is installed, else the provider of the enabled
/// `ring` feature, else that of the `aws-lc-rs` feature; `None` without any.
pub fn default_provider() -> Option<Arc<CryptoProvider>> {
    if let Some(provider) = CryptoProvider::get_default() {
        return Some(Arc::clone(provider));
    }
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; it
    // stays the lean choice here, with its key-exchange order set in `tls::key_exchange`.
    #[cfg(feature = "ring")]
    #[allow(deprecated)]
    return Some(Arc::new(rustls::crypto::ring::default_provider()));
    #[cfg(all(feature = "aws-lc-rs", not(feature = "ring")))]
    return Some(Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    #[allow(unreachable_code)]
    None
}

/// SHA-256 of `bytes`, by the hash of the crypto provider (see [`default_provider`]): audit
/// evidence and hash chains use it, so the core needs no hashing crate of its own. `None`
/// without a provider.
pub fn sha256(bytes: &[u8]) -> Option<[u8; 32]> {
    static SHA256: OnceLock<Option<&'static dyn Hash>> = OnceLock::new();
    let hash = SHA256.get_or_init(|| {
        default_provider()?
            .cipher_suites
            .iter()
            .filter_map(|suite| suite.tls13())
            .map(|suite| suite.common.hash_provider)
            .find(|hash| hash.algorithm() == HashAlgorithm::SHA256)
    });
    hash.and_then(|hash| hash.hash(bytes).as_ref().try_into().ok())
}
