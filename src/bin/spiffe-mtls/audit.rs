//! `spiffe-mtls audit verify FILE`: checks the hash chain of a JSON-lines audit log written
//! with `proxy --audit-log FILE --audit-chain` (or the library's chained `AuditLog`).
//!
//! Exit codes: 0 the chain is whole (stdout: `ok: N lines, the chain is whole; last line
//! SHA-256 HEX`), 1 it is broken (stderr: `FILE: line N: why`, N the first line that does
//! not follow the one before it) or no line has the `--last` digest kept from an earlier
//! run (the log may have grown since), 2 the file cannot be read.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use spiffe_mtls::audit::{ChainError, verify_chain_holding};

use crate::{FAILED, USAGE, fail};

/// Audit logs: check a chained log.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Verify(VerifyArgs),
}

/// Check the hash chain of a JSON-lines audit log: exit 0 when whole, 1 naming the first
/// broken line, 2 when the file cannot be read.
#[derive(clap::Args)]
struct VerifyArgs {
    /// The audit log (JSON lines, each with `prev_sha256`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The last line's SHA-256 printed by an earlier run (kept elsewhere): the file must
    /// still hold that line (it may have grown since), so an edit of it or lines cut from
    /// the end are found.
    #[arg(long, value_name = "HEX")]
    last: Option<String>,
}

/// Runs `audit verify`.
pub fn run(args: &Args) -> ExitCode {
    let Command::Verify(args) = &args.command;
    let file = match File::open(&args.file) {
        Ok(file) => file,
        Err(error) => {
            return fail(
                USAGE,
                format!("cannot read {}: {error}", args.file.display()),
            );
        }
    };
    match verify_chain_holding(BufReader::new(file), args.last.as_deref()) {
        Ok(summary) => {
            println!(
                "ok: {} lines, the chain is whole; last line SHA-256 {}",
                summary.lines,
                summary.last_sha256.as_deref().unwrap_or("none")
            );
            ExitCode::SUCCESS
        }
        Err(ChainError::Read(error)) => fail(USAGE, format!("{}: {error}", args.file.display())),
        Err(error) => fail(FAILED, format!("{}: {error}", args.file.display())),
    }
}
