//! X.509-SVIDs: a certificate chain and its private key, checked against the X.509-SVID
//! profile when loaded.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::SectionKind;
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use crate::pem::{self, PemError};
use crate::spiffe_id::SpiffeId;
use crate::verify::{ParsedCert, VerifyError, check_leaf, check_signing};

/// Why a certificate chain and key are not a usable X.509-SVID.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate input is not readable PEM.
    #[error("certificates: {0}")]
    CertificatesPem(PemError),
    /// The key input is not readable PEM.
    #[error("private key: {0}")]
    KeyPem(PemError),
    /// No certificate was found.
    #[error("no certificates found")]
    NoCertificates,
    /// No private key was found.
    #[error("no private key found")]
    NoPrivateKey,
    /// More than one private key was found.
    #[error("more than one private key found")]
    SeveralPrivateKeys,
    /// The private key cannot be loaded by the crypto provider.
    #[error("private key is corrupt or of an unsupported type: {0}")]
    CorruptKey(String),
    /// The private key does not belong to the leaf certificate.
    #[error("leaf certificate does not match the private key")]
    KeyMismatch,
    /// The chain breaks an X.509-SVID rule.
    #[error(transparent)]
    Invalid(#[from] VerifyError),
}

/// An X.509-SVID: the chain (leaf first) and the leaf's private key.
///
/// Loading checks the leaf and signing-certificate profile, and that the key belongs to the
/// leaf; it does not check time (see [`X509Svid::expires_at`]).
///
/// # Example
/// ```no_run
/// use spiffe_mtls::X509Svid;
///
/// let svid = X509Svid::from_pem(&std::fs::read("svid.0.pem")?, &std::fs::read("svid.0.key")?)?;
/// println!("{} until {:?}", svid.spiffe_id(), svid.expires_at());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct X509Svid {
    spiffe_id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: SecretKey,
    certified: Arc<CertifiedKey>,
    not_after: i64,
    hint: Option<String>,
}

impl PartialEq for X509Svid {
    /// Same ID, chain, key and hint (the loaded signing key follows from the key).
    fn eq(&self, other: &Self) -> bool {
        self.spiffe_id == other.spiffe_id
            && self.chain == other.chain
            && self.key == other.key
            && self.hint == other.hint
    }
}

impl Eq for X509Svid {}

/// The private key in DER, cloned explicitly (key types do not derive `Clone`).
#[derive(PartialEq, Eq)]
struct SecretKey(PrivateKeyDer<'static>);

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        Self(self.0.clone_key())
    }
}

impl X509Svid {
    /// Loads an SVID from PEM: `certs` holds the chain, leaf first; `key` the private key
    /// (PKCS#8, PKCS#1 or SEC1). Both may be the same document holding both.
    ///
    /// # Errors
    /// [`SvidError`] naming what is missing or wrong.
    pub fn from_pem(certs: &[u8], key: &[u8]) -> Result<Self, SvidError> {
        let chain = pem::certificates(certs).map_err(SvidError::CertificatesPem)?;
        let mut keys = pem::sections(key)
            .map_err(SvidError::KeyPem)?
            .into_iter()
            .filter_map(|(kind, der)| match kind {
                SectionKind::PrivateKey => Some(PrivateKeyDer::from(PrivatePkcs8KeyDer::from(der))),
                SectionKind::RsaPrivateKey => Some(PrivatePkcs1KeyDer::from(der).into()),
                SectionKind::EcPrivateKey => Some(PrivateSec1KeyDer::from(der).into()),
                _ => None,
            });
        let key = keys.next();
        if keys.next().is_some() {
            return Err(SvidError::SeveralPrivateKeys);
        }
        Self::from_der(chain, key.ok_or(SvidError::NoPrivateKey)?)
    }

    /// Builds an SVID from DER, with the default crypto provider (see
    /// [`crate::crypto::default_provider`]) checking the key.
    ///
    /// # Errors
    /// As [`X509Svid::from_pem`].
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let provider = crate::crypto::default_provider().ok_or(VerifyError::NoCryptoProvider)?;
        Self::from_der_with_provider(chain, key, &provider)
    }

    /// Builds an SVID from DER, with `provider` loading the key to check it.
    ///
    /// # Errors
    /// As [`X509Svid::from_pem`].
    pub fn from_der_with_provider(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: &CryptoProvider,
    ) -> Result<Self, SvidError> {
        if chain.is_empty() {
            return Err(SvidError::NoCertificates);
        }
        let parsed = ParsedCert::parse_chain(&chain)?;
        let spiffe_id = check_leaf(&parsed[0])?;
        for cert in &parsed[1..] {
            check_signing(cert)?;
        }
        let leaf_spki = parsed[0].x509.public_key().raw;
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| SvidError::CorruptKey(e.to_string()))?;
        let public_key = signing_key.public_key().ok_or_else(|| {
            SvidError::CorruptKey("the provider cannot derive its public key".into())
        })?;
        if public_key.as_ref() != leaf_spki {
            return Err(SvidError::KeyMismatch);
        }
        let not_after = parsed[0].x509.validity().not_after.timestamp();
        drop(parsed);
        let certified = Arc::new(CertifiedKey::new(chain.clone(), signing_key));
        Ok(Self {
            spiffe_id,
            chain,
            key: SecretKey(key),
            certified,
            not_after,
            hint: None,
        })
    }

    /// Sets the Workload API hint (an operator's label such as `internal`).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The SPIFFE ID of the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The private key of the leaf.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key.0
    }

    /// The chain with its signing key loaded, ready for a rustls certificate resolver.
    ///
    /// Built once when the SVID is loaded, by the crypto provider that checked the key.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified
    }

    /// The Workload API hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// When the leaf expires (its notAfter).
    pub fn expires_at(&self) -> SystemTime {
        crate::verify::system_time_from_unix(self.not_after)
    }

    /// Whether the leaf has expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now > self.expires_at()
    }
}

impl fmt::Debug for X509Svid {
    /// Never shows key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.spiffe_id)
            .field("chain_len", &self.chain.len())
            .field("expires_at", &self.expires_at())
            .field("hint", &self.hint)
            .finish_non_exhaustive()
    }
}
