//! Headless Chromium driven through chromedriver, and headless Firefox
//! through geckodriver (the W3C WebDriver protocol over plain HTTP and
//! JSON), for the tests of kanki's pages: nothing sent anywhere but
//! loopback, a fresh profile each time, screenshots kept under the cargo
//! target directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::{eventually, free_port, need};

/// Headless Chromium's flags: a fresh profile in `profile`, nothing sent
/// anywhere on its own (no background networking, updates, sync or QUIC),
/// then `extra`.
pub fn chromium_args(profile: &std::path::Path, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend_from_slice(extra);
    args
}

/// Firefox's preferences for a test: nothing sent anywhere on its own
/// (no updates, telemetry, safe browsing, captive-portal or connectivity
/// checks, remote settings, DNS over HTTPS), and every request to an
/// address other than loopback sent to a proxy on a loopback port where
/// nothing listens, so it fails on this machine; then the language.
fn firefox_prefs(accept_language: &str) -> Value {
    json!({
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": 9,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": 9,
        "network.proxy.socks": "127.0.0.1",
        "network.proxy.socks_port": 9,
        "network.proxy.no_proxies_on": "127.0.0.1,localhost",
        "network.proxy.allow_hijacking_localhost": false,
        "network.trr.mode": 5,
        "network.captive-portal-service.enabled": false,
        "network.connectivity-service.enabled": false,
        "app.update.auto": false,
        "app.update.enabled": false,
        "browser.safebrowsing.malware.enabled": false,
        "browser.safebrowsing.phishing.enabled": false,
        "browser.safebrowsing.downloads.enabled": false,
        "browser.search.update": false,
        "datareporting.healthreport.uploadEnabled": false,
        "datareporting.policy.dataSubmissionEnabled": false,
        "toolkit.telemetry.enabled": false,
        "extensions.update.enabled": false,
        "extensions.getAddons.cache.enabled": false,
        "services.settings.server": "http://127.0.0.1:9/",
        "browser.shell.checkDefaultBrowser": false,
        "intl.accept_languages": accept_language,
    })
}

/// Which browser a driver drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    Firefox,
}

/// chromedriver or geckodriver on a free port, stopped with the test.
pub struct Driver {
    pub browser: Browser,
    child: Child,
    url: String,
    http: Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session (W3C protocol, over plain HTTP and JSON).
pub struct Session<'a> {
    d: &'a Driver,
    id: String,
}

impl Driver {
    /// chromedriver, for Chromium.
    pub fn start() -> Driver {
        let port = free_port();
        let child = Command::new(need("chromedriver", "chromium-driver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Driver::ready(Browser::Chromium, child, port)
    }

    /// geckodriver, for Firefox (ESR, Debian's); its Marionette port is
    /// one the system gives.
    pub fn start_firefox() -> Driver {
        let port = free_port();
        let child = Command::new(need(
            "geckodriver",
            "geckodriver (cargo install, by scripts/test.sh)",
        ))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        Driver::ready(Browser::Firefox, child, port)
    }

    fn ready(browser: Browser, child: Child, port: u16) -> Driver {
        let d = Driver {
            browser,
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        eventually(30, "the WebDriver server ready", || {
            d.http
                .get(format!("{}/status", d.url))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true)
        });
        d
    }

    /// A session: for Chromium `args` are its flags (see
    /// [`chromium_args`]); Firefox runs headless in a fresh profile of
    /// geckodriver's, 1280 by 1100, with [`firefox_prefs`], and takes no
    /// other arguments.
    pub fn session(&self, args: &[String], accept_language: &str) -> Session<'_> {
        let capabilities = match self.browser {
            Browser::Chromium => json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": need("chromium", "chromium"),
                    "args": args,
                    "prefs": {"intl.accept_languages": accept_language},
                }
            }),
            Browser::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": need("firefox-esr", "firefox-esr"),
                    "args": ["-headless", "--width=1280", "--height=1100"],
                    "prefs": firefox_prefs(accept_language),
                }
            }),
        };
        let r: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&json!({"capabilities": {"alwaysMatch": capabilities}}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Session { d: self, id }
    }
}

impl Session<'_> {
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.d.url, self.id);
        let mut req = self.d.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().unwrap().json().unwrap();
        assert!(v["value"]["error"].is_null(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    pub fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn element(&self, css: &str) -> String {
        let v = self.call(
            reqwest::Method::POST,
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn has(&self, css: &str) -> bool {
        let url = format!("{}/session/{}/elements", self.d.url, self.id);
        let v: Value = self
            .d
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["value"].as_array().is_some_and(|a| !a.is_empty())
    }

    /// Waits for an element; on timeout, fails with the page the browser shows.
    pub fn wait_for(&self, css: &str) {
        for _ in 0..200 {
            if self.has(css) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {css} at {} within 10 s:\n{}", self.url(), self.source());
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        );
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// A PNG of the window, kept at `name` under the cargo target
    /// directory's `warning-page`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        self.screenshot_in("warning-page", name)
    }

    /// A PNG of the window, kept at `dir/name` under the cargo target
    /// directory; returns its path.
    pub fn screenshot_in(&self, dir: &str, name: &str) -> PathBuf {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = data_encoding::BASE64
            .decode(b64.as_str().unwrap().as_bytes())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .d
            .http
            .delete(format!("{}/session/{}", self.d.url, self.id))
            .send();
    }
}

impl Session<'_> {
    /// Whether a JavaScript alert, confirm or prompt is open (a hostile
    /// value ran as script).
    pub fn alert_open(&self) -> bool {
        let url = format!("{}/session/{}/alert/text", self.d.url, self.id);
        let v: Value = self.d.http.get(url).send().unwrap().json().unwrap();
        v["value"]["error"].is_null()
    }

    /// Clicks the `<option>` of `select` whose value is `value`.
    pub fn choose(&self, select: &str, value: &str) {
        self.click(&format!("{select} option[value=\"{value}\"]"));
    }
}
