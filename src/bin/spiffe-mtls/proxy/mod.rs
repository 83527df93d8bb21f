//! `spiffe-mtls proxy server` and `spiffe-mtls proxy client`: SPIFFE mutual TLS in front of
//! a plain service, and out of a plain client.
//!
//! - `server`: accepts mTLS with the current SVID, verifies and authorizes the client, then
//!   relays bytes to the plain `--target` (TCP mode) or forwards HTTP requests to it with the
//!   verified ID in a header (`--http`).
//! - `client`: accepts plain TCP on loopback and connects out with mTLS, presenting its SVID
//!   and requiring the server's SPIFFE ID.
//!
//! Both hot-reload SVIDs and bundles from `--socket` or `--files` (a connection keeps the
//! session it started with, so a rotation never breaks a relay), bound connections and
//! handshake time, write one audit line per connection ([`audit`]), serve `--status`
//! ([`status`]) and drain on SIGTERM ([`serve`]).

mod address;
mod audit;
mod client;
mod counted;
mod forward;
mod handshake;
mod http;
mod identity;
mod metrics;
mod proxy_protocol;
mod serve;
mod server;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use spiffe_mtls::dev_server::parse_duration;
use spiffe_mtls::tls::PostQuantum;

pub use address::parse_socket_mode;
pub use status::{StatusArgs, from_answer};

/// SPIFFE mTLS sidecar: in front of a plain service (`server`), or out of a plain client
/// (`client`).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Server(server::Args),
    Client(client::Args),
}

/// Settings both modes share.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    #[command(flatten)]
    status: status::StatusArgs,
    /// Append every authentication and authorization decision to FILE as a JSON line, with
    /// its evidence (the peer's leaf and root digests, the bundles' generation, the policy's
    /// digest, the rule, the route); created with mode 0600.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<std::path::PathBuf>,
    /// Chain the --audit-log lines: each carries the SHA-256 of the line before it, which
    /// `spiffe-mtls audit verify FILE` checks (a chain in FILE is continued).
    #[arg(long, requires = "audit_log")]
    audit_chain: bool,
    /// Permission bits of the Unix sockets this proxy creates (--listen unix:PATH, --status
    /// unix:PATH), in octal. Their directory must not be writable by group or others.
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = address::parse_socket_mode)]
    socket_mode: u32,
    /// At most this many connections at once (handshaking or relaying); more wait in the
    /// listen backlog.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_conns: u32,
    /// Connections the kernel queues on --listen (TCP) before the proxy accepts them
    /// (capped by net.core.somaxconn).
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=65535))]
    backlog: u32,
    /// A peer must finish its TLS handshake within this long (a silent peer is disconnected).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_duration)]
    handshake_timeout: Duration,
    /// Close each connection this long after its handshake, whatever it is doing (as
    /// ghostunnel's flag of the same name); without it, connections live as long as their
    /// peer passes.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    max_conn_lifetime: Option<Duration>,
    /// Resume TLS 1.3 sessions (off by default): a reconnecting peer skips the certificate
    /// signatures. A ticket works for 10 minutes at most, only with this proxy's config as it
    /// is (a rotated SVID or bundle, or a --policy reload, retires every ticket), and the
    /// peer's stored certificate is checked again at each resumption (bundle, expiry, rule);
    /// one that no longer passes means a full handshake, with an audit line.
    #[arg(long)]
    resumption: bool,
    /// After SIGTERM: stop accepting, let open connections finish for this long, then close them.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Post-quantum hybrid key exchange (X25519MLKEM768): `prefer` offers it first when the
    /// binary has the aws-lc-rs provider (built with `--features aws-lc-rs`), `off` never
    /// (X25519, P-256, P-384 only), `require` refuses peers without it (and refuses to start
    /// without aws-lc-rs).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "prefer",
        value_parser = clap::builder::PossibleValuesParser::new(["prefer", "off", "require"])
            .try_map(|value| value.parse::<PostQuantum>())
    )]
    post_quantum: PostQuantum,
}

/// Runs `proxy server` or `proxy client`.
pub fn run(args: &Args) -> ExitCode {
    match &args.command {
        Command::Server(args) => crate::runtime_with(server::run(args)),
        Command::Client(args) => crate::runtime_with(client::run(args)),
    }
}
