//! A small W3C WebDriver client for the browser test: it starts chromedriver on a loopback
//! port, opens one headless Chromium session, and sends the few commands the test needs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http;

/// Key of an element reference in WebDriver responses.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Returns the Chromium and chromedriver binaries, from `CHROMIUM` and `CHROMEDRIVER` or
/// the paths Debian's `chromium` and `chromium-driver` install, or `None` if either is
/// missing.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |variable: &str, default: &str| {
        let path = std::env::var_os(variable)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default));
        path.is_file().then_some(path)
    };
    Some((
        find("CHROMIUM", "/usr/bin/chromium")?,
        find("CHROMEDRIVER", "/usr/bin/chromedriver")?,
    ))
}

/// A chromedriver process with one browser session. Both end when this is dropped.
pub struct Browser {
    driver: Child,
    address: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose host resolver maps every name but
    /// 127.0.0.1 to an unresolvable one, so that no request can leave the machine.
    pub fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();

        let log = std::env::temp_dir().join(format!("placewise-chromedriver-{port}.log"));
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        while http::get(address, "/status").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer on {address} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--disable-default-apps",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut browser = Browser {
            driver,
            address,
            session: String::new(),
            _profile: profile,
        };
        let answer = browser.command("POST", "/session", &capabilities);
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session in {answer}"))
            .to_string();
        browser
    }

    /// Sends one WebDriver command and returns its `value`, panicking on a WebDriver error.
    fn command(&self, method: &str, path: &str, body: &Value) -> Value {
        let response = http::send_json(self.address, method, path, &body.to_string())
            .unwrap_or_else(|e| panic!("chromedriver {method} {path} failed: {e}"));
        let answer: Value = serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: not JSON ({e})"));
        assert_eq!(
            response.status, 200,
            "chromedriver {method} {path}: {answer}"
        );
        answer["value"].clone()
    }

    fn session_command(&self, method: &str, path: &str, body: &Value) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn navigate(&self, url: &str) {
        self.session_command("POST", "/url", &json!({ "url": url }));
    }

    /// Runs `script` as the body of a function in the page and returns its result.
    pub fn execute(&self, script: &str) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": [] }),
        )
    }

    /// Runs a Chrome DevTools Protocol command.
    pub fn devtools(&self, command: &str, parameters: Value) -> Value {
        self.session_command(
            "POST",
            "/goog/cdp/execute",
            &json!({ "cmd": command, "params": parameters }),
        )
    }

    pub fn set_window_size(&self, width: u32, height: u32) {
        self.session_command(
            "POST",
            "/window/rect",
            &json!({ "width": width, "height": height }),
        );
    }

    /// Types `text` into the first element that matches `selector`.
    pub fn type_into(&self, selector: &str, text: &str) {
        let found = self.session_command(
            "POST",
            "/element",
            &json!({ "using": "css selector", "value": selector }),
        );
        let element = found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{selector}`: {found}"));
        self.session_command(
            "POST",
            &format!("/element/{element}/value"),
            &json!({ "text": text }),
        );
    }

    /// Returns the browser's console entries since the last call: level and message.
    pub fn console_log(&self) -> Vec<(String, String)> {
        let entries = self.session_command("POST", "/se/log", &json!({ "type": "browser" }));
        entries
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Returns a PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = self.session_command("GET", "/screenshot", &json!({}));
        decode_base64(encoded.as_str().expect("the screenshot is a string"))
    }

    /// Polls `condition` (a script returning true or false) every 100 ms until it holds,
    /// and panics after `limit` with `what`.
    pub fn wait_for(&self, condition: &str, limit: Duration, what: &str) {
        let started = Instant::now();
        loop {
            if self.execute(condition) == Value::Bool(true) {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?}: {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = http::send_json(self.address, "DELETE", &path, "{}");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Decodes standard base64 with padding, as WebDriver encodes screenshots.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 byte {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut word = 0u32;
        for (i, &c) in data.iter().enumerate() {
            word |= value(c) << (18 - 6 * i);
        }
        let produced = data.len().saturating_sub(1);
        for i in 0..produced {
            out.push((word >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_padding() {
        assert_eq!(super::decode_base64("aGVsbG8="), b"hello");
        assert_eq!(super::decode_base64("aGk="), b"hi");
        assert_eq!(super::decode_base64("YWJj"), b"abc");
    }
}
