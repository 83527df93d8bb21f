//! Property tests of every parser that reads what a peer, a file or the Workload API supplies:
//! valid input round-trips, anything else is refused, and no input panics. The fuzz targets in
//! `fuzz/` explore the same parsers for longer (see `fuzz/README.md`).
#![cfg(all(
    unix,
    feature = "dev-server",
    feature = "workload-api",
    feature = "net"
))]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine;
use proptest::collection::{btree_map, hash_map, vec};
use proptest::prelude::*;
use prost::Message;
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::pem;
use spiffe_mtls::rustls::pki_types::{CertificateDer, UnixTime};
use spiffe_mtls::source::X509Context;
use spiffe_mtls::workload::EndpointAddress;
use spiffe_mtls::workload::proto::{X509svid, X509svidResponse};
use spiffe_mtls::{
    BundleSet, IdError, Policy, PolicyError, SpiffeId, SvidVerifier, TrustDomain, X509Bundle,
    X509Svid,
};

/// 256 cases per property keeps the whole file at a few seconds in a debug build.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// ---- fixtures ----

/// Real certificates and keys, issued once.
struct Fixture {
    /// A valid SVID of `spiffe://example.org/agent/client`.
    svid: X509Svid,
    /// The bundle set that trusts it.
    bundles: BundleSet,
    /// The example.org root, DER.
    root: Vec<u8>,
    /// The root of another trust domain, partner.org, DER.
    partner_root: Vec<u8>,
    /// Well-formed certificates (roots and leaves) for the bundle round trips.
    pool: Vec<CertificateDer<'static>>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ttl = Duration::from_secs(3600);
    let ca = DevCa::new("example.org".parse().unwrap(), ttl).unwrap();
    let partner = DevCa::new("partner.org".parse().unwrap(), ttl).unwrap();
    let svid = ca
        .issue(&SvidRequest::new(
            "spiffe://example.org/agent/client".parse().unwrap(),
            ttl,
        ))
        .unwrap();
    let partner_svid = partner
        .issue(&SvidRequest::new(
            "spiffe://partner.org/agent".parse().unwrap(),
            ttl,
        ))
        .unwrap();
    Fixture {
        bundles: [ca.bundle(), partner.bundle()].into_iter().collect(),
        root: ca.root().to_vec(),
        partner_root: partner.root().to_vec(),
        pool: vec![
            ca.root().clone(),
            partner.root().clone(),
            svid.leaf().clone(),
            partner_svid.leaf().clone(),
        ],
        svid,
    }
});

fn verify(chain: &[CertificateDer<'_>]) -> Result<(), spiffe_mtls::VerifyError> {
    SvidVerifier::new()
        .unwrap()
        .verify(chain, &FIXTURE.bundles, UnixTime::now())
        .map(|_| ())
}

// ---- strategies ----

fn trust_domain_name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn path_segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("dot segment", |s| s != "." && s != "..")
}

/// A valid SPIFFE ID as (text, trust domain, path).
fn spiffe_id_parts() -> impl Strategy<Value = (String, String, String)> {
    (trust_domain_name(), vec(path_segment(), 0..6)).prop_map(|(td, segments)| {
        let path: String = segments.iter().map(|s| format!("/{s}")).collect();
        (format!("spiffe://{td}{path}"), td, path)
    })
}

/// Any text, and text that starts the way the parser looks for.
fn text_near(prefixes: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        (prop::sample::select(prefixes), any::<String>()).prop_map(|(p, s)| format!("{p}{s}")),
        (
            prop::sample::select(prefixes),
            "[a-zA-Z0-9./:@%?#\\[\\]_-]{0,40}"
        )
            .prop_map(|(p, s)| format!("{p}{s}")),
    ]
}

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    let len_bytes = len.to_be_bytes();
    match len {
        0..0x80 => out.push(len_bytes[7]),
        0x80..0x100 => out.extend([0x81, len_bytes[7]]),
        0x100..0x1_0000 => out.extend([0x82, len_bytes[6], len_bytes[7]]),
        _ => out.extend([0x83, len_bytes[5], len_bytes[6], len_bytes[7]]),
    }
    out.extend_from_slice(content);
    out
}

/// Nested tag-length-values that look like the start of a certificate, and plain bytes.
fn der_ish() -> impl Strategy<Value = Vec<u8>> {
    let primitive = (
        prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x17, 0x18, 0x86,
        ]),
        vec(any::<u8>(), 0..24),
    )
        .prop_map(|(tag, content)| tlv(tag, &content));
    let tree = primitive.prop_recursive(4, 64, 6, |inner| {
        (
            prop::sample::select(vec![0x30u8, 0x31, 0xa0, 0xa3, 0x03, 0x04]),
            vec(inner, 0..6),
        )
            .prop_map(|(tag, children)| tlv(tag, &children.concat()))
    });
    prop_oneof![tree, vec(any::<u8>(), 0..300)]
}

// ---- SPIFFE IDs and trust domains ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_spiffe_ids_round_trip((text, td, path) in spiffe_id_parts()) {
        let id = SpiffeId::new(&text).unwrap();
        prop_assert_eq!(id.to_string(), text.clone());
        prop_assert_eq!(id.trust_domain().as_str(), td);
        prop_assert_eq!(id.path(), path);
        prop_assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id.clone());
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    }

    #[test]
    fn any_string_is_a_spiffe_id_verbatim_or_refused(text in text_near(&["spiffe://", "SPIFFE://", "spiffe:/"])) {
        if let Ok(id) = SpiffeId::new(&text) {
            prop_assert_eq!(id.to_string(), text.clone());
            prop_assert!(text.starts_with("spiffe://"));
            prop_assert!(!id.trust_domain().as_str().bytes().any(|b| b.is_ascii_uppercase()));
        }
    }

    #[test]
    fn upper_case_in_trust_domain_or_scheme_is_rejected(
        (_, td, path) in spiffe_id_parts(),
        at in any::<prop::sample::Index>(),
        letter in proptest::char::range('A', 'Z'),
    ) {
        let mut upper = td.clone();
        upper.insert(at.index(td.len() + 1), letter);
        let result = SpiffeId::new(&format!("spiffe://{upper}{path}"));
        prop_assert!(matches!(result, Err(IdError::UpperCaseTrustDomain { .. })), "{:?}", result);
        let result = TrustDomain::new(&upper);
        prop_assert!(matches!(result, Err(IdError::UpperCaseTrustDomain { .. })), "{:?}", result);
        let result = SpiffeId::new(&format!("SPIFFE://{td}{path}"));
        prop_assert!(matches!(result, Err(IdError::WrongScheme { .. })), "{:?}", result);
    }

    #[test]
    fn valid_trust_domains_round_trip(td in trust_domain_name()) {
        let parsed = TrustDomain::new(&td).unwrap();
        prop_assert_eq!(parsed.as_str(), td.as_str());
        prop_assert_eq!(parsed.to_string(), td.clone());
        prop_assert_eq!(parsed.id_string(), format!("spiffe://{td}"));
        let id = SpiffeId::new(&parsed.id_string()).unwrap();
        prop_assert_eq!(id.trust_domain(), &parsed);
        prop_assert_eq!(id.path(), "");
    }

    #[test]
    fn trust_domains_are_at_most_255_bytes(td in "[a-z0-9]{250,260}") {
        prop_assert_eq!(TrustDomain::new(&td).is_ok(), td.len() <= 255);
    }

    #[test]
    fn any_string_is_a_trust_domain_verbatim_or_refused(text in text_near(&["example.org", "spiffe://"])) {
        if let Ok(td) = TrustDomain::new(&text) {
            prop_assert_eq!(td.as_str(), text.as_str());
            prop_assert!(text.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')));
        }
    }
}

// ---- endpoint addresses ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn unix_addresses_round_trip(segments in vec("[a-zA-Z0-9._ -]{1,12}", 1..5)) {
        let path: String = segments.iter().map(|s| format!("/{s}")).collect();
        let text = format!("unix://{path}");
        let address: EndpointAddress = text.parse().unwrap();
        prop_assert_eq!(&address, &EndpointAddress::Unix(PathBuf::from(&path)));
        prop_assert_eq!(address.to_string(), text);
        prop_assert_eq!(EndpointAddress::parse_lenient(&path).unwrap(), address);
    }

    #[test]
    fn tcp_addresses_round_trip(
        ip in prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u16; 8]>().prop_map(IpAddr::from),
        ],
        port in any::<u16>(),
    ) {
        let addr = SocketAddr::new(ip, port);
        let text = format!("tcp://{addr}");
        let address: EndpointAddress = text.parse().unwrap();
        prop_assert_eq!(&address, &EndpointAddress::Tcp(addr));
        prop_assert_eq!(address.to_string(), text.clone());
        prop_assert_eq!(EndpointAddress::parse_lenient(&text).unwrap(), address);
    }

    #[test]
    fn any_string_is_an_address_or_refused(text in text_near(&["unix://", "unix:///", "tcp://", "tcp://[", "/"])) {
        let strict = text.parse::<EndpointAddress>();
        if let Ok(address) = &strict {
            let again = address.to_string().parse::<EndpointAddress>();
            prop_assert_eq!(again.as_ref(), Ok(address));
            prop_assert!(text.starts_with("unix:///") || text.starts_with("tcp://"));
        }
        let lenient = EndpointAddress::parse_lenient(&text);
        if strict.is_ok() || text.starts_with('/') {
            prop_assert!(lenient.is_ok());
        }
        if strict.is_ok() {
            prop_assert_eq!(lenient, strict);
        }
    }
}

// ---- bundle documents ----

fn bundle_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..512),
        "[A-Za-z0-9+/=\n]{0,200}".prop_map(|body| {
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n").into_bytes()
        }),
        ("[A-Z ]{0,16}", "[A-Za-z0-9+/=\n-]{0,100}")
            .prop_map(|(label, body)| { format!("-----BEGIN {label}-----\n{body}").into_bytes() }),
        (
            prop::sample::select(vec!["x509-svid", "jwt-svid", "other"]),
            "[A-Za-z0-9+/=]{0,100}",
            prop::option::of("[a-z]{0,4}"),
        )
            .prop_map(|(key_use, x5c, kid)| {
                let kid = kid.map(|k| format!(r#","kid":"{k}""#)).unwrap_or_default();
                format!(r#"{{"keys":[{{"use":"{key_use}","x5c":["{x5c}"]{kid}}}]}}"#).into_bytes()
            }),
        "\\{.{0,60}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_a_bundle_or_refused(bytes in bundle_like_bytes()) {
        let td: TrustDomain = "example.org".parse().unwrap();
        let _ = X509Bundle::from_pem(td.clone(), &bytes);
        let _ = X509Bundle::from_jwks(td.clone(), &bytes);
        let _ = pem::certificates(&bytes);
        if let Ok(bundle) = X509Bundle::parse(td.clone(), &bytes) {
            prop_assert_eq!(bundle.trust_domain(), &td);
            let roots: Vec<_> = bundle.roots().cloned().collect();
            prop_assert!(X509Bundle::new(td, roots).is_ok());
        }
    }

    #[test]
    fn bundles_of_valid_certificates_round_trip(picks in vec(any::<prop::sample::Index>(), 1..6)) {
        let pool = &FIXTURE.pool;
        let certs: Vec<CertificateDer<'static>> =
            picks.iter().map(|i| pool[i.index(pool.len())].clone()).collect();
        let td: TrustDomain = "example.org".parse().unwrap();

        let pem = pem::encode_certificates(&certs);
        prop_assert_eq!(&pem::certificates(pem.as_bytes()).unwrap(), &certs);
        let bundle = X509Bundle::parse(td.clone(), pem.as_bytes()).unwrap();
        prop_assert!(bundle.roots().eq(certs.iter()));

        let keys: Vec<String> = certs
            .iter()
            .map(|c| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(c);
                format!(r#"{{"use":"x509-svid","kty":"EC","x5c":["{b64}"]}}"#)
            })
            .collect();
        let json = format!(r#"{{"keys":[{}]}}"#, keys.join(","));
        let bundle = X509Bundle::parse(td, json.as_bytes()).unwrap();
        prop_assert!(bundle.roots().eq(certs.iter()));
    }
}

// ---- policy files ----

fn policy_like_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[connect]".to_string()),
        "\\[routes\\.[a-z\"]{1,8}\\]",
        "(ids|id_prefixes|trust_domains|other) = \\[\"[a-zA-Z0-9:/._-]{0,30}\"\\]",
        "(ids|trust_domains) = .{0,20}",
        any::<String>(),
    ];
    prop_oneof![
        any::<String>(),
        vec(line, 0..8).prop_map(|lines| lines.join("\n")),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_a_policy_or_an_error_naming_a_line(text in policy_like_text()) {
        match Policy::from_toml(&text) {
            Ok(_) => {}
            Err(PolicyError::Invalid { line, .. }) => {
                prop_assert!(line >= 1 && line <= text.matches('\n').count() + 1, "line {}", line);
            }
            Err(other) => return Err(TestCaseError::fail(format!("unexpected error {other}"))),
        }
    }

    #[test]
    fn policies_allow_exactly_what_they_list(
        routes in btree_map("[a-z]{1,8}", vec(spiffe_id_parts(), 1..4), 1..4),
    ) {
        let mut text = String::new();
        for (name, ids) in &routes {
            let ids: Vec<String> = ids.iter().map(|(id, _, _)| format!("\"{id}\"")).collect();
            text.push_str(&format!("[routes.{name}]\nids = [{}]\n", ids.join(", ")));
        }
        let policy = Policy::from_toml(&text).unwrap();
        let names: Vec<&str> = policy.route_names().collect();
        prop_assert_eq!(names.len(), routes.len());
        // longer than any generated trust domain: listed nowhere
        let outsider: SpiffeId = format!("spiffe://{}/outsider", "x".repeat(41)).parse().unwrap();
        for (name, ids) in &routes {
            for (id, _, _) in ids {
                let id: SpiffeId = id.parse().unwrap();
                prop_assert!(policy.authorize_route(name, &id).is_ok());
                prop_assert!(policy.authorize_route("UNNAMED", &id).is_err());
            }
            prop_assert!(policy.authorize_route(name, &outsider).is_err());
        }
    }
}

// ---- X509SVIDResponse ----

fn svid_item() -> impl Strategy<Value = X509svid> {
    let fixture = &*FIXTURE;
    let chain: Vec<u8> = fixture
        .svid
        .chain()
        .iter()
        .flat_map(|c| c.to_vec())
        .collect();
    let key = fixture.svid.private_key().secret_der().to_vec();
    let id = fixture.svid.spiffe_id().to_string();
    let truncated = {
        let chain = chain.clone();
        any::<prop::sample::Index>().prop_map(move |i| chain[..i.index(chain.len())].to_vec())
    };
    (
        prop_oneof![3 => Just(id), 1 => any::<String>()],
        prop_oneof![3 => Just(chain), 1 => truncated, 1 => der_ish()],
        prop_oneof![3 => Just(key), 1 => vec(any::<u8>(), 0..80)],
        prop_oneof![
            3 => Just(fixture.root.clone()),
            1 => Just(Vec::new()),
            1 => der_ish(),
        ],
        prop_oneof![Just(String::new()), "[a-b]", any::<String>()],
    )
        .prop_map(
            |(spiffe_id, x509_svid, x509_svid_key, bundle, hint)| X509svid {
                spiffe_id,
                x509_svid,
                x509_svid_key,
                bundle,
                hint,
            },
        )
}

fn federated_bundles() -> impl Strategy<Value = HashMap<String, Vec<u8>>> {
    hash_map(
        prop_oneof![
            Just("spiffe://partner.org".to_string()),
            "(spiffe://)?[a-zA-Z.:/]{0,12}",
            any::<String>(),
        ],
        prop_oneof![
            3 => Just(FIXTURE.partner_root.clone()),
            1 => Just(Vec::new()),
            1 => der_ish(),
        ],
        0..3,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_not_an_x509_context(bytes in prop_oneof![vec(any::<u8>(), 0..1024), der_ish()]) {
        if let Ok(response) = X509svidResponse::decode(bytes.as_slice()) {
            prop_assert!(X509Context::try_from(response).is_err());
        }
    }

    #[test]
    fn any_fields_make_a_context_only_when_every_svid_is_valid(
        svids in vec(svid_item(), 0..3),
        federated in federated_bundles(),
    ) {
        let response = X509svidResponse { svids, crl: Vec::new(), federated_bundles: federated };
        let decoded = X509svidResponse::decode(response.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(&decoded, &response);

        let fixture = &*FIXTURE;
        let chain: Vec<u8> = fixture.svid.chain().iter().flat_map(|c| c.to_vec()).collect();
        let every_svid_valid = !response.svids.is_empty()
            && response.svids.iter().all(|s| {
                s.x509_svid == chain
                    && s.x509_svid_key == fixture.svid.private_key().secret_der()
                    && s.spiffe_id == fixture.svid.spiffe_id().to_string()
            });
        let mut hints: Vec<&str> =
            response.svids.iter().map(|s| s.hint.as_str()).filter(|h| !h.is_empty()).collect();
        let hint_count = hints.len();
        hints.sort_unstable();
        hints.dedup();
        let hints_unique = hints.len() == hint_count;

        let svid_count = response.svids.len();
        let first_id = response.svids.first().map(|s| s.spiffe_id.clone());
        if let Ok(context) = X509Context::try_from(decoded) {
            prop_assert!(every_svid_valid && hints_unique);
            prop_assert_eq!(context.svids().len(), svid_count);
            prop_assert_eq!(Some(context.default_svid().spiffe_id().to_string()), first_id);
            prop_assert!(context.bundles().get(fixture.svid.spiffe_id().trust_domain()).is_some());
        }
    }

    #[test]
    fn valid_fields_make_a_context(count in 1usize..4, federated in any::<bool>()) {
        let fixture = &*FIXTURE;
        let item = |hint: String| X509svid {
            spiffe_id: fixture.svid.spiffe_id().to_string(),
            x509_svid: fixture.svid.chain().iter().flat_map(|c| c.to_vec()).collect(),
            x509_svid_key: fixture.svid.private_key().secret_der().to_vec(),
            bundle: fixture.root.clone(),
            hint,
        };
        let mut federated_bundles = HashMap::new();
        if federated {
            federated_bundles.insert("spiffe://partner.org".to_string(), fixture.partner_root.clone());
        }
        let response = X509svidResponse {
            svids: (0..count).map(|i| item(format!("hint-{i}"))).collect(),
            crl: Vec::new(),
            federated_bundles,
        };
        let context = X509Context::try_from(response).unwrap();
        prop_assert_eq!(context.svids().len(), count);
        prop_assert_eq!(context.bundles().len(), 1 + usize::from(federated));
        prop_assert!(context.svid_by_hint("hint-0").is_some());
    }
}

// ---- the verifier ----

#[test]
fn the_fixture_chain_verifies() {
    verify(FIXTURE.svid.chain()).expect("the unmodified chain is valid");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_chains_are_refused(chain in vec(der_ish(), 0..20)) {
        let chain: Vec<CertificateDer<'_>> = chain.into_iter().map(CertificateDer::from).collect();
        prop_assert!(verify(&chain).is_err());
    }

    #[test]
    fn a_changed_byte_in_a_valid_leaf_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut leaf = FIXTURE.svid.leaf().to_vec();
        let at = at.index(leaf.len());
        leaf[at] ^= flip;
        prop_assert!(verify(&[CertificateDer::from(leaf)]).is_err(), "byte {} changed", at);
    }

    #[test]
    fn a_truncated_or_extended_valid_leaf_is_refused(
        keep in any::<prop::sample::Index>(),
        extra in vec(any::<u8>(), 1..8),
    ) {
        let leaf = FIXTURE.svid.leaf().to_vec();
        let truncated = leaf[..keep.index(leaf.len())].to_vec();
        prop_assert!(verify(&[CertificateDer::from(truncated)]).is_err());
        let mut extended = leaf.clone();
        extended.extend(extra);
        prop_assert!(verify(&[CertificateDer::from(extended)]).is_err());
    }

    #[test]
    fn a_valid_leaf_followed_by_garbage_is_refused(rest in vec(der_ish(), 1..4)) {
        let mut chain = vec![FIXTURE.svid.leaf().clone()];
        chain.extend(rest.into_iter().map(CertificateDer::from));
        prop_assert!(verify(&chain).is_err());
    }
}

// ---- nesting ----

/// Deep nesting is refused with an error, not a stack overflow (which no test harness could
/// catch as a failure short of the process dying).
#[test]
fn deeply_nested_documents_are_refused() {
    let depth = 100_000;
    let toml = format!(
        "[connect]\nids = {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(Policy::from_toml(&toml).is_err());
    let json = format!(r#"{{"keys": {}{}}}"#, "[".repeat(depth), "]".repeat(depth));
    let td: TrustDomain = "example.org".parse().unwrap();
    assert!(X509Bundle::parse(td, json.as_bytes()).is_err());
    let der = (0..depth).fold(vec![0x05, 0x00], |inner, _| tlv(0x30, &inner));
    assert!(verify(&[CertificateDer::from(der)]).is_err());
}
