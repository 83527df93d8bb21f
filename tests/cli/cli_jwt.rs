//! `spiffe-mtls jwt` through the built binary: each exit code of `validate`'s contract, and
//! `fetch` and `bundles` against the dev server, their output checked by `validate`.
#![cfg(all(unix, feature = "cli", feature = "jwt"))]

use crate::common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use spiffe_mtls::jwt::{Algorithm, JwtBundle, JwtSigner};
use spiffe_mtls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const AUDIENCE: &str = "spiffe://example.org/reports";
const SUBJECT: &str = "spiffe://example.org/agent/client";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn write(&self, name: &str, contents: &str) -> String {
        std::fs::write(self.dir.path().join(name), contents).unwrap();
        self.path(name)
    }
}

/// A token for SUBJECT and AUDIENCE expiring in 5 minutes, its JWKS and a SPIFFE bundle
/// document holding the same key.
fn setup() -> Files {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let signer = JwtSigner::new(
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        Algorithm::ES256,
        "k1",
    )
    .unwrap();
    let token = signer
        .sign_svid(
            &SUBJECT.parse().unwrap(),
            &[AUDIENCE.to_owned()],
            SystemTime::now() + Duration::from_secs(300),
        )
        .unwrap();
    let bundle = JwtBundle::new(
        "example.org".parse().unwrap(),
        [signer.public_key().clone()],
    )
    .unwrap();
    let files = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    files.write("token", &format!("{token}\n"));
    files.write("example.org.jwks", &bundle.to_jwks().to_string());
    let mut spiffe_bundle = bundle.to_jwks();
    spiffe_bundle["spiffe_sequence"] = 7.into();
    spiffe_bundle["spiffe_refresh_hint"] = 300.into();
    files.write("example.org.spiffe.json", &spiffe_bundle.to_string());
    files
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    jwt(&[&["validate"], args].concat(), stdin)
}

/// `spiffe-mtls jwt ARGS...`.
fn jwt(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .arg("jwt")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_valid_token_exits_0_with_the_spiffe_id_first() {
    let f = setup();
    for bundle in ["example.org.jwks", "example.org.spiffe.json"] {
        let out = run(
            &[
                "--token",
                &f.path("token"),
                "--audience",
                AUDIENCE,
                "--bundle",
                &format!("example.org={}", f.path(bundle)),
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).lines().next(), Some(SUBJECT));
    }
    // From standard input.
    let token = std::fs::read_to_string(f.path("token")).unwrap();
    let out = run(
        &[
            "--token",
            "-",
            "--audience",
            AUDIENCE,
            "--bundle",
            &format!("example.org={}", f.path("example.org.jwks")),
        ],
        Some(&token),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().next(), Some(SUBJECT));
}

#[test]
fn an_invalid_token_exits_1_with_one_line_naming_the_rule() {
    let f = setup();
    let bundle = format!("example.org={}", f.path("example.org.jwks"));
    let token = f.path("token");
    let cases: [(&[&str], &str); 2] = [
        (&["--audience", "spiffe://example.org/billing"], "(aud)"),
        (
            &["--audience", AUDIENCE, "--at", "2099-01-01T00:00:00Z"],
            "(exp)",
        ),
    ];
    for (extra, rule) in cases {
        let mut args = vec!["--token", &token, "--bundle", &bundle];
        args.extend_from_slice(extra);
        let out = run(&args, None);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(rule), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    // Garbage for a token.
    let garbage = f.write("garbage", "not.a.token");
    let out = run(
        &[
            "--token",
            &garbage,
            "--audience",
            AUDIENCE,
            "--bundle",
            &bundle,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("(format)"));
    // No bundle for the token's trust domain.
    let partner = format!("partner.org={}", f.path("example.org.jwks"));
    let out = run(
        &[
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            &partner,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("(bundle)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_and_unusable_input_exit_2() {
    let f = setup();
    let token = f.path("token");
    let bundle = format!("example.org={}", f.path("example.org.jwks"));
    let not_json = format!(
        "example.org={}",
        f.write("bad.jwks", "-----BEGIN CERTIFICATE-----")
    );
    let private = format!(
        "example.org={}",
        f.write(
            "private.jwks",
            r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#
        )
    );
    let empty = f.write("empty", "\n");
    let cases: Vec<Vec<&str>> = vec![
        vec!["--token", &token, "--audience", AUDIENCE],
        vec!["--token", &token, "--bundle", &bundle],
        vec![
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            "example.org",
        ],
        vec![
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            "Bad_TD=/x",
        ],
        vec![
            "--token",
            "/no/such/file",
            "--audience",
            AUDIENCE,
            "--bundle",
            &bundle,
        ],
        vec![
            "--token",
            &empty,
            "--audience",
            AUDIENCE,
            "--bundle",
            &bundle,
        ],
        vec![
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            "example.org=/no/such",
        ],
        vec![
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            &not_json,
        ],
        vec![
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            &private,
        ],
        vec![
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            &bundle,
            "--bundle",
            &bundle,
        ],
        vec![
            "--token",
            &token,
            "--audience",
            AUDIENCE,
            "--bundle",
            &bundle,
            "--at",
            "yesterday",
        ],
    ];
    for args in cases {
        let out = run(&args, None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_and_bundles_from_the_dev_server_then_validate() {
    use spiffe_mtls::dev_server::{DevServer, DevServerConfig, DevServerOptions};
    use spiffe_mtls::workload::EndpointAddress;
    let dir = tempfile::tempdir().unwrap();
    let uid = common::my_uid();
    let config = DevServerConfig::from_toml(&format!(
        "trust_domain = \"example.org\"\n[[entry]]\nspiffe_id = \"{SUBJECT}\"\nselectors = [\"unix:uid:{uid}\"]\n"
    ))
    .unwrap();
    let address = EndpointAddress::Unix(dir.path().join("agent.sock"));
    let server = DevServer::start(config, address.clone(), DevServerOptions::default())
        .await
        .unwrap();
    let socket = address.to_string();
    let out_dir = dir.path().join("jwks");
    let (fetched, listed) = tokio::task::spawn_blocking({
        let socket = socket.clone();
        let out_dir = out_dir.clone();
        move || {
            let fetched = jwt(
                &[
                    "fetch",
                    "--audience",
                    AUDIENCE,
                    "--audience",
                    "second",
                    "--socket",
                    &socket,
                ],
                None,
            );
            let listed = jwt(
                &[
                    "bundles",
                    "--socket",
                    &socket,
                    "--write",
                    out_dir.to_str().unwrap(),
                ],
                None,
            );
            (fetched, listed)
        }
    })
    .await
    .unwrap();
    assert_eq!(fetched.status.code(), Some(0), "{}", text(&fetched.stderr));
    let stdout = text(&fetched.stdout);
    let tokens: Vec<&str> = stdout.lines().collect();
    assert_eq!(tokens.len(), 1, "{stdout}");
    assert_eq!(tokens[0].split('.').count(), 3);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    assert_eq!(text(&listed.stdout), "example.org\n");
    let jwks = out_dir.join("example.org.jwks");
    let token = tokens[0].to_owned();
    let validated = tokio::task::spawn_blocking(move || {
        run(
            &[
                "--token",
                "-",
                "--audience",
                "second",
                "--bundle",
                &format!("example.org={}", jwks.display()),
            ],
            Some(&token),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        validated.status.code(),
        Some(0),
        "{}",
        text(&validated.stderr)
    );
    assert_eq!(text(&validated.stdout).lines().next(), Some(SUBJECT));
    server.shutdown().await;

    // Nobody there: non-zero, the reason on stderr, nothing on stdout.
    let gone = jwt(
        &["fetch", "--audience", AUDIENCE, "--socket", &socket],
        None,
    );
    assert_ne!(gone.status.code(), Some(0));
    assert!(gone.stdout.is_empty());
    assert!(!gone.stderr.is_empty());
    // No audience: a usage error.
    let usage = jwt(&["fetch", "--socket", &socket], None);
    assert_eq!(usage.status.code(), Some(2));
}
