//! Shared test harness: a small CA built with rcgen, certificates that follow the X.509-SVID
//! profile by default, and hand-made extensions for the cases rcgen cannot express.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use spiffe_mtls::rustls::pki_types::{CertificateDer, UnixTime};
use spiffe_mtls::{BundleSet, TrustDomain, X509Bundle};
use time::macros::datetime;

/// The verification time of every test: inside the default validity below.
pub const NOW: time::OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

pub fn now() -> UnixTime {
    at(NOW)
}

pub fn at(t: time::OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.unix_timestamp() as u64))
}

fn with_validity(mut params: CertificateParams) -> CertificateParams {
    params.not_before = datetime!(2026-01-01 00:00 UTC);
    params.not_after = datetime!(2027-01-01 00:00 UTC);
    params
}

pub fn uri(value: &str) -> SanType {
    SanType::URI(value.try_into().expect("IA5 string"))
}

pub fn dns(value: &str) -> SanType {
    SanType::DnsName(value.try_into().expect("IA5 string"))
}

/// Parameters of a signing certificate that follows the profile.
pub fn ca_params(name: &str, trust_domain: &str) -> CertificateParams {
    let mut params = with_validity(CertificateParams::default());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "SPIFFE test");
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![uri(&format!("spiffe://{trust_domain}"))];
    params
}

/// Parameters of a leaf SVID that follows the profile.
pub fn leaf_params(id: &str) -> CertificateParams {
    let mut params = with_validity(CertificateParams::default());
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "SPIFFE test");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.subject_alt_names = vec![uri(id)];
    params
}

/// A CA certificate with its key.
pub struct Ca {
    pub params: CertificateParams,
    pub key: KeyPair,
    pub der: CertificateDer<'static>,
}

/// A leaf and the chain above it (without the root), with its key.
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: KeyPair,
}

impl Ca {
    /// A self-signed root of `trust_domain` following the profile.
    pub fn root(trust_domain: &str) -> Self {
        Self::root_with(trust_domain, |_| {})
    }

    /// A self-signed root with edited parameters.
    pub fn root_with(trust_domain: &str, edit: impl FnOnce(&mut CertificateParams)) -> Self {
        let mut params = ca_params(&format!("{trust_domain} root"), trust_domain);
        edit(&mut params);
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("self-signed").der().clone();
        Self { params, key, der }
    }

    pub fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// Signs `params` with a fresh key; returns the certificate and its key.
    pub fn sign(&self, params: &CertificateParams) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer()).expect("signed");
        (cert.der().clone(), key)
    }

    /// An intermediate CA below this one, with edited parameters.
    pub fn intermediate(&self, name: &str, edit: impl FnOnce(&mut CertificateParams)) -> Self {
        let mut params = ca_params(name, "example.org");
        edit(&mut params);
        let (der, key) = self.sign(&params);
        Self { params, key, der }
    }

    /// A leaf SVID for `id`, with edited parameters.
    pub fn leaf_with(&self, id: &str, edit: impl FnOnce(&mut CertificateParams)) -> Issued {
        let mut params = leaf_params(id);
        edit(&mut params);
        let (der, key) = self.sign(&params);
        Issued {
            chain: vec![der],
            key,
        }
    }

    pub fn leaf(&self, id: &str) -> Issued {
        self.leaf_with(id, |_| {})
    }

    /// The bundle of `trust_domain` holding this root.
    pub fn bundle(&self, trust_domain: &str) -> X509Bundle {
        X509Bundle::new(td(trust_domain), [self.der.clone()]).expect("bundle")
    }
}

impl Issued {
    /// Appends the chain of an intermediate.
    pub fn via(mut self, intermediate: &Ca) -> Self {
        self.chain.push(intermediate.der.clone());
        self
    }
}

pub fn td(name: &str) -> TrustDomain {
    name.parse().expect("trust domain")
}

pub fn bundles(list: impl IntoIterator<Item = X509Bundle>) -> BundleSet {
    list.into_iter().collect()
}

/// DER tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// A nameConstraints extension (critical) with URI subtrees, which rcgen cannot write.
pub fn uri_name_constraints(permitted: &[&str], excluded: &[&str]) -> CustomExtension {
    let subtrees = |tag: u8, hosts: &[&str]| -> Vec<u8> {
        if hosts.is_empty() {
            return Vec::new();
        }
        let inner: Vec<u8> = hosts
            .iter()
            .flat_map(|h| tlv(0x30, &tlv(0x86, h.as_bytes())))
            .collect();
        tlv(tag, &inner)
    };
    let mut content = subtrees(0xa0, permitted);
    content.extend(subtrees(0xa1, excluded));
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 30], tlv(0x30, &content));
    ext.set_criticality(true);
    ext
}

/// A key usage extension with only digitalSignature, criticality chosen.
pub fn key_usage_digital_signature(critical: bool) -> CustomExtension {
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 15], vec![0x03, 0x02, 0x07, 0x80]);
    ext.set_criticality(critical);
    ext
}

/// A subjectAltName extension with one URI, criticality chosen.
pub fn uri_san(value: &str, critical: bool) -> CustomExtension {
    let content = tlv(0x30, &tlv(0x86, value.as_bytes()));
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 17], content);
    ext.set_criticality(critical);
    ext
}

/// An extension nobody knows, criticality chosen.
pub fn unknown_extension(critical: bool) -> CustomExtension {
    let mut ext =
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![0x05, 0x00]);
    ext.set_criticality(critical);
    ext
}

/// The PEM of certificates.
pub fn pem(chain: &[CertificateDer<'_>]) -> String {
    use base64::Engine;
    chain
        .iter()
        .map(|der| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect()
}

/// This process's uid: the owner of a file it creates.
pub fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let file = tempfile::NamedTempFile::new().unwrap();
    file.as_file().metadata().unwrap().uid()
}
pub mod capture;
