//! The README's demo command: mutual TLS while SVIDs rotate, an unauthorized client refused,
//! and a summary; it finishes by itself and cleans up (short settings here).
#![cfg(all(unix, feature = "cli"))]

#[test]
fn demo_rotates_without_failures_and_refuses_the_rogue() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .args(["demo", "--duration", "3s", "--svid-ttl", "2s"])
        .output()
        .expect("run spiffe-mtls demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("rotation: server now spiffe://example.org/demo/echo-server serial="),
        "{stdout}"
    );
    assert!(
        stdout.contains("rotation: client now spiffe://example.org/demo/client serial="),
        "{stdout}"
    );
    // The refusal in words: what the server's alert means for the rogue's ID.
    assert!(
        stdout.contains(
            "refused: the server refused our certificate (TLS alert access_denied): it does not \
             authorize spiffe://example.org/demo/rogue (our ID)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary: "))
        .expect("a summary");
    assert!(summary.contains(" 0 failed,"), "{summary}");
    assert!(stdout.contains("what to try next"), "{stdout}");
    assert!(
        stdout.contains("spiffe-mtls proxy server --help"),
        "{stdout}"
    );
    assert!(
        summary.ends_with("unauthorized client refused: true"),
        "{summary}"
    );
    // The socket directory is gone.
    let socket_line = stdout.lines().next().unwrap_or_default();
    let path = socket_line
        .split("unix://")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("socket path");
    assert!(!std::path::Path::new(path).exists(), "{path} left behind");
}
