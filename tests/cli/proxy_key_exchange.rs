//! `proxy server` and `proxy client` with `--post-quantum`: the setting reaches their TLS
//! configs (the groups each offers are tested in the library's `tls::key_exchange`). Through
//! the built binary with the dev server as the Workload API, as in `tests/cli/proxy.rs`.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use crate::proxy_world;

use std::process::Command;

use proxy_world::*;

#[test]
fn post_quantum_off_connects_end_to_end() {
    let world = World::new();
    let backend = echo_backend();
    let server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--post-quantum", "off"],
    );
    let client = world.client("proxy-client", &server, &["--post-quantum", "off"]);
    let mut stream = connect(&client.listen);
    echo(&mut stream, b"classical");
}

#[test]
fn a_post_quantum_setting_that_does_not_exist_is_a_usage_error() {
    let output = Command::new(BIN)
        .args([
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
            "--allow-td",
            "example.org",
            "--post-quantum",
            "maybe",
        ])
        .env_remove("SPIFFE_ENDPOINT_SOCKET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("maybe") && message.contains("prefer, off, require"),
        "{message}"
    );
}

/// Without aws-lc-rs the binary has no post-quantum group: `require` refuses to start and
/// says why, rather than refuse every peer.
#[cfg(not(feature = "aws-lc-rs"))]
#[test]
fn requiring_post_quantum_without_aws_lc_rs_refuses_to_start() {
    let world = World::new();
    let output = Command::new(world.path("proxy-server"))
        .args([
            "proxy",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:9",
            "--socket",
            &world.socket,
            "--allow-td",
            "example.org",
            "--post-quantum",
            "require",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains(
            "TLS config: post-quantum key exchange required, but the crypto provider has no \
             post-quantum group (X25519MLKEM768 needs the aws-lc-rs provider)"
        ),
        "{message}"
    );
}
