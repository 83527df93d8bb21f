//! The dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs) driven over WebDriver, against a `proxy server
//! --status` on the dev server. Ignored by a plain `cargo test`; `.ci/run` runs it with
//! `--ignored`. Screenshots go to `target/browser-artifacts/`.
#![cfg(all(feature = "cli", feature = "dev-server"))]

use std::time::{Duration, Instant};

use crate::proxy_world;
use crate::webdriver::Browser;

use proxy_world::*;

/// Where the screenshots are saved.
fn artifact(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A script returning the first element matching `selector`'s text, or `null`.
fn text_of(selector: &str) -> String {
    format!(
        "const e = document.querySelector({}); return e ? e.textContent.trim() : null;",
        serde_json::to_string(selector).unwrap()
    )
}

#[test]
#[ignore = "needs Debian's chromium and chromium-driver: .ci/run installs them and runs this test"]
fn the_dashboard_shows_the_svid_a_refused_peer_and_an_unreachable_workload_api() {
    let Some(browser) = Browser::start(1280, 1100) else {
        panic!(
            "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
    };
    let mut world = World::new();
    let backend = http_backend();
    let server = world.server(
        &backend,
        &["--allow-id", CLIENT_ID, "--status", "127.0.0.1:0"],
    );
    let client = world.client("proxy-client", &server, &[]);
    let intruder = world.client("proxy-intruder", &server, &[]);
    let origin = format!("http://{}", server.status.clone().unwrap());
    browser.goto(&format!("{origin}/"));

    // This workload's SVID: its ID and a time-left bar.
    let (width, _) = browser.wait_for(
        "the SVID row with its time-left bar",
        &format!(
            "const row = document.querySelector('tr.svid-row[data-spiffe-id=\"{SERVER_ID}\"]');
             const fill = row && row.querySelector('.time-left-bar .fill');
             return fill && fill.style.width ? fill.style.width : null;"
        ),
        Duration::from_secs(10),
    );
    let percent: f64 = width
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(percent > 50.0 && percent <= 100.0, "{width}");
    let shown = browser.execute(&text_of("tr.svid-row .svid-id"));
    assert!(
        shown.as_str().unwrap().starts_with(SERVER_ID),
        "the ID is shown: {shown}"
    );
    assert_eq!(
        browser.execute("return document.getElementById('healthy').textContent;"),
        "healthy"
    );

    // An accepted client, then a refused handshake: the intruder's row, one denial and the
    // reason, within 2 s.
    assert_eq!(http_get(&client.listen, "/hello", &[]).0, 200);
    let refused_at = Instant::now();
    assert_eq!(http_get(&intruder.listen, "/hello", &[]).0, 0);
    let row = format!("tr.peer-row[data-spiffe-id=\"{INTRUDER_ID}\"]");
    let (_, _) = browser.wait_for(
        "the intruder's row with one denial",
        &format!(
            "const row = document.querySelector('{row}');
             return row && row.querySelector('.peer-denied').textContent.trim() === '1';"
        ),
        Duration::from_secs(5),
    );
    let took = refused_at.elapsed();
    assert!(
        took <= Duration::from_secs(2),
        "the denial showed after {took:?}"
    );
    assert_eq!(
        browser.execute(&text_of(&format!("{row} .peer-last-deny-reason"))),
        "the rule does not allow this SPIFFE ID"
    );
    assert_eq!(
        browser.execute(&text_of(&format!(
            "tr.peer-row[data-spiffe-id=\"{CLIENT_ID}\"] .peer-accepted"
        ))),
        "1"
    );
    assert!(
        browser
            .execute("return document.querySelectorAll('tr.decision-row.denied').length;")
            .as_u64()
            .unwrap()
            >= 1
    );
    std::fs::write(artifact("dashboard.png"), browser.screenshot()).unwrap();

    // The Workload API stops: the "unreachable" alert within 12 s.
    world.dev.signal("TERM");
    world.dev.wait(Duration::from_secs(10));
    let stopped_at = Instant::now();
    browser.wait_for(
        "the workload_api_unreachable alert",
        "return document.querySelector('.alert[data-rule=\"workload_api_unreachable\"]') !== null;",
        Duration::from_secs(12),
    );
    assert!(stopped_at.elapsed() <= Duration::from_secs(12));
    assert_eq!(
        browser
            .execute("return document.getElementById('workload-api').getAttribute('data-state');"),
        "reconnecting"
    );
    std::fs::write(artifact("dashboard-unreachable.png"), browser.screenshot()).unwrap();

    // The page asked its own origin only, and ran without an error.
    for url in browser.requested_urls() {
        assert!(url.starts_with(&origin), "an outside request: {url}");
    }
    assert_eq!(
        browser.execute("return document.getElementById('js-error').hidden;"),
        true,
        "{}",
        browser.execute(&text_of("#js-error"))
    );
}
