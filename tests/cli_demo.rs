//! The README's demo command runs to completion and every case turns out as expected.

#[test]
fn demo_runs_and_every_outcome_is_expected() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spiffe-mtls"))
        .arg("demo")
        .output()
        .expect("run spiffe-mtls demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ACCEPT  the authorized client"), "{stdout}");
    assert!(
        stdout.contains("REJECT  a cross-domain forgery"),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary: 2 accepted, 5 rejected, every outcome as expected: true"),
        "{stdout}"
    );
}
