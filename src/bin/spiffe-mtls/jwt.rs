//! `spiffe-mtls jwt`: JWT-SVIDs from the command line.
//!
//! `jwt validate` exit codes: 0 valid (stdout's first line is the SPIFFE ID), 1 invalid token
//! (one line on stderr names the rule), 2 usage error or unusable input.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use spiffe_mtls::TrustDomain;
use spiffe_mtls::jwt::{JwtBundle, JwtBundleSet, JwtSvidValidator};

/// JWT-SVIDs: validate a token.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Validate(ValidateArgs),
}

/// Validate a JWT-SVID for an audience against JWT bundles.
///
/// Exit status: 0 valid (stdout's first line is the SPIFFE ID); 1 invalid token (stderr says
/// which rule); 2 usage error or unusable input.
#[derive(clap::Args)]
struct ValidateArgs {
    /// The token: a file holding it, or - for standard input.
    #[arg(long, value_name = "FILE|-")]
    token: PathBuf,
    /// The audience this validator identifies with: the token's aud must contain it.
    #[arg(long, value_name = "AUD")]
    audience: String,
    /// A trust domain's JWT bundle: a JWK Set or a SPIFFE bundle (JSON) document.
    #[arg(long, value_name = "TD=FILE", required = true, value_parser = crate::verify::parse_bundle_arg)]
    bundle: Vec<(TrustDomain, PathBuf)>,
    /// Validation time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = crate::verify::parse_time)]
    at: Option<spiffe_mtls::rustls::pki_types::UnixTime>,
}

const INVALID: u8 = 1;
const USAGE: u8 = 2;

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

/// The token from a file or standard input, surrounding whitespace removed.
fn read_token(path: &PathBuf) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut bytes).map(drop))
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not text", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    Ok(token.to_owned())
}

fn load_bundles(args: &[(TrustDomain, PathBuf)]) -> Result<JwtBundleSet, String> {
    let mut bundles = JwtBundleSet::new();
    for (td, path) in args {
        if bundles.get(td).is_some() {
            return Err(format!("--bundle names trust domain {td} twice"));
        }
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bundle = JwtBundle::parse(td.clone(), &bytes)
            .map_err(|e| format!("bundle {}: {e}", path.display()))?;
        bundles.insert(bundle);
    }
    Ok(bundles)
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let (token, bundles) = match read_token(&args.token)
        .and_then(|token| load_bundles(&args.bundle).map(|bundles| (token, bundles)))
    {
        Ok(loaded) => loaded,
        Err(message) => return fail(USAGE, message),
    };
    let validator = match JwtSvidValidator::new() {
        Ok(validator) => validator,
        Err(e) => return fail(USAGE, e),
    };
    let now = args.at.map_or_else(SystemTime::now, |at| {
        UNIX_EPOCH + std::time::Duration::from_secs(at.as_secs())
    });
    match validator.validate_at(&token, &args.audience, &bundles, now) {
        Ok(svid) => {
            println!("{}", svid.spiffe_id());
            ExitCode::SUCCESS
        }
        Err(e) => fail(INVALID, format!("invalid JWT-SVID ({}): {e}", e.rule())),
    }
}

/// Runs `jwt` and returns the contract's exit code.
pub fn run(args: &Args) -> ExitCode {
    match &args.command {
        Command::Validate(validate_args) => validate(validate_args),
    }
}
