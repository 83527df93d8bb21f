//! `spiffe-mtls demo`: the verifier and a policy at work on SVIDs issued in memory.
//!
//! A development CA issues a valid SVID and several that must fail (expired, forged, from a
//! trust domain that is not trusted, not authorized by the policy); each is verified and
//! authorized as a server would at a handshake, and the outcome printed.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use spiffe_mtls::dev_server::{DevCa, SvidRequest};
use spiffe_mtls::rustls::pki_types::UnixTime;
use spiffe_mtls::{BundleSet, Policy, SvidVerifier, X509Svid};

const POLICY: &str = r#"
[connect]
trust_domains = ["example.org"]

[routes.echo]
ids = ["spiffe://example.org/agent/client"]
id_prefixes = ["spiffe://example.org/ns/prod"]
"#;

/// What the demo expects of one case.
#[derive(PartialEq)]
enum Expect {
    Accept,
    Reject,
}

/// Runs the demo; exits non-zero if any outcome differs from what it expects.
pub fn run() -> ExitCode {
    match tour() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tour() -> Result<bool, Box<dyn std::error::Error>> {
    let hour = Duration::from_secs(3600);
    let ca = DevCa::new("example.org".parse()?, hour)?;
    let impostor = DevCa::new("example.org".parse()?, hour)?;
    let partner = DevCa::new("partner.org".parse()?, hour)?;
    let bundles: BundleSet = [ca.bundle()].into_iter().collect();
    let policy = Policy::from_toml(POLICY)?;
    let verifier = SvidVerifier::new()?;
    println!("trust domain example.org: one dev CA; route \"echo\" allows");
    println!("  spiffe://example.org/agent/client and IDs under spiffe://example.org/ns/prod\n");

    let issue = |ca: &DevCa, id: &str| -> Result<X509Svid, Box<dyn std::error::Error>> {
        Ok(ca.issue(&SvidRequest::new(id.parse()?, hour))?)
    };
    let now = SystemTime::now();
    let expired = ca.issue(
        &SvidRequest::new("spiffe://example.org/agent/client".parse()?, hour)
            .valid_between(now - 2 * hour, now - hour),
    )?;
    let cases = [
        (
            "the authorized client",
            issue(&ca, "spiffe://example.org/agent/client")?,
            Expect::Accept,
        ),
        (
            "a prod workload (ID prefix)",
            issue(&ca, "spiffe://example.org/ns/prod/worker")?,
            Expect::Accept,
        ),
        ("an expired SVID", expired, Expect::Reject),
        (
            "a forged SVID (same CA name, other key)",
            issue(&impostor, "spiffe://example.org/agent/client")?,
            Expect::Reject,
        ),
        (
            "an untrusted trust domain",
            issue(&partner, "spiffe://partner.org/agent/client")?,
            Expect::Reject,
        ),
        (
            "a cross-domain forgery",
            issue(&partner, "spiffe://example.org/agent/client")?,
            Expect::Reject,
        ),
        (
            "a valid SVID the policy does not allow",
            issue(&ca, "spiffe://example.org/ns/production")?,
            Expect::Reject,
        ),
    ];

    let (mut accepted, mut rejected, mut as_expected) = (0, 0, true);
    for (what, svid, expect) in cases {
        let outcome = verifier
            .verify(svid.chain(), &bundles, UnixTime::now())
            .map_err(|e| e.to_string())
            .and_then(|peer| {
                policy
                    .authorize_route("echo", peer.spiffe_id())
                    .map_err(|e| e.to_string())
            });
        let (label, detail) = match &outcome {
            Ok(()) => ("ACCEPT", String::new()),
            Err(reason) => ("REJECT", format!("\n          {reason}")),
        };
        if outcome.is_ok() {
            accepted += 1;
        } else {
            rejected += 1;
        }
        as_expected &= outcome.is_ok() == (expect == Expect::Accept);
        println!("  {label}  {what}: {}{detail}", svid.spiffe_id());
    }
    println!(
        "\nsummary: {accepted} accepted, {rejected} rejected, every outcome as expected: {as_expected}"
    );
    Ok(as_expected)
}
