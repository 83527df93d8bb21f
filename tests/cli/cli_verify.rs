//! `spiffe-mtls verify` end to end through the built binary: every exit code of the contract.
#![cfg(all(unix, feature = "cli"))]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::*;
use rcgen::{BasicConstraints, IsCa};
use spiffe_mtls::rustls::pki_types::CertificateDer;

const ID: &str = "spiffe://example.org/agent/client";
const AT: &str = "2026-06-01T00:00:00Z";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .arg("verify")
        .args(args)
        .output()
        .expect("run spiffe-mtls")
}

fn arg(prefix: &str, path: &Path) -> String {
    format!("{prefix}{}", path.display())
}

#[track_caller]
fn expect_code(output: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

/// A root, its PEM bundle file and a valid chain file.
fn setup(files: &Files) -> (Ca, PathBuf, PathBuf) {
    let root = Ca::root("example.org");
    let intermediate = root.intermediate("intermediate", |_| {});
    let leaf = intermediate.leaf(ID).via(&intermediate);
    let bundle = files.write("bundle.pem", pem(std::slice::from_ref(&root.der)));
    let chain = files.write("chain.pem", pem(&leaf.chain));
    (root, bundle, chain)
}

fn jwks(roots: &[CertificateDer<'_>]) -> String {
    let keys: Vec<String> = roots
        .iter()
        .map(|der| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
            format!(r#"{{"use": "x509-svid", "kty": "EC", "x5c": ["{b64}"]}}"#)
        })
        .collect();
    format!(r#"{{"spiffe_sequence": 1, "keys": [{}]}}"#, keys.join(","))
}

#[test]
fn exit_0_prints_the_id_first() {
    let files = Files::new();
    let (_, bundle, chain) = setup(&files);
    let output = run(&[
        &arg("--chain=", &chain),
        &arg("--bundle=example.org=", &bundle),
        "--at",
        AT,
    ]);
    let (stdout, _) = expect_code(&output, 0);
    assert_eq!(stdout.lines().next(), Some(ID));
}

#[test]
fn exit_0_with_json_bundle_and_allow_rules() {
    let files = Files::new();
    let (root, _, chain) = setup(&files);
    let json = files.write("bundle.json", jwks(std::slice::from_ref(&root.der)));
    let other = Ca::root("partner.org");
    let partner = files.write("partner.pem", pem(std::slice::from_ref(&other.der)));
    let base = [
        "--chain".to_string(),
        chain.display().to_string(),
        "--bundle".into(),
        arg("example.org=", &json),
        "--bundle".into(),
        arg("partner.org=", &partner),
        "--at".into(),
        AT.into(),
    ];
    let with = |extra: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend(extra);
        run(&args)
    };
    let (stdout, _) = expect_code(&with(&[]), 0);
    assert_eq!(stdout.lines().next(), Some(ID));
    expect_code(&with(&["--allow-id", ID]), 0);
    expect_code(&with(&["--allow-td", "example.org"]), 0);
    expect_code(
        &with(&[
            "--allow-id",
            "spiffe://example.org/other",
            "--allow-td",
            "example.org",
        ]),
        0,
    );

    // exit 1: valid, but not allowed (a refused check, as an invalid SVID is)
    let (stdout, stderr) = expect_code(&with(&["--allow-id", "spiffe://example.org/other"]), 1);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!("not authorized: expected the ID spiffe://example.org/other, presented {ID}\n")
    );
    let (_, stderr) = expect_code(&with(&["--allow-td", "partner.org"]), 1);
    assert_eq!(
        stderr,
        format!("not authorized: expected a member of partner.org, presented {ID}\n")
    );
    let (_, stderr) = expect_code(
        &with(&[
            "--allow-id",
            "spiffe://example.org/b",
            "--allow-id",
            "spiffe://example.org/a",
            "--allow-td",
            "partner.org",
        ]),
        1,
    );
    assert_eq!(
        stderr,
        format!(
            "not authorized: expected one of spiffe://example.org/a or spiffe://example.org/b, \
             or a member of partner.org, presented {ID}\n"
        )
    );
}

#[test]
fn default_time_is_now() {
    let files = Files::new();
    let root = Ca::root("example.org");
    let now = time::OffsetDateTime::now_utc();
    let leaf = root.leaf_with(ID, |p| {
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::hours(1);
    });
    let bundle = files.write("bundle.pem", pem(std::slice::from_ref(&root.der)));
    let chain = files.write("chain.pem", pem(&leaf.chain));
    let base = [
        arg("--chain=", &chain),
        arg("--bundle=example.org=", &bundle),
    ];
    expect_code(&run(&[&base[0], &base[1]]), 0);
    // and --at moves it: two hours later the leaf has expired
    let later = (now + time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    expect_code(&run(&[&base[0], &base[1], "--at", &later]), 1);
}

#[track_caller]
fn expect_invalid(output: &Output, needle: &str) {
    let (stdout, stderr) = expect_code(output, 1);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
}

#[test]
fn exit_1_for_invalid_svids() {
    let files = Files::new();
    let (root, bundle, chain) = setup(&files);
    let bundle_arg = arg("--bundle=example.org=", &bundle);
    let chain_arg = arg("--chain=", &chain);

    // time
    expect_invalid(
        &run(&[&chain_arg, &bundle_arg, "--at", "2027-06-01T00:00:00Z"]),
        "expired",
    );
    expect_invalid(
        &run(&[&chain_arg, &bundle_arg, "--at", "2025-06-01T00:00:00Z"]),
        "not valid before",
    );

    // profile
    let ca_leaf = root.leaf_with(ID, |p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
    let file = files.write("ca-leaf.pem", pem(&ca_leaf.chain));
    expect_invalid(
        &run(&[&arg("--chain=", &file), &bundle_arg, "--at", AT]),
        "CA flag",
    );

    // chain: signed by a root that is not in the bundle
    let stranger = Ca::root_with("example.org", |p| {
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "stranger");
    });
    let file = files.write("stranger.pem", pem(&stranger.leaf(ID).chain));
    expect_invalid(
        &run(&[&arg("--chain=", &file), &bundle_arg, "--at", AT]),
        "does not lead",
    );

    // signature: the right issuer name, another key
    let forged = Ca::root("example.org").leaf(ID);
    let file = files.write("forged.pem", pem(&forged.chain));
    expect_invalid(
        &run(&[&arg("--chain=", &file), &bundle_arg, "--at", AT]),
        "signature",
    );

    // SPIFFE ID: upper-case trust domain
    let upper = root.leaf("spiffe://EXAMPLE.ORG/agent");
    let file = files.write("upper.pem", pem(&upper.chain));
    expect_invalid(
        &run(&[&arg("--chain=", &file), &bundle_arg, "--at", AT]),
        "lower case",
    );

    // trust domain without a bundle
    let other = root.leaf("spiffe://other.org/agent");
    let file = files.write("other.pem", pem(&other.chain));
    expect_invalid(
        &run(&[&arg("--chain=", &file), &bundle_arg, "--at", AT]),
        "no bundle for trust domain other.org",
    );

    // a PEM block whose DER is garbage
    let garbage = "-----BEGIN CERTIFICATE-----\nQ09SUlVQVA==\n-----END CERTIFICATE-----\n";
    let file = files.write("garbage.pem", garbage);
    expect_invalid(
        &run(&[&arg("--chain=", &file), &bundle_arg, "--at", AT]),
        "malformed",
    );

    // an empty bundle (keys: []) trusts nothing
    let empty = files.write("empty.json", r#"{"keys": []}"#);
    expect_invalid(
        &run(&[
            &chain_arg,
            &arg("--bundle=example.org=", &empty),
            "--at",
            AT,
        ]),
        "trusts nothing",
    );
}

#[track_caller]
fn expect_usage(output: &Output) -> String {
    let (stdout, stderr) = expect_code(output, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!stderr.trim().is_empty());
    stderr
}

#[test]
fn exit_2_for_usage_and_unusable_input() {
    let files = Files::new();
    let (_, bundle, chain) = setup(&files);
    let bundle_arg = arg("--bundle=example.org=", &bundle);
    let chain_arg = arg("--chain=", &chain);
    let missing = files.dir.path().join("missing.pem");

    expect_usage(&run(&[]));
    expect_usage(&run(&[&bundle_arg]));
    expect_usage(&run(&[&chain_arg]));
    expect_usage(&run(&[&chain_arg, &bundle_arg, "--unknown-flag"]));
    let stderr = expect_usage(&run(&[&arg("--chain=", &missing), &bundle_arg]));
    assert!(stderr.contains("cannot read"), "{stderr}");
    expect_usage(&run(&[&chain_arg, &arg("--bundle=example.org=", &missing)]));

    // chain files with no certificate
    for (name, content) in [
        ("empty.pem", ""),
        ("text.pem", "hello"),
        (
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nQ09SUlVQVA==\n-----END PRIVATE KEY-----\n",
        ),
    ] {
        let file = files.write(name, content);
        expect_usage(&run(&[&arg("--chain=", &file), &bundle_arg]));
    }

    // malformed --bundle arguments
    for bad in [
        "--bundle=example.org".to_string(),
        arg("--bundle=", &bundle),
        "--bundle=example.org=".into(),
        arg("--bundle=Example.org=", &bundle),
        arg("--bundle=spiffe://example.org=", &bundle),
    ] {
        expect_usage(&run(&[&chain_arg, &bad]));
    }
    expect_usage(&run(&[&chain_arg, &bundle_arg, &bundle_arg]));

    // bundle files that are neither PEM nor JSON
    let neither = files.write("neither.txt", "this is not a bundle");
    let stderr = expect_usage(&run(&[&chain_arg, &arg("--bundle=example.org=", &neither)]));
    assert!(stderr.contains("neither PEM nor"), "{stderr}");
    let binary = files.write("binary.der", [0x30u8, 0x82, 0x01, 0x00, 0xff]);
    expect_usage(&run(&[&chain_arg, &arg("--bundle=example.org=", &binary)]));

    // a root whose URI SAN names another trust domain than the one it is given for: the
    // partner's root cannot be passed off as example.org's, and the file is named
    let partner = Ca::root("partner.org");
    let partner_file = files.write("partner.pem", pem(std::slice::from_ref(&partner.der)));
    let stderr = expect_usage(&run(&[
        &chain_arg,
        &arg("--bundle=example.org=", &partner_file),
    ]));
    assert!(
        stderr.contains("partner.pem") && stderr.contains("names trust domain \"partner.org\""),
        "{stderr}"
    );

    // malformed option values
    expect_usage(&run(&[&chain_arg, &bundle_arg, "--at", "yesterday"]));
    expect_usage(&run(&[
        &chain_arg,
        &bundle_arg,
        "--allow-id",
        "spiffe://Example.org/x",
    ]));
    expect_usage(&run(&[&chain_arg, &bundle_arg, "--allow-td", "not a td"]));
}
