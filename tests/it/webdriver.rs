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
    /// Whether pages run JavaScript (axe-core needs it to run).
    javascript: bool,
}

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The two sizes every page is checked at: a laptop and a phone.
pub const LAPTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

impl Browser {
    pub async fn start() -> Option<Browser> {
        Self::launch(true).await
    }

    /// A browser with JavaScript turned off: what a page does without it.
    pub async fn start_without_js() -> Option<Browser> {
        Self::launch(false).await
    }

    async fn launch(javascript: bool) -> Option<Browser> {
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
                         format!("--user-data-dir={}", profile.display())],
                "prefs": {"profile.managed_default_content_settings.javascript": if javascript { 1 } else { 2 }}
            }
        }}});
        let res: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = res["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("new session: {res}")).to_owned();
        Some(Browser { driver, base: format!("{base}/session/{session}"), http, profile, javascript })
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
                self.wait_ready().await;
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

    #[allow(dead_code)] // for native confirm() prompts; the app now uses <dialog>s
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

    /// Resizes the window so that the viewport is `size` (CSS pixels).
    pub async fn resize(&self, size: (u32, u32)) {
        self.post("/window/rect", json!({"width": size.0, "height": size.1})).await;
        // Headless windows include no chrome, but correct for any difference.
        let inner = self.script("return [window.innerWidth, window.innerHeight]").await;
        let (iw, ih) = (inner[0].as_u64().unwrap_or(0) as i64, inner[1].as_u64().unwrap_or(0) as i64);
        let (dw, dh) = (size.0 as i64 - iw, size.1 as i64 - ih);
        if dw != 0 || dh != 0 {
            self.post("/window/rect", json!({"width": size.0 as i64 + dw, "height": size.1 as i64 + dh})).await;
        }
    }

    /// Forgets every cookie (signs out without a request).
    pub async fn clear_cookies(&self) {
        self.cmd(reqwest::Method::DELETE, "/cookie", None).await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or_default().to_owned()
    }

    /// Fails unless the page fits its viewport across (no sideways scrolling).
    pub async fn assert_no_horizontal_scroll(&self, what: &str) {
        if let Some(problem) = self.horizontal_scroll().await {
            panic!("{what}: {problem}");
        }
    }

    /// What scrolls sideways, if anything does.
    pub async fn horizontal_scroll(&self) -> Option<String> {
        let v = self
            .script(
                "var d = document.documentElement; var wide = [];\
                 if (d.scrollWidth > window.innerWidth) { document.querySelectorAll('body *').forEach(function (e) {\
                   var r = e.getBoundingClientRect(); if (r.right > window.innerWidth + 1 && wide.length < 5) wide.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right)); }); }\
                 return [d.scrollWidth, window.innerWidth, wide.join(' | ')]",
            )
            .await;
        let (scroll, inner) = (v[0].as_u64().unwrap_or(u64::MAX), v[1].as_u64().unwrap_or(0));
        if scroll > inner {
            return Some(format!("the page scrolls sideways ({scroll} > {inner}); too wide: {}", v[2]));
        }
        // Nothing may stick out of its card either (a table wider than its card
        // is cut off or spills over the edge even when the page does not scroll).
        let spill = self
            .script(
                "var out = []; document.querySelectorAll('.card, .auth-card, dialog[open]').forEach(function (c) {\
                   var edge = c.getBoundingClientRect().right + 1;\
                   c.querySelectorAll('*').forEach(function (e) { var r = e.getBoundingClientRect();\
                     var floats = false; for (var p = e; p && p !== c; p = p.parentElement) { if (getComputedStyle(p).position === 'absolute') { floats = true; break; } }\
                     if (r.width > 0 && r.right > edge && out.length < 5 && !floats)\
                       out.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(r.right) + ' > ' + Math.round(edge)); }); });\
                 return out.join(' | ')",
            )
            .await;
        let spill = spill.as_str().unwrap_or_default();
        (!spill.is_empty()).then(|| format!("something sticks out of its card: {spill}"))
    }

    /// axe-core's serious and critical violations on the page, in words.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        const AXE: &str = include_str!("vendor/axe.min.js");
        self.script(&format!("{AXE}\nreturn true;")).await;
        let result = self
            .post(
                "/execute/async",
                json!({"script": "var done = arguments[arguments.length - 1];\
                   axe.run(document, {resultTypes: ['violations']}).then(function (r) {\
                     done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })\
                       .map(function (v) { return v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.slice(0, 3).map(function (n) { return n.target.join(' '); }).join(', '); }));\
                   }, function (e) { done(['axe failed: ' + e]); });", "args": []}),
            )
            .await;
        match result.as_array() {
            Some(a) => a.iter().map(|v| v.as_str().unwrap_or("?").to_owned()).collect(),
            None => vec![format!("axe-core did not run: {result}")],
        }
    }

    /// Everything wrong with the page as it stands (sideways scrolling and
    /// serious accessibility violations), after taking its screenshot.
    pub async fn page_problems(&self, name: &str) -> Vec<String> {
        self.wait_ready().await;
        self.screenshot(name).await;
        let mut problems: Vec<String> = self.horizontal_scroll().await.into_iter().collect();
        // With JavaScript off the page's markup is the same; axe-core cannot
        // run there, so it checks the pages of the JavaScript browser.
        if self.javascript {
            problems.extend(self.accessibility_problems().await);
        }
        problems.into_iter().map(|p| format!("{name}: {p}")).collect()
    }

    /// From now on, every page this browser opens records its CSP
    /// violations, uncaught errors and `console.error` calls, from before its
    /// first script runs; [`Browser::page_errors`] reads them.
    pub async fn record_page_errors(&self) {
        let source = "window.__pageErrors = [];\
            document.addEventListener('securitypolicyviolation', function (e) {\
              window.__pageErrors.push('CSP ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber); });\
            window.addEventListener('error', function (e) { window.__pageErrors.push('error: ' + e.message); });\
            var consoleError = console.error;\
            console.error = function () { window.__pageErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); return consoleError.apply(console, arguments); };";
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": source}}),
        )
        .await;
    }

    /// What the page recorded since [`Browser::record_page_errors`].
    pub async fn page_errors(&self) -> Vec<String> {
        let v = self.script("return window.__pageErrors || ['the page error recorder did not run']").await;
        v.as_array().map(|a| a.iter().map(|e| e.as_str().unwrap_or("?").to_owned()).collect()).unwrap_or_default()
    }

    /// Saves a PNG of the viewport under `target/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        // The whole page, not only the viewport (Chromium's DevTools protocol).
        let size =
            self.script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]").await;
        let (w, h) = (size[0].as_u64().unwrap_or(1280), size[1].as_u64().unwrap_or(900).min(6000));
        let shot = self
            .post(
                "/goog/cdp/execute",
                json!({"cmd": "Page.captureScreenshot", "params": {"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}}),
            )
            .await;
        let data = if shot["data"].is_string() { shot["data"].clone() } else { self.get("/screenshot").await };
        let Some(b64) = data.as_str() else { return };
        let Ok(png) = base64::engine::general_purpose::STANDARD.decode(b64) else { return };
        let dir = screenshot_dir();
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }

    /// Fits, is accessible, and is photographed: what every page must pass at
    /// each size. `name` names the screenshot.
    pub async fn check_page(&self, name: &str) {
        let problems = self.page_problems(name).await;
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Waits for the document (and htmx's swaps) to settle.
    pub async fn wait_ready(&self) {
        for _ in 0..50 {
            let v = self
                .script("return document.readyState === 'complete' && !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
                .await;
            if v == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether an element matching `css` exists now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        let v = self.post("/elements", json!({"using": "css selector", "value": css})).await;
        v.as_array().is_some_and(|a| !a.is_empty())
    }

    /// Waits until `css` matches something.
    pub async fn wait_for(&self, css: &str) {
        self.element(css).await;
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        for _ in 0..50 {
            if !self.exists(css).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never went away");
    }

    /// Presses a key on the focused element (WebDriver key codes, e.g. "\u{E00C}" is Escape).
    pub async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "kb", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
        )
        .await;
        self.cmd(reqwest::Method::DELETE, "/actions", None).await;
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

/// Where screenshots go: `target/screenshots/` (kept by CI as artifacts).
pub fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(|t| t.join("screenshots")).unwrap_or_else(|| tmp.join("screenshots"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
