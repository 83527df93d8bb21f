//! Writes the seed corpora and fixtures of the fuzz targets (`fuzz/seeds/`, `fuzz/fixtures/`)
//! from the test data and from certificates issued on the spot. Ignored by default; run it by
//! hand when a target's input format or the test data changes, and commit what it writes:
//!
//! ```text
//! cargo test --test api fuzz_seeds:: -- --ignored
//! ```
//!
//! Every run issues new keys, so the `verify_chain` bundle and verification time in
//! `fuzz/fixtures/` are rewritten together with the chains that need them.
#![cfg(all(unix, feature = "dev-server", feature = "workload-api"))]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{Ca, uri_name_constraints};
use prost::Message;
use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::pem;
use spiffe_mtls::rustls::pki_types::{CertificateDer, UnixTime};
use spiffe_mtls::workload::proto::{X509svid, X509svidResponse};
use spiffe_mtls::{BundleSet, SvidVerifier, X509Bundle};
use time::macros::datetime;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn go_spiffe(path: &str) -> Vec<u8> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/go-spiffe")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Replaces the seeds of `target` with `seeds` (name, bytes).
fn write_seeds(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = fuzz_dir().join("seeds").join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove old seeds");
    }
    std::fs::create_dir_all(&dir).expect("seed directory");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}

fn named<T: AsRef<[u8]>>(items: impl IntoIterator<Item = T>) -> Vec<(String, Vec<u8>)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (format!("{i:02}"), item.as_ref().to_vec()))
        .collect()
}

/// The `verify_chain` input format: each certificate as a big-endian u16 length and its DER.
fn length_prefixed(chain: &[CertificateDer<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for cert in chain {
        let len = u16::try_from(cert.len()).expect("certificate under 64 KiB");
        out.extend(len.to_be_bytes());
        out.extend_from_slice(cert);
    }
    out
}

/// Validity of the hand-built chains: wide around any verification time of these seeds.
fn wide_validity(params: &mut rcgen::CertificateParams) {
    params.not_before = datetime!(2020-01-01 00:00 UTC);
    params.not_after = datetime!(2045-01-01 00:00 UTC);
}

/// The seeds made of text and test data: the same on every run.
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn write_text_seeds() {
    spiffe_id_seeds();
    endpoint_address_seeds();
    policy_file_seeds();
    bundle_document_seeds();
    h2_header_shim_seeds();
}

/// The seeds holding certificates issued on the spot, with the `verify_chain` fixtures they
/// need: new keys on every run.
#[test]
#[ignore = "writes fuzz/seeds and fuzz/fixtures; run by hand"]
fn write_certificate_seeds() {
    chain_and_response_seeds();
}

fn spiffe_id_seeds() {
    write_seeds(
        "spiffe_id",
        &named([
            "spiffe://example.org",
            "spiffe://example.org/agent/client",
            "spiffe://a-b_c.d/x.y/Z-9_",
            "spiffe://staging.example.org/payments/mysql",
            "example.org",
            "SPIFFE://example.org/x",
            "spiffe://Example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/./x",
            "spiffe://example.org/../x",
            "spiffe://example.org:8080/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org/x%20y",
            "spiffe://example.org/x?q=1",
            "spiffe://example.org/x#frag",
            "spiffe://exämple.org/x",
        ]),
    );
}

fn endpoint_address_seeds() {
    write_seeds(
        "endpoint_address",
        &named([
            "unix:///run/spire/agent.sock",
            "unix:///tmp/agent.sock",
            "tcp://127.0.0.1:8081",
            "tcp://[::1]:8081",
            "tcp://[fe80::1%2]:8081",
            "/run/agent.sock",
            "unix:/run/agent.sock",
            "unix://host/run/agent.sock",
            "unix:///",
            "unix:///run/agent.sock?x=1",
            "tcp://localhost:8081",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:8081/path",
            "http://127.0.0.1:8081",
        ]),
    );
}

fn policy_file_seeds() {
    write_seeds(
        "policy_file",
        &named([
            concat!(
                "[connect]\n",
                "trust_domains = [\"example.org\", \"partner.org\"]\n\n",
                "[routes.echo]\n",
                "ids = [\"spiffe://example.org/agent/client\"]\n",
                "id_prefixes = [\"spiffe://example.org/ns/prod\"]\n",
                "trust_domains = [\"partner.org\"]\n",
            ),
            "[routes.echo]\nids = [\"spiffe://example.org/agent/client\"]\n",
            concat!(
                "[connect]\ntrust_domains = [\"example.org\"]\n",
                "[routes.r]\ntrust_domains = [\"evil.org\"]\n",
            ),
            concat!(
                "[routes.a]\n",
                "ids = [\"spiffe://example.org/a\", \"spiffe://example.org/b\"]\n",
                "[routes.\"skill with spaces\"]\n",
                "id_prefixes = [\"spiffe://example.org/ns\", \"spiffe://partner.org\"]\n",
                "[routes.empty]\n",
            ),
            "",
            "[connect]\ntrust_domain = [\"example.org\"]\n",
            "[routes.echo]\n\nids = [\"spiffe://Example.org/x\"]\n",
            "[routes.echo]\ntrust_domains = [\"spiffe://x\"]\n",
            "[routes.echo\n",
            &format!("x = {}{}\n", "[".repeat(1000), "]".repeat(1000)),
            &format!("[routes.{}]\n", vec!["a"; 1000].join(".")),
        ]),
    );
}

fn bundle_document_seeds() {
    let files = [
        "x509bundle/cert.pem",
        "x509bundle/certs.pem",
        "x509bundle/corrupted.pem",
        "x509bundle/empty.pem",
        "x509bundle/key.pem",
        "x509bundle/not-pem.pem",
        "spiffebundle/spiffebundle_missing_kid.json",
        "spiffebundle/spiffebundle_multiple_x509.json",
        "spiffebundle/spiffebundle_no_keys.json",
        "spiffebundle/spiffebundle_valid_1.json",
        "spiffebundle/spiffebundle_valid_2.json",
        "spiffebundle/spiffebundle_valid_with_wit.json",
        "x509svid/good-leaf-and-intermediate.pem",
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|path| (path.replace('/', "-"), go_spiffe(path)))
        .collect();
    seeds.push(("empty-keys.json".into(), br#"{"keys": []}"#.to_vec()));
    let deep = format!(r#"{{"keys": {}{}}}"#, "[".repeat(1000), "]".repeat(1000));
    seeds.push(("deep-keys.json".into(), deep.into_bytes()));
    write_seeds("bundle_document", &seeds);
}

fn h2_frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend(stream_id.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn h2_header_shim_seeds() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const HEADERS: u8 = 0x1;
    const CONTINUATION: u8 = 0x9;
    const SETTINGS: u8 = 0x4;
    const DATA: u8 = 0x0;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    let block = |authority: &[u8]| {
        fluke_hpack::Encoder::new().encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"workload.spiffe.io", b"true"),
        ])
    };
    let start = |frames: &[Vec<u8>]| {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(h2_frame(SETTINGS, 0, 0, &[]));
        for frame in frames {
            bytes.extend_from_slice(frame);
        }
        bytes
    };
    let socket = block(b"%2Frun%2Fspire%2Fagent.sock");
    let (first, second) = socket.split_at(socket.len() / 2);
    let mut padded = vec![4];
    padded.extend_from_slice(&socket);
    padded.extend([0; 4]);
    let mut prioritized = vec![0, 0, 0, 0, 16];
    prioritized.extend_from_slice(&socket);
    let grpc_message = [0, 0, 0, 0, 0];
    write_seeds(
        "h2_header_shim",
        &named([
            start(&[h2_frame(HEADERS, END_HEADERS, 1, &block(b"localhost"))]),
            start(&[
                h2_frame(HEADERS, END_HEADERS, 1, &socket),
                h2_frame(DATA, END_STREAM, 1, &grpc_message),
            ]),
            start(&[
                h2_frame(HEADERS, 0, 1, first),
                h2_frame(CONTINUATION, END_HEADERS, 1, second),
            ]),
            start(&[h2_frame(HEADERS, END_HEADERS | PADDED, 1, &padded)]),
            start(&[h2_frame(
                HEADERS,
                END_HEADERS | PRIORITY | END_STREAM,
                3,
                &prioritized,
            )]),
            PREFACE.to_vec(),
        ]),
    );
}

/// `verify_chain` and `x509_svid_response` seeds, and the bundle and time `verify_chain`
/// verifies against.
fn chain_and_response_seeds() {
    let now = SystemTime::now();
    let dev_ca = DevCa::new(
        "example.org".parse().unwrap(),
        Duration::from_secs(20 * 365 * 24 * 3600),
    )
    .unwrap();
    let dev_svid = dev_ca
        .issue(
            &SvidRequest::new(
                "spiffe://example.org/agent/client".parse().unwrap(),
                Duration::from_secs(10 * 365 * 24 * 3600),
            )
            .with_dns_names(["localhost".to_string()]),
        )
        .unwrap();

    let root = Ca::root_with("example.org", wide_validity);
    let intermediate = root.intermediate("intermediate", |p| {
        wide_validity(p);
        p.subject_alt_names.clear();
        p.custom_extensions
            .push(uri_name_constraints(&["example.org"], &[]));
    });
    let deep = intermediate
        .leaf_with("spiffe://example.org/ns/prod/worker", wide_validity)
        .via(&intermediate);
    let direct = root.leaf_with("spiffe://example.org/agent/server", |p| {
        wide_validity(p);
        p.subject_alt_names.push(common::dns("agent.example.org"));
    });
    let foreign = Ca::root_with("partner.org", wide_validity);
    let federated = foreign.leaf_with("spiffe://partner.org/agent", wide_validity);

    // what verify_chain trusts, and when
    let roots = [dev_ca.root().clone(), root.der.clone()];
    let fixtures = fuzz_dir().join("fixtures").join("verify_chain");
    std::fs::create_dir_all(&fixtures).unwrap();
    std::fs::write(
        fixtures.join("bundle.pem"),
        pem::encode_certificates(&roots),
    )
    .unwrap();
    let at = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    std::fs::write(fixtures.join("time"), format!("{at}\n")).unwrap();

    // the valid seeds must pass the verifier as the target runs it
    let bundles: BundleSet = [X509Bundle::new("example.org".parse().unwrap(), roots).unwrap()]
        .into_iter()
        .collect();
    let verifier = SvidVerifier::new().unwrap();
    let time = UnixTime::since_unix_epoch(Duration::from_secs(at));
    for chain in [dev_svid.chain(), &deep.chain, &direct.chain] {
        verifier.verify(chain, &bundles, time).expect("valid seed");
    }

    let mut chains: Vec<(String, Vec<u8>)> = vec![
        ("dev-ca-leaf".into(), length_prefixed(dev_svid.chain())),
        (
            "intermediate-name-constraints".into(),
            length_prefixed(&deep.chain),
        ),
        ("leaf-with-dns".into(), length_prefixed(&direct.chain)),
        (
            "other-trust-domain".into(),
            length_prefixed(&federated.chain),
        ),
        (
            "leaf-and-root".into(),
            length_prefixed(&[direct.chain[0].clone(), root.der.clone()]),
        ),
    ];
    for path in [
        "x509svid/good-leaf-and-intermediate.pem",
        "x509svid/good-leaf-only.pem",
        "x509svid/wrong-intermediate-no-ca.pem",
        "x509svid/wrong-intermediate-no-key-cert-sign.pem",
        "x509svid/wrong-leaf-ca-true.pem",
        "x509svid/wrong-leaf-cert-sign.pem",
        "x509svid/wrong-leaf-crl-sign.pem",
        "x509svid/wrong-leaf-empty-id.pem",
        "x509svid/wrong-leaf-no-digital-signature.pem",
    ] {
        let certs = pem::certificates(&go_spiffe(path)).unwrap();
        let name = path
            .trim_start_matches("x509svid/")
            .trim_end_matches(".pem");
        chains.push((format!("go-spiffe-{name}"), length_prefixed(&certs)));
    }
    write_seeds("verify_chain", &chains);

    let concat = |certs: &[CertificateDer<'_>]| -> Vec<u8> {
        certs.iter().flat_map(|c| c.to_vec()).collect()
    };
    let dev_item = X509svid {
        spiffe_id: dev_svid.spiffe_id().to_string(),
        x509_svid: concat(dev_svid.chain()),
        x509_svid_key: dev_svid.private_key().secret_der().to_vec(),
        bundle: dev_ca.root().to_vec(),
        hint: "internal".into(),
    };
    let deep_item = X509svid {
        spiffe_id: "spiffe://example.org/ns/prod/worker".into(),
        x509_svid: concat(&deep.chain),
        x509_svid_key: deep.key.serialize_der(),
        bundle: root.der.to_vec(),
        hint: "external".into(),
    };
    let federated_bundles = [("spiffe://partner.org".to_string(), foreign.der.to_vec())]
        .into_iter()
        .collect();
    let responses = [
        X509svidResponse {
            svids: vec![dev_item.clone()],
            crl: Vec::new(),
            federated_bundles,
        },
        X509svidResponse {
            svids: vec![deep_item.clone(), dev_item.clone()],
            crl: Vec::new(),
            federated_bundles: Default::default(),
        },
        X509svidResponse {
            svids: vec![X509svid {
                spiffe_id: "spiffe://example.org/other".into(),
                ..dev_item.clone()
            }],
            ..Default::default()
        },
        X509svidResponse::default(),
    ];
    write_seeds(
        "x509_svid_response",
        &named(responses.iter().map(Message::encode_to_vec)),
    );
}
