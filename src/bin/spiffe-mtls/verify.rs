//! `spiffe-mtls verify`: is this chain a valid X.509-SVID, and is its ID allowed?
//!
//! Exit codes: 0 accepted (stdout's first line is the SPIFFE ID), 1 not a valid SVID or not
//! allowed by the `--allow-*` rules, 2 usage error or unusable input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use spiffe_mtls::rustls::pki_types::{CertificateDer, UnixTime};
use spiffe_mtls::{BundleSet, SpiffeId, SvidVerifier, TrustDomain, X509Bundle, authorize};

/// Verify a certificate chain as an X.509-SVID against trust bundles.
///
/// Exit status: 0 accepted (stdout's first line is the SPIFFE ID); 1 not a valid SVID, or
/// valid but not authorized by --allow-id/--allow-td; 2 usage error or unusable input.
#[derive(clap::Args)]
pub struct Args {
    /// PEM file with the chain, leaf first.
    #[arg(long, value_name = "FILE")]
    chain: PathBuf,
    /// A trust domain's bundle: PEM certificates or a SPIFFE bundle (JSON) document.
    #[arg(long, value_name = "TD=FILE", required = true, value_parser = parse_bundle_arg)]
    bundle: Vec<(TrustDomain, PathBuf)>,
    /// Verification time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    at: Option<UnixTime>,
    /// Authorize this SPIFFE ID (repeatable).
    #[arg(long = "allow-id", value_name = "ID")]
    allow_id: Vec<SpiffeId>,
    /// Authorize any ID of this trust domain (repeatable).
    #[arg(long = "allow-td", value_name = "TD")]
    allow_td: Vec<TrustDomain>,
}

use crate::{FAILED as INVALID, FAILED as UNAUTHORIZED, USAGE, fail};

pub(crate) fn parse_bundle_arg(value: &str) -> Result<(TrustDomain, PathBuf), String> {
    let (td, file) = value
        .split_once('=')
        .ok_or_else(|| format!("{value:?} is not TD=FILE"))?;
    if file.is_empty() {
        return Err(format!("{value:?} names no file"));
    }
    let td = td.parse::<TrustDomain>().map_err(|e| e.to_string())?;
    Ok((td, PathBuf::from(file)))
}

pub(crate) fn parse_time(value: &str) -> Result<UnixTime, String> {
    let time = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{value:?} is not an RFC 3339 time: {e}"))?;
    let secs =
        u64::try_from(time.unix_timestamp()).map_err(|_| format!("{value:?} is before 1970"))?;
    Ok(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn load_bundles(args: &[(TrustDomain, PathBuf)]) -> Result<BundleSet, String> {
    let mut bundles = BundleSet::new();
    for (td, path) in args {
        if bundles.get(td).is_some() {
            return Err(format!("--bundle names trust domain {td} twice"));
        }
        let bundle = X509Bundle::parse(td.clone(), &read(path)?)
            .and_then(|bundle| bundle.check_root_names().map(|()| bundle))
            .map_err(|e| format!("bundle {}: {e}", path.display()))?;
        bundles.insert(bundle);
    }
    Ok(bundles)
}

fn load_chain(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let chain = spiffe_mtls::pem::certificates(&bytes)
        .map_err(|e| format!("chain {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("chain {}: no certificate found", path.display()));
    }
    Ok(chain)
}

/// The rule of `--allow-id` and `--allow-td` (any of them allows), or `None` without them.
fn allow_rule(args: &Args) -> Option<authorize::Authorizer> {
    let mut rules = Vec::new();
    match args.allow_id.as_slice() {
        [] => {}
        [id] => rules.push(authorize::id(id.clone())),
        ids => rules.push(authorize::one_of(ids.iter().cloned())),
    }
    if !args.allow_td.is_empty() {
        rules.push(authorize::member_of(args.allow_td.iter().cloned()));
    }
    match rules.len() {
        0 => None,
        1 => rules.pop(),
        _ => Some(authorize::any_of(rules)),
    }
}

/// Runs the command and returns the contract's exit code.
pub fn run(args: &Args) -> ExitCode {
    let (chain, bundles) = match load_chain(&args.chain)
        .and_then(|chain| load_bundles(&args.bundle).map(|bundles| (chain, bundles)))
    {
        Ok(loaded) => loaded,
        Err(message) => return fail(USAGE, message),
    };
    let verifier = match SvidVerifier::new() {
        Ok(verifier) => verifier,
        Err(e) => return fail(USAGE, e),
    };
    let now = args.at.unwrap_or_else(UnixTime::now);
    let svid = match verifier.verify(&chain, &bundles, now) {
        Ok(svid) => svid,
        Err(e) => return fail(INVALID, format!("invalid SVID: {e}")),
    };
    if let Some(rule) = allow_rule(args)
        && let Err(e) = rule.authorize(svid.spiffe_id())
    {
        return fail(UNAUTHORIZED, format!("not authorized: {e}"));
    }
    println!("{}", svid.spiffe_id());
    ExitCode::SUCCESS
}
