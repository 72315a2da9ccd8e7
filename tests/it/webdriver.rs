//! A small W3C WebDriver client over reqwest, driving chromedriver + headless
//! Chromium. Mandatory in CI; elsewhere a missing browser prints "SKIPPED".

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    profile: PathBuf,
}

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    pub async fn start() -> Option<Browser> {
        let driver_bin = find("CHROMEDRIVER", &["/usr/bin/chromedriver", "/usr/local/bin/chromedriver"]);
        let chrome_bin =
            find("CHROME_BIN", &["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]);
        let (Some(driver_bin), Some(chrome_bin)) = (driver_bin, chrome_bin) else {
            if crate::helpers::in_ci() {
                panic!("chromedriver/chromium not found: browser tests are mandatory in CI");
            }
            crate::helpers::skipped("browser tests: install chromium and chromium-driver to run them");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("latchkey-chrome-{port}"));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome_bin,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let res: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("new session: {res}")).to_owned();
        Some(Browser { driver, base: format!("{base}/session/{session}"), http, profile })
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        res["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn title(&self) -> String {
        self.get("/title").await.as_str().unwrap_or_default().to_owned()
    }

    /// Finds an element, retrying while the page loads.
    async fn element(&self, css: &str) -> String {
        for _ in 0..50 {
            let v = self.post("/element", json!({"using": "css selector", "value": css})).await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element {css} on {}", self.get("/url").await);
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": text})).await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        self.get(&format!("/element/{id}/text")).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn css(&self, css: &str, property: &str) -> String {
        let id = self.element(css).await;
        self.get(&format!("/element/{id}/css/{property}")).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn wait_for_title(&self, title: &str) {
        for _ in 0..100 {
            if self.title().await == title {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("title never became {title:?}; it is {:?} at {}", self.title().await, self.get("/url").await);
    }

    pub async fn wait_for_text(&self, css: &str, needle: &str) {
        for _ in 0..100 {
            let v = self.post("/element", json!({"using": "css selector", "value": css})).await;
            if let Some(id) = v[ELEMENT].as_str() {
                let text = self.get(&format!("/element/{id}/text")).await;
                if text.as_str().is_some_and(|t| t.contains(needle)) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never showed {needle:?}");
    }

    /// Fills and submits the sign-in form on the current page, then waits for `landing`.
    pub async fn sign_in(&self, email: &str, password: &str, landing: &str) {
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("button[type=submit]").await;
        self.wait_for_title(landing).await;
    }

    /// Runs a script in the page (WebDriver bypasses the page's CSP).
    pub async fn script(&self, source: &str) -> Value {
        self.post("/execute/sync", json!({"script": source, "args": []})).await
    }

    pub async fn accept_alert(&self) {
        for _ in 0..50 {
            let v = self.post("/alert/accept", json!({})).await;
            if v.is_null() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no dialog to accept");
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn quit(mut self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
