//! `spiffe-mtls`: SPIFFE identity and mutual TLS from the command line.
//!
//! Commands:
//! - `verify`: checks a certificate chain as an X.509-SVID against trust bundles, and
//!   optionally authorizes its SPIFFE ID.
#![forbid(unsafe_code)]

mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// SPIFFE workload identity and mutual TLS.
#[derive(Parser)]
#[command(name = "spiffe-mtls", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Verify(verify::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => verify::run(&args),
    }
}
