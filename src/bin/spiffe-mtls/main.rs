//! `spiffe-mtls`: SPIFFE identity and mutual TLS from the command line.
//!
//! Commands:
//! - `demo`: mutual TLS between two workloads of the embedded dev server while their SVIDs
//!   rotate, and an unauthorized client refused.
//! - `verify`: checks a certificate chain as an X.509-SVID against trust bundles, and
//!   optionally authorizes its SPIFFE ID.
//! - `dev-server`: a SPIRE-compatible Workload API for development and tests.
//! - `fetch`, `watch`: read the Workload API (the dev server's or a SPIRE agent's).
//! - `jwt validate`: checks a JWT-SVID for an audience against JWT bundles.
//! - `proxy server`, `proxy client`: a SPIFFE mTLS sidecar in front of, or out of, a plain
//!   service.
//! - `audit verify`: checks the hash chain of a JSON-lines audit log.
#![forbid(unsafe_code)]

// The dev server attests callers by their Unix credentials and `fetch --write` sets Unix file
// modes: the command is for Unix platforms. (The library builds anywhere; see the README.)
#[cfg(not(unix))]
compile_error!("the spiffe-mtls command needs a Unix platform");

mod audit;
mod bundle_endpoint;
mod demo;
mod dev_bundle_endpoint;
mod dev_server;
mod fetch;
mod jwt;
mod proxy;
mod verify;
mod write_files;

use std::future::Future;
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
    /// Mutual TLS between two workloads while their SVIDs rotate (embedded dev server).
    Demo(demo::Args),
    Verify(verify::Args),
    DevServer(dev_server::Args),
    Fetch(fetch::FetchArgs),
    Watch(fetch::WatchArgs),
    Jwt(jwt::Args),
    Proxy(proxy::Args),
    Audit(audit::Args),
    BundleEndpoint(bundle_endpoint::Args),
}

/// Why a command failed, which decides its exit status (the README's "Exit codes"): 1 when
/// it ran and a check failed or something refused or broke, 2 for a usage error or an input
/// it cannot use (a missing address, a file that cannot be read or parsed).
pub(crate) enum Failure {
    /// Exit 1.
    Failed(String),
    /// Exit 2.
    Usage(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// Exit status 1: the command ran, and a check failed or something refused or broke.
pub(crate) const FAILED: u8 = 1;
/// Exit status 2: a usage error or an input the command cannot use.
pub(crate) const USAGE: u8 = 2;

/// Prints `message` on stderr and exits with `code`.
pub(crate) fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

/// Runs `work` on a tokio runtime; an error is printed on stderr and exits 1.
pub(crate) fn runtime(work: impl Future<Output = Result<(), String>>) -> ExitCode {
    runtime_with(async { work.await.map_err(Failure::Failed) })
}

/// Runs `work` on a tokio runtime; an error is printed on stderr and exits 1, or 2 for a
/// [`Failure::Usage`].
pub(crate) fn runtime_with(work: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(FAILED, format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(message)) => fail(FAILED, message),
        Err(Failure::Usage(message)) => fail(USAGE, message),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::DevServer(args) => dev_server::run(&args),
        Command::Fetch(args) => fetch::fetch(&args),
        Command::Watch(args) => fetch::watch(&args),
        Command::Jwt(args) => jwt::run(&args),
        Command::Proxy(args) => proxy::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::BundleEndpoint(args) => bundle_endpoint::run(&args),
    }
}
