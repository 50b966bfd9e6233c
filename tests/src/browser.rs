//! A real browser for the web console's tests: Debian's `chromium`, headless, driven by
//! Debian's `chromedriver` over WebDriver (the `fantoccini` client). Each [`Browser`] runs
//! its own chromedriver on a free loopback port, in a process group of its own with a fresh
//! profile; dropping it kills that group (chromedriver and the Chromium it started), nothing
//! else.

pub use fantoccini;

use fantoccini::{Client, ClientBuilder, wd::WebDriverCompatibleCommand};
use std::{
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// chromedriver's process group, killed when dropped.
struct Driver(Child);

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

/// chromedriver's `POST /session/{id}/se/log {"type": "browser"}`: the console messages
/// since the last call (it needs `goog:loggingPrefs` at session start).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. A missing binary fails the test
    /// with the command that installs it.
    pub async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the web console's browser tests need Debian's Chromium and its WebDriver: apt-get install -y chromium chromium-driver"
            );
        }
        let port = crate::registry::free_port();
        let profile = tempfile::tempdir().unwrap();
        // Owned by a guard from here on: a failure below still kills it.
        let driver = Driver(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("starting chromedriver"),
        );
        let client = connect_when_up(port, profile.path()).await;
        client
            .set_window_size(1280, 900)
            .await
            .expect("sizing the window");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Error-level console messages since the last call (resources that failed to load,
    /// Content-Security-Policy refusals, script errors).
    pub async fn console_errors(&self) -> Vec<LogEntry> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("reading the browser's log");
        let list = v
            .get("value")
            .unwrap_or(&v)
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or("").to_owned(),
                message: e["message"].as_str().unwrap_or("").to_owned(),
            })
            .filter(|e| e.level == "SEVERE" || e.level == "ERROR")
            .collect()
    }

    /// A PNG of the window, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("taking a screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

async fn connect_when_up(port: u16, profile: &Path) -> Client {
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--window-size=1280,900",
                "--disable-breakpad", "--disable-crash-reporter",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let caps = caps.as_object().unwrap().clone();
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver on port {port} did not start a session: {e}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let pgid = self.0.id();
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.0.wait();
    }
}
