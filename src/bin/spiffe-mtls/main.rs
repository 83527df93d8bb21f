//! `spiffe-mtls`: SPIFFE identity and mutual TLS from the command line.
//!
//! Commands:
//! - `demo`: the verifier and an authorization policy at work on SVIDs issued in memory.
//! - `verify`: checks a certificate chain as an X.509-SVID against trust bundles, and
//!   optionally authorizes its SPIFFE ID.
#![forbid(unsafe_code)]

mod demo;
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
    /// Show the verifier and a policy at work on SVIDs issued in memory.
    Demo,
    Verify(verify::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => demo::run(),
        Command::Verify(args) => verify::run(&args),
    }
}
