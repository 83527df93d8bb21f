//! Which rustls crypto provider to use when the caller names none.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

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
