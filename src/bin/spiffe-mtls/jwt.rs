//! `spiffe-mtls jwt`: JWT-SVIDs from the command line.
//!
//! `jwt fetch` prints one token per line on stdout and nothing else; `jwt bundles` prints the
//! trust domains and can write each JWT bundle to `DIR/<trust-domain>.jwks` (atomically, after
//! removing the `.jwks` files of trust domains no longer in the set; each file removed and
//! written named on stderr); both exit 1 with the reason on stderr when the Workload API
//! refuses or cannot be reached.
//!
//! `jwt validate` exit codes: 0 valid (stdout's first line is the SPIFFE ID), 1 invalid token
//! (one line on stderr names the rule), 2 usage error or unusable input.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use spiffe_mtls::jwt::{JwtBundle, JwtBundleSet, JwtSvidValidator};
use spiffe_mtls::workload::{WorkloadClient, WorkloadError};
use spiffe_mtls::{SpiffeId, TrustDomain};

use crate::fetch::SocketArg;

/// How long `fetch` and `bundles` wait for the Workload API.
const WORKLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// JWT-SVIDs: fetch tokens and bundles from the Workload API, validate a token.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Fetch(FetchArgs),
    Bundles(BundlesArgs),
    Validate(ValidateArgs),
}

/// Fetch JWT-SVIDs for audiences: each token on its own line, nothing else on stdout.
#[derive(clap::Args)]
struct FetchArgs {
    /// An audience of the tokens (repeatable; at least one).
    #[arg(long, value_name = "AUD", required = true)]
    audience: Vec<String>,
    /// Fetch the token of this identity only (default: every identity of the caller).
    #[arg(long, value_name = "ID")]
    spiffe_id: Option<SpiffeId>,
    #[command(flatten)]
    socket: SocketArg,
}

/// Fetch the JWT bundles: print their trust domains, optionally write them.
#[derive(clap::Args)]
struct BundlesArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Write each bundle to DIR/<trust-domain>.jwks (a JWK Set document), atomically; every
    /// other *.jwks file of DIR (a trust domain that left the federation) is removed first.
    /// stderr names each file removed and written.
    #[arg(long, value_name = "DIR")]
    write: Option<PathBuf>,
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

use crate::{FAILED as INVALID, USAGE, fail};

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
    let now = match args.at {
        None => SystemTime::now(),
        Some(at) => match UNIX_EPOCH.checked_add(std::time::Duration::from_secs(at.as_secs())) {
            Some(now) => now,
            None => return fail(USAGE, format!("--at {} is out of range", at.as_secs())),
        },
    };
    match validator.validate_at(&token, &args.audience, &bundles, now) {
        Ok(svid) => {
            println!("{}", svid.spiffe_id());
            ExitCode::SUCCESS
        }
        Err(e) => fail(INVALID, format!("invalid JWT-SVID ({}): {e}", e.rule())),
    }
}

/// A Workload API client on `socket`, and `work` with it, within [`WORKLOAD_TIMEOUT`].
fn with_client<T>(
    socket: &SocketArg,
    work: impl AsyncFnOnce(&mut WorkloadClient) -> Result<T, WorkloadError>,
    then: impl FnOnce(T) -> Result<(), String>,
) -> ExitCode {
    let address = match socket.address() {
        Ok(address) => address,
        Err(message) => return fail(USAGE, message),
    };
    crate::runtime(async move {
        let fetched = tokio::time::timeout(WORKLOAD_TIMEOUT, async {
            let mut client = WorkloadClient::connect(&address)
                .await
                .map_err(|e| crate::fetch::described(&address, e))?;
            work(&mut client)
                .await
                .map_err(|e| crate::fetch::described(&address, e))
        })
        .await
        .map_err(|_| format!("no answer from {address} within {WORKLOAD_TIMEOUT:?}"))??;
        then(fetched)
    })
}

fn fetch(args: &FetchArgs) -> ExitCode {
    with_client(
        &args.socket,
        async |client| {
            client
                .fetch_jwt_svids(&args.audience, args.spiffe_id.as_ref())
                .await
        },
        |svids| {
            for svid in svids {
                println!("{}", svid.token());
            }
            Ok(())
        },
    )
}

fn bundles(args: &BundlesArgs) -> ExitCode {
    with_client(
        &args.socket,
        async |client| client.fetch_jwt_bundles().await,
        |bundles| {
            let mut sorted: Vec<&JwtBundle> = bundles.iter().collect();
            sorted.sort_by(|a, b| a.trust_domain().as_str().cmp(b.trust_domain().as_str()));
            for bundle in &sorted {
                println!("{}", bundle.trust_domain());
            }
            if let Some(dir) = &args.write {
                let (written, removed) = crate::write_files::write_jwt_bundles(dir, &bundles)?;
                for path in removed {
                    eprintln!("removed {}", path.display());
                }
                for path in written {
                    eprintln!("wrote {}", path.display());
                }
            }
            Ok(())
        },
    )
}

/// Runs `jwt` and returns the contract's exit code.
pub fn run(args: &Args) -> ExitCode {
    match &args.command {
        Command::Fetch(fetch_args) => fetch(fetch_args),
        Command::Bundles(bundles_args) => bundles(bundles_args),
        Command::Validate(validate_args) => validate(validate_args),
    }
}
