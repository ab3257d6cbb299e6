//! A small W3C WebDriver client over reqwest, for Debian's chromium and chromedriver
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`: scripts/setup.sh installs them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// The key W3C WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Debian's chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package chromium-driver).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port of 127.0.0.1, killed when dropped.
pub struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: reqwest::Client,
}

impl Driver {
    /// Starts chromedriver and waits until it answers `/status` ready.
    ///
    /// # Errors
    /// When the binaries are missing or chromedriver does not come up within 20 s.
    pub async fn start() -> Result<Self> {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: run scripts/setup.sh (apt-get install chromium chromium-driver)");
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {CHROMEDRIVER}"))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let driver = Self { child, url: format!("http://127.0.0.1:{port}"), http };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = driver.http.get(format!("{}/status", driver.url)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return Ok(driver);
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not start on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(pub String);

impl Element {
    fn json(&self) -> Value {
        json!({ ELEMENT: self.0 })
    }
}

/// A browser session: headless chromium with a profile in a temporary directory.
pub struct Session {
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Session {
    /// Opens a headless chromium (1280x900, English).
    ///
    /// # Errors
    /// When chromedriver refuses the session.
    pub async fn new(driver: &Driver) -> Result<Self> {
        let profile = tempfile::tempdir()?;
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--lang=en-US".into(),
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1280,900".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "accept",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args, "prefs": {"intl.accept_languages": "en-US"}},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let r: Value = driver.http.post(format!("{}/session", driver.url)).json(&caps).send().await?.json().await?;
        let id = r["value"]["sessionId"].as_str().ok_or_else(|| anyhow!("no session: {r}"))?.to_string();
        Ok(Self { http: driver.http.clone(), base: format!("{}/session/{id}", driver.url), _profile: profile })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let v: Value = response.json().await.with_context(|| format!("{method} {path}: not JSON"))?;
        if !status.is_success() {
            bail!("{method} {path}: {} {}", v["value"]["error"], v["value"]["message"]);
        }
        Ok(v["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.cmd(reqwest::Method::GET, path, None).await
    }

    /// Navigates to `url` (waits for the page to load).
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    /// The address shown (with its `#` route).
    pub async fn current_url(&self) -> Result<String> {
        Ok(self.get("/url").await?.as_str().unwrap_or_default().to_string())
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let v = self.post("/element", json!({"using": "css selector", "value": css})).await?;
        v[ELEMENT].as_str().map(|s| Element(s.to_string())).ok_or_else(|| anyhow!("{css}: {v}"))
    }

    /// Every element matching a CSS selector (none is no error).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.post("/elements", json!({"using": "css selector", "value": css})).await?;
        Ok(v.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT].as_str()).map(|s| Element(s.into())).collect())
    }

    /// Waits until an element matches (and is displayed), for at most `secs`.
    pub async fn wait(&self, css: &str, secs: u64) -> Result<Element> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(el) = self.find(css).await
                && self.get(&format!("/element/{}/displayed", el.0)).await.ok() == Some(Value::Bool(true))
            {
                return Ok(el);
            }
            if Instant::now() > deadline {
                bail!("no element {css} after {secs} s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `script` (a function body; `return` a value) until it returns something truthy,
    /// for at most `secs`; `what` names the wait in the error.
    pub async fn wait_until(&self, what: &str, secs: u64, script: &str) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let last = match self.execute(script, vec![]).await {
                Ok(v) if !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("") => {
                    return Ok(v);
                }
                Ok(v) => v,
                Err(e) => json!(e.to_string()),
            };
            if Instant::now() > deadline {
                bail!("{what}: not after {secs} s (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Clicks an element (scrolled into view first, as a user would).
    pub async fn click(&self, el: &Element) -> Result<()> {
        self.post(&format!("/element/{}/click", el.0), json!({})).await.map(drop)
    }

    /// Clicks the first element matching `css` (waiting for it).
    pub async fn click_css(&self, css: &str) -> Result<()> {
        let el = self.wait(css, 30).await?;
        self.click(&el).await
    }

    /// Types into an element (for a file input: the absolute path of the file).
    pub async fn send_keys(&self, el: &Element, text: &str) -> Result<()> {
        self.post(&format!("/element/{}/value", el.0), json!({ "text": text })).await.map(drop)
    }

    /// Empties an input or textarea.
    pub async fn clear(&self, el: &Element) -> Result<()> {
        self.post(&format!("/element/{}/clear", el.0), json!({})).await.map(drop)
    }

    /// Clears the field matching `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let el = self.wait(css, 30).await?;
        self.clear(&el).await?;
        self.send_keys(&el, text).await
    }

    /// The rendered text of an element.
    pub async fn text(&self, el: &Element) -> Result<String> {
        Ok(self.get(&format!("/element/{}/text", el.0)).await?.as_str().unwrap_or_default().to_string())
    }

    /// An attribute of an element (`None` when absent).
    pub async fn attribute(&self, el: &Element, name: &str) -> Result<Option<String>> {
        Ok(self.get(&format!("/element/{}/attribute/{name}", el.0)).await?.as_str().map(str::to_string))
    }

    /// Runs a script (a function body) with arguments; elements go in as [`Element`] JSON.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("/execute/sync", json!({"script": script, "args": args})).await
    }

    /// An element as an argument of [`Session::execute`].
    pub fn arg(el: &Element) -> Value {
        el.json()
    }

    /// Lets the page download files into `dir` without asking (Chrome DevTools'
    /// `Browser.setDownloadBehavior`, through chromedriver).
    ///
    /// # Errors
    /// When chromedriver refuses the command.
    pub async fn allow_downloads(&self, dir: &Path) -> Result<()> {
        let params = json!({"behavior": "allow", "downloadPath": dir.display().to_string()});
        self.post("/goog/cdp/execute", json!({"cmd": "Browser.setDownloadBehavior", "params": params})).await.map(drop)
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.get("/screenshot").await?;
        base64_decode(v.as_str().unwrap_or_default())
    }

    /// Writes a PNG of the window to `path` (making its folder).
    pub async fn save_screenshot(&self, path: &Path) -> Result<PathBuf> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.screenshot().await?)?;
        Ok(path.to_path_buf())
    }

    /// The browser console (errors of the page's scripts, failed requests), if chromedriver
    /// keeps it.
    pub async fn console(&self) -> Vec<String> {
        match self.post("/se/log", json!({"type": "browser"})).await {
            Ok(Value::Array(entries)) => entries
                .iter()
                .map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

/// Standard base64 (with padding), as WebDriver's screenshots come.
pub fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => bail!("not base64: byte {c}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff)?);
        }
    }
    Ok(out)
}
