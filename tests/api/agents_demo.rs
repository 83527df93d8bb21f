//! The README's agents demo (`cargo run --example agents_demo`), run with short
//! durations: discovery from the signed card, an allowed call, a refused skill, a forged
//! card refused, both SVIDs rotating during a conversation
//! with no failed call, a summary, and nothing left behind.
#![cfg(all(feature = "a2a", feature = "dev-server"))]

use crate::demo;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_demo_rotates_without_failed_calls_and_refuses_the_skill() {
    let mut lines = Vec::new();
    let summary = demo::run(
        Duration::from_secs(3),
        Duration::from_secs(2),
        &mut |line| lines.push(line),
    )
    .await
    .unwrap();
    let text = lines.join("\n");
    assert!(summary.ok(), "{summary:?}\n{text}");
    assert_eq!(summary.failed, 0, "{text}");
    assert!(summary.calls >= 10, "{text}");
    assert!(
        text.contains("allowed: skill echo answered \"hello, agent\""),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "refused: skill secret: skill \"secret\" does not allow {} (JSON-RPC error -32600)",
            demo::CLIENT
        )),
        "{text}"
    );
    assert!(text.contains("security requires mutualTLS"), "{text}");
    assert!(
        text.contains("its SPIFFE profile declares the same ID; endpoint ")
            && text.contains(&format!("signed by the SVID of {}", demo::SERVER)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "served by {}, is refused: signature 0: signed by {}, expected {}",
            demo::IMPOSTOR,
            demo::SERVER,
            demo::IMPOSTOR
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("rotation: server {} has a new SVID", demo::SERVER)),
        "{text}"
    );
    assert!(
        text.contains(&format!("rotation: client {} has a new SVID", demo::CLIENT)),
        "{text}"
    );
    assert!(!text.contains("FAILED"), "{text}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("summary: ") && last.contains(" 0 failed,"),
        "{last}"
    );
    assert!(
        last.ends_with("forged card refused: true, refused skill: true"),
        "{last}"
    );
    // The socket directory is gone.
    let socket = lines[0]
        .split("unix://")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap();
    let dir = std::path::Path::new(socket).parent().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
}
