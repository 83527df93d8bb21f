//! A small W3C WebDriver client for headless Chromium (Debian's `chromium` and
//! `chromium-driver`), over plain HTTP/1.1 to a `chromedriver` on 127.0.0.1: enough to open a
//! page, run a script in it, wait for the DOM, and take a screenshot. No crate beyond the
//! test build's own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Where Debian puts the driver and the browser (overridable by `CHROMEDRIVER` and
/// `CHROMIUM`).
const DRIVER: &str = "/usr/bin/chromedriver";
const BROWSER: &str = "/usr/bin/chromium";

/// A headless Chromium session, ended (and its driver killed) when dropped.
pub struct Browser {
    driver: Child,
    address: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session of `width` x `height`; `None`
    /// when either program is not installed.
    pub fn start(width: u32, height: u32) -> Option<Self> {
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| DRIVER.to_owned());
        let browser = std::env::var("CHROMIUM").unwrap_or_else(|_| BROWSER.to_owned());
        if !Path::new(&driver).exists() || !Path::new(&browser).exists() {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let profile = tempfile::tempdir().unwrap();
        // Its own process group, which Chromium joins: dropping the `Browser` kills them all
        // (chromedriver killed alone leaves Chromium running). Crash handlers write under the
        // profile, not in the home directory.
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let address = format!("127.0.0.1:{port}");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "timeouts": {"implicit": 0, "pageLoad": 20_000, "script": 10_000},
            "goog:chromeOptions": {
                "binary": browser,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut driver = Self {
            driver: child,
            address,
            session: String::new(),
            _profile: profile,
        };
        // From here a panic drops `driver`, which kills chromedriver's group.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !call(&driver.address, "GET", "/status", None)
            .is_ok_and(|v| v["value"]["ready"] == true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let created = call(&driver.address, "POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        driver.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        Some(driver)
    }

    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = call(&self.address, method, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        answer["value"].clone()
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body: `return ...;`) in the page; its value.
    pub fn execute(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script` every 100 ms until it returns something other than `null`, `false` or
    /// `""`; that value, and how long it took. Panics after `within`, showing `what`.
    pub fn wait_for(&self, what: &str, script: &str, within: Duration) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let value = self.execute(script);
            let truthy =
                !matches!(&value, Value::Null | Value::Bool(false)) && value.as_str() != Some("");
            if truthy {
                return (value, start.elapsed());
            }
            assert!(
                start.elapsed() < within,
                "{what}: not within {within:?}; the page says: {}",
                self.execute("return document.body ? document.body.innerText : '';")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.command("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap()
    }

    /// Every URL the page requested (its resource timing entries, and the page itself).
    pub fn requested_urls(&self) -> Vec<String> {
        let urls = self.execute(
            "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));",
        );
        urls.as_array()
            .unwrap()
            .iter()
            .filter_map(|u| u.as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = call(
                &self.address,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        // The whole group: chromedriver, Chromium and its helpers.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 request to the driver; the JSON answer.
fn call(address: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // Read the head, then the body by its length (the driver may keep the connection open).
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let split = loop {
        if let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        let read = stream.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the driver closed the connection before its answer".into());
        }
        response.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let mut body = response[split + 4..].to_vec();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let read = stream.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..read]);
    }
    if chunked {
        body = dechunk(&body);
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&body)))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("HTTP {status}: {value}"));
    }
    Ok(value)
}

/// A chunked body, joined.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|size| usize::from_str_radix(size.trim(), 16).ok());
        let rest = &body[line_end + 2..];
        match size {
            Some(size) if size > 0 && rest.len() >= size => {
                out.extend_from_slice(&rest[..size]);
                body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
            }
            _ => break,
        }
    }
    out
}
